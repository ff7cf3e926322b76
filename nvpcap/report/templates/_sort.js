/* Click (or Enter on) a column header of a table.sortable to sort its rows by the cells' data-v values. */
(function () {
  "use strict";
  function key(cell, num) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null) { v = cell ? cell.textContent : ""; }
    if (num) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  function setup(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      if (th.classList.contains("nosort")) { return; }
      th.tabIndex = 0;
      th.title = "sort";
      function go() {
        var num = th.getAttribute("data-type") === "num";
        var cur = th.getAttribute("aria-sort");
        var asc = cur ? cur !== "ascending" : !num;  /* numbers start largest first */
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var keyed = rows.map(function (r, i) { return { r: r, k: key(r.cells[col], num), i: i }; });
        keyed.sort(function (a, b) {
          if (a.k < b.k) { return asc ? -1 : 1; }
          if (a.k > b.k) { return asc ? 1 : -1; }
          return a.i - b.i;
        });
        keyed.forEach(function (x) { body.appendChild(x.r); });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), setup);
}());
