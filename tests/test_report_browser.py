"""The check report in a real headless Chromium (Debian's package) driven by Playwright: it renders, sorting
works, hostile strings are text, and the page makes no request besides its own file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import SAMPLES
from nvpcap.pipeline import analyze_file
from nvpcap.report.analysis import AnalysisCollector
from nvpcap.report.html import render_analysis_report, render_check_report
from nvpcap.summary import run_summary
from test_report_html import EVIL_GROUP, EVIL_HOST, EVIL_URL, IMG, SCRIPT, SSTI, hostile_result

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("NVPCAP_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _open(browser, path: Path):
    """A report opened from its file; every request is recorded, and any but the file itself is aborted."""
    url = path.as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=True)
    page = context.new_page()
    requests: list[str] = []
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))

    def gate(route):
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", gate)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)  # give any stray load or script a chance to show itself
    return context, (page, url, requests, dialogs, errors)


@pytest.fixture()
def report_page(browser, tmp_path: Path):
    path = tmp_path / "report.html"
    render_check_report(hostile_result(), str(path))
    context, opened = _open(browser, path)
    yield opened
    context.close()


@pytest.fixture()
def analysis_page(browser, tmp_path: Path):
    """The analysis of samples/pcaps/http_ethernet.pcap plus hostile alert records."""
    c = AnalysisCollector()
    s = analyze_file(str(SAMPLES / "http_ethernet.pcap"), c)
    c.write_events([{"event_type": "alert", "ts": 1700000000.01, "rule_id": 49001, "category": "waf",
                     "rule_name": f"XSS {SCRIPT}", "severity": 4, "src_ip": "10.0.0.1", "src_port": 40000,
                     "dest_ip": "10.0.0.2", "dest_port": 80, "snippet": EVIL_URL, "message": IMG}])
    c.close(run_summary([s]))
    path = tmp_path / "analysis.html"
    render_analysis_report(c.model(), str(path))
    context, opened = _open(browser, path)
    yield opened
    context.close()


def _fingerprints(page, table) -> list[str]:
    return [c.inner_text().strip() for c in table.locator("tbody tr.violation td.fp").all()]


def test_report_in_chromium(report_page) -> None:
    page, url, requests, dialogs, errors = report_page
    # renders: the verdict is visible first thing
    verdict = page.locator("#verdict")
    assert verdict.is_visible()
    assert "Verdict: FAIL" in verdict.inner_text()
    assert page.title() == "nvpcap check: FAIL"

    # sorting: the external_destination table has three violations of 5000, 100 and 90000 bytes
    table = page.locator("section.vgroup", has=page.locator("h3", has_text="external_destination")).locator(
        "table.violations")
    assert _fingerprints(page, table) == ["aaaa000000000001", "aaaa000000000002", "aaaa000000000003"]
    bytes_header = table.locator("thead th", has_text="Bytes")
    bytes_header.click()  # numbers sort largest first
    assert _fingerprints(page, table) == ["aaaa000000000003", "aaaa000000000001", "aaaa000000000002"]
    assert bytes_header.get_attribute("aria-sort") == "descending"
    bytes_header.click()
    assert _fingerprints(page, table) == ["aaaa000000000002", "aaaa000000000001", "aaaa000000000003"]
    table.locator("thead th", has_text="First seen").click()  # 10, 50, 20 s: latest first
    assert _fingerprints(page, table) == ["aaaa000000000002", "aaaa000000000003", "aaaa000000000001"]

    # evidence opens on a click and shows the hostile strings as text
    details = table.locator("details").first
    details.locator("summary").click()
    assert details.get_attribute("open") is not None
    assert "1:abc=" in details.inner_text()
    body = page.locator("body").inner_text()
    for s in (SCRIPT, IMG, SSTI, EVIL_HOST, EVIL_GROUP):
        assert s in body
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert dialogs == [] and errors == []

    # the SVG graph and timeline are drawn
    assert page.locator("#graph-svg path.edge.new").count() == 1
    assert page.locator("#timeline circle.dot").count() == 5

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "check_report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # no request other than the file itself
    assert requests == [url]


def test_analysis_report_in_chromium(analysis_page) -> None:
    page, url, requests, dialogs, errors = analysis_page
    assert "1 alert in 2 flows" in page.locator("#verdict").inner_text()
    talkers = page.locator("#talker-table")

    def ips() -> list[str]:
        return [r.locator("td").first.inner_text().split(" ")[0] for r in talkers.locator("tbody tr").all()]

    assert ips() == ["10.0.0.1", "10.0.0.2", "10.0.0.53"]  # by bytes: 947, 781, 166
    talkers.locator("thead th", has_text="Bytes").click()  # largest first (already)
    talkers.locator("thead th", has_text="Bytes").click()  # then smallest first
    assert ips() == ["10.0.0.53", "10.0.0.2", "10.0.0.1"]
    talkers.locator("thead th", has_text="IP").click()  # text, ascending
    assert ips() == ["10.0.0.1", "10.0.0.2", "10.0.0.53"]
    assert "10.0.0.2 (www.example.com)" in talkers.inner_text()
    body = page.locator("body").inner_text()
    assert SCRIPT in body and IMG in body
    assert page.locator("img").count() == 0 and dialogs == [] and errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "analysis_report.png"), full_page=True)
    assert requests == [url]
