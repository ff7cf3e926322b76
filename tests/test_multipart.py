"""multipart/form-data request bodies as ModSecurity's MULTIPART body processor gives them to OWASP CRS rules
(protocols/httpforms.py, rules/fields.py, rules/crs.py): a part without a filename is an argument (ARGS,
ARGS_POST: context "form"), an upload is FILES (its file name) and FILES_NAMES (its part's name: context
"files"); the body as sent is still "body". Before, FILES was the whole body (CRS 933110's `$` never sat at an
upload's name end: `shell.php` was missed) and a multipart text field was no argument at all."""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

import hpack
import pytest
from conftest import run
from hypothesis import given, settings
from hypothesis import strategies as st
from parsertest import drive
from test_parse_tls_h2 import (
    CLIENT_START,
    END_HEADERS,
    END_STREAM,
    F_DATA,
    F_HEADERS,
    SERVER_START,
    h2frame,
)
from test_rules_pipeline import OK, conversation

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols import httpforms as bodies
from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.http import HttpParser
from nvpcap.protocols.http2 import Http2Parser
from nvpcap.rules import RuleEngine, crs, fields, transforms
from nvpcap.rules.regex import hyperscan

NOISE = random.Random(7).randbytes  # file content: the same bytes in every run
BACKENDS = ["python"] + (["hyperscan"] if hyperscan is not None else [])
BOUNDARY = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"
CTYPE = b"multipart/form-data; boundary=" + BOUNDARY
# CRS 933110 as written (its variables and regex), 942100-like on ARGS_POST, and FILES_NAMES, REQUEST_BODY links
RULES = r"""
SecRule FILES|REQUEST_HEADERS:X-Filename|REQUEST_HEADERS:X_Filename|REQUEST_HEADERS:X-File-Name \
    "@rx .*\.(?:php\d*|phtml)\.*$" "id:933110,phase:2,block,t:none,t:lowercase,msg:'php upload'"
SecRule ARGS_POST|ARGS_POST_NAMES "@rx union\s+select" "id:900201,phase:2,block,t:none,t:urlDecodeUni,msg:'sqli'"
SecRule FILES_NAMES "@rx ^evil$" "id:900202,phase:2,block,t:none,msg:'file part name'"
SecRule FILES:avatar "@rx \.exe$" "id:900203,phase:2,block,t:none,msg:'the avatar part only'"
SecRule REQUEST_BODY "@rx <\?php" "id:900204,phase:2,block,t:none,msg:'php code in the body'"
"""


def part(disposition: bytes, value: bytes, *headers: bytes) -> bytes:
    head = b"Content-Disposition: " + disposition + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
    return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n" + value + b"\r\n"


def multipart(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(parts) + (b"--" + BOUNDARY + b"--\r\n" if end else b"")


FORM = multipart(part(b'form-data; name="page"', b"2"),
                 part(b'form-data; name="photo"; filename="photo.jpg"', b"\xff\xd8\xff\xe0 JFIF",
                      b"Content-Type: image/jpeg"),
                 part(b'form-data; name="comment"', b"Hello, world & sort=price\r\nsecond line"))


class Out:
    """What the HTTP parsers hand the rules (protocols/base.ParserOutput), kept."""

    def __init__(self, contexts: tuple[str, ...] = ("form", "files", "xml", "body")) -> None:
        self.contexts = contexts
        self.got: list[tuple[str, bytes]] = []

    def scans(self, context: str) -> bool:
        return context in self.contexts

    def content(self, context: str, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        self.got.append((context, data))


def units(body: bytes, ctype: bytes = CTYPE, piece: int = 1 << 20, out: Out | None = None) -> dict[str, bytes]:
    """The units the view of a body gives, the body fed in pieces of `piece` bytes."""
    out = out or Out()
    view = bodies.view_for(ctype, out)
    assert view is not None
    for i in range(0, len(body), piece):
        view.feed(out, body[i:i + piece], 1, 1)
    view.end(out, 2, 2)
    view.end(out, 3, 3)  # once only
    assert len({c for c, _ in out.got}) == len(out.got)
    return dict(out.got)


def items(body: bytes, **kw) -> dict[str, list[bytes]]:
    """ARGS_POST values and names, FILES, FILES_NAMES of a multipart body."""
    got = units(body, **kw)
    form, files = got.get("form", b""), got.get("files", b"")
    return {"args": fields.select("select:ap", form, "form"), "names": fields.select("select:apn", form, "form"),
            "files": fields.select("select:fl", files, "files"),
            "file_parts": fields.select("select:fln", files, "files")}


def test_text_parts_are_arguments_and_uploads_are_files():
    expected = {"args": [b"2", b"Hello, world & sort=price\r\nsecond line"], "names": [b"page", b"comment"],
                "files": [b"photo.jpg"], "file_parts": [b"photo"]}
    for piece in (1, 7, 64, 1 << 20):  # however the body comes
        assert items(FORM, piece=piece) == expected
    got = units(FORM)
    assert set(got) == {"form", "files"}
    # the file content is no argument; ARGS (a) and ARGS_NAMES (an) take the text parts
    assert fields.select("select:a,an", got["form"], "form") == [b"2", b"Hello, world & sort=price\r\nsecond line",
                                                                 b"page", b"comment"]
    assert fields.select("select:fl:photo", got["files"], "files") == [b"photo.jpg"]
    assert fields.select("select:fl:page", got["files"], "files") == []
    # file items are taken from "files" only, argument items from forms and urls only
    assert fields.select("select:fl,fln", got["form"], "form") == []
    assert fields.select("select:a,ap", got["files"], "files") == []
    assert fields.select("select:fl", b"/x?fl=a.php", "url") == []


def test_values_are_bytes_as_sent_and_names_as_modsecurity_reads_them():
    body = multipart(part(b'form-data; name="a\\"b"', b"%41+%zz&=\x00\xff"),
                     part(b"form-data; name=token; filename=shell.php5", b"x"),
                     part(b"form-data; name='single'; filename='C:\\dir\\x.phtml'", b"x"),
                     part(b'form-data; name="empty"; filename=""', b""),
                     part(b'form-data ; name = "sp ace"', b""))
    assert items(body) == {"args": [b"%41+%zz&=\x00\xff", b""], "names": [b'a"b', b"sp ace"],
                           "files": [b"shell.php5", b"C:\\dir\\x.phtml", b""],
                           "file_parts": [b"token", b"single", b"empty"]}


def test_content_disposition_as_modsecurity_parses_it():
    d = bodies.disposition
    assert d(b'form-data; name="q"') == (b"q", None)
    assert d(b'form-data; name="f"; filename="a b.php"') == (b"f", b"a b.php")
    assert d(b'form-data; name="f"; filename="..\\\\x\\".php"') == (b"f", b'..\\x".php')  # \\ and \" escape
    assert d(b'form-data; name="f"; filename="C:\\tmp\\a.php"') == (b"f", b"C:\\tmp\\a.php")  # other \ kept
    assert d(b"form-data;name=a;filename=b.php") == (b"a", b"b.php")
    # not form-data, or no name: no item
    for bad in (b'attachment; name="a"', b"form-data", b'form-data; filename="x.php"', b"", b"form-data; name"):
        assert d(bad) is None
    # where ModSecurity rejects the whole body: what was read before the fault
    assert d(b'form-data; name="a" junk; filename="y"') == (b"a", None)
    assert d(b'form-data; name="a"; filename="x.php') == (b"a", b"x.php")
    assert d(b'form-data; name="a"; name="b"; filename*=UTF-8\'\'x.php') == (b"a", None)


def test_boundaries_preamble_and_epilogue():
    quoted = b'multipart/form-data; charset=utf-8; boundary="' + BOUNDARY + b'"'
    assert items(FORM, ctype=quoted)["files"] == [b"photo.jpg"]
    assert items(b"a preamble\r\n" + FORM + b"an epilogue\r\n")["names"] == [b"page", b"comment"]
    assert bodies.view_for(b"multipart/form-data", Out()) is None  # no boundary: "body" only
    assert bodies.view_for(b"multipart/form-data; boundary=", Out()) is None
    assert bodies.view_for(CTYPE, Out(("body", "url"))) is None  # no rule reads form or files: not parsed
    assert isinstance(bodies.view_for(CTYPE, Out(("files",))), bodies.MultipartView)


def test_malformed_and_cut_bodies_give_what_parsed():
    # cut by the capture in a text part: its value so far (but a CRLF that may start a boundary); in an upload's
    # headers: nothing of that part
    cut = FORM[:FORM.index(b"second")]
    assert items(cut)["args"] == [b"2", b"Hello, world & sort=price"]
    assert items(FORM[:FORM.index(b"filename")])["files"] == []
    # a part without Content-Disposition, or with one that is not form-data: skipped, the others kept
    odd = multipart(part(b'attachment; filename="a.php"', b"x"), part(b'form-data; name="q"', b"1"))
    odd = odd.replace(b"Content-Disposition: attachment", b"X-Other: 1", 1)
    assert items(odd) == {"args": [b"1"], "names": [b"q"], "files": [], "file_parts": []}
    # a header line python-multipart rejects: the parts before it
    bad = multipart(part(b'form-data; name="q"', b"1"), part(b'form-data; name="r"', b"2", b"no colon here"))
    assert items(bad)["names"] == [b"q"]
    huge = multipart(part(b'form-data; name="q"', b"1"), part(b'form-data; name="r"', b"2", b"X-Big: " + b"a" * 9000))
    assert items(huge)["names"] == [b"q"]
    # not multipart at all
    assert units(b"\x00\xff" * 5000) == {}
    assert units(b"--" + BOUNDARY) == {}


def test_parts_and_bytes_are_bounded():
    many = multipart(*(part(b'form-data; name="p%d"' % i, b"v") for i in range(5000)))
    got = items(many)
    assert len(fields.form_args(units(many)["form"])) == bodies.MAX_PARTS
    assert len(got["args"]) == fields.MAX_ITEMS  # what the engine takes of it
    # uploads are skipped, not kept: a text part after 300 KiB of file is still an argument
    big = multipart(part(b'form-data; name="f"; filename="big.bin"', NOISE(300 << 10)),
                    part(b'form-data; name="q"', b"after the upload"))
    assert items(big, piece=1448)["args"] == [b"after the upload"]
    # names and values: at most FORM_MAX bytes kept
    long = multipart(part(b'form-data; name="a"', b"x" * (100 << 10)), part(b'form-data; name="b"', b"y"))
    assert [len(v) for v in items(long)["args"]] == [bodies.FORM_MAX - 1]
    # at most MULTIPART_MAX bytes of body parsed
    late = multipart(part(b'form-data; name="f"; filename="big.bin"', b"z" * bodies.MULTIPART_MAX),
                     part(b'form-data; name="q"', b"too late"))
    assert items(late, piece=1 << 16)["args"] == []


def test_bodies_with_lf_line_ends_are_read_too():
    """Lines ended by LF alone (ModSecurity reads such a body and flags it; servers may accept it): the same parts,
    however the body is cut, and a CR-LF cut between two pieces of a mixed body gains no second CR. Without this
    an upload named shell.php in an LF-only body would pass the rules unseen."""
    lf = FORM.replace(b"\r\n", b"\n")
    for piece in (1, 2, 5, 64, 1 << 20):
        assert items(lf, piece=piece) == items(FORM), piece
    # mixed: the first boundary line ends with LF alone, later lines with CRLF
    mixed = FORM.replace(b"\r\n", b"\n", 1)
    for piece in (1, 2, 3, 1 << 20):
        assert items(mixed, piece=piece) == items(FORM), piece
    # a preamble before the first boundary, and a body that ends before its first boundary line does
    assert items(b"preamble\n" + lf)["names"] == [b"page", b"comment"]
    assert units(b"--" + BOUNDARY) == {}
    # the RFC's CRLF bodies are unchanged, CRs inside values included
    assert items(FORM)["args"][1] == b"Hello, world & sort=price\r\nsecond line"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"--" + BOUNDARY, b"\r\n", b"\n", b"--", b"Content-Disposition: ", b"form-data",
                                 b'; name="', b'; filename="', b'"', b"\\", b":", b" ", b"x.php", b"\x00", b"\xff"]),
                max_size=60), st.integers(1, 50))
def test_hostile_bodies_never_raise(pieces, piece):
    got = units(b"".join(pieces), piece=piece)
    assert set(got) <= {"form", "files"}
    for context, unit in got.items():
        fields.select("select:a,an,fl,fln", unit, context)


# ---- the HTTP/1 and HTTP/2 parsers hand a multipart body to the view ----

def test_http1_chunked_and_http2_bodies_give_the_same_units():
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(FORM[i:i + 100]), FORM[i:i + 100]) for i in range(0, len(FORM), 100))
    request = (b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: " + CTYPE + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked + b"0\r\n\r\n")
    expected = units(FORM)
    for split in (0, 3, 50):
        rec = drive(HttpParser, [(CLIENT, request), (SERVER, OK)], split=split)
        assert {c: d for c, _side, d in rec.contents if c in ("form", "files")} == expected
        assert rec.joined("body", CLIENT) == FORM  # the body as sent, as before
    enc = hpack.Encoder()
    head = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/upload"),
                       ("content-type", CTYPE.decode())])
    frames = h2frame(F_HEADERS, END_HEADERS, 1, head) + b"".join(
        h2frame(F_DATA, END_STREAM if i + 100 >= len(FORM) else 0, 1, FORM[i:i + 100])
        for i in range(0, len(FORM), 100))
    for split in (0, 7):
        rec = drive(Http2Parser, [(CLIENT, CLIENT_START + frames), (SERVER, SERVER_START)], split=split)
        assert {c: d for c, _side, d in rec.contents if c in ("form", "files")} == expected
    # cut by the capture: what parsed, once, at the end
    rec = drive(Http2Parser, [(CLIENT, CLIENT_START + frames[:-40])])
    assert [c for c, _side, _d in rec.contents if c in ("form", "files")] == ["form", "files"]


# ---- the engine: which items a CRS link takes ----

@pytest.fixture(scope="module", params=BACKENDS)
def engine(request) -> RuleEngine:
    res = crs.load_text(RULES, "t.conf")
    assert not res.problems
    return RuleEngine(res.rules, backend=request.param)


def fired(engine: RuleEngine, body: bytes, ctype: bytes = CTYPE) -> list[int]:
    fs = engine.flow_scanner(app="http")
    fs.scan("body", 0, body, 1, 1)
    for context, unit in units(body, ctype, out=Out(tuple(engine.contexts))).items():
        fs.scan(context, 0, unit, 2, 2)
    fs.close()
    return sorted(m.rule.rule_id for m in fs.alerts if m.rule.rule_id < 949000)


def test_links_of_files_variables():
    rules = {r.rule_id: r.patterns[0] for r in crs.load_text(RULES, "t.conf").rules}
    assert rules[933110].context == "files+header"
    assert rules[933110].transforms == ("select:fl,h:x-file-name,h:x-filename,h:x_filename",)
    assert (rules[900202].context, rules[900202].transforms) == ("files", ("select:fln",))
    assert rules[900203].transforms == ("select:fl:avatar",)
    # file names are as sent: urlDecode is not free there as in forms (decoded already)
    assert transforms.effective(("select:fl", "urlDecodeUni"), "files") == ("select:fl", "urldecodeuni")
    assert transforms.effective(("select:ap", "urlDecodeUni"), "form") == ("select:ap",)


def test_a_php_upload_is_found_by_its_file_name(engine):
    shell = multipart(part(b'form-data; name="upload"; filename="shell.php"', b"GIF89a"),
                      part(b'form-data; name="submit"', b"Upload"))
    assert fired(engine, shell) == [933110]
    assert fired(engine, shell.replace(b"shell.php", b"shell.PhP5")) == [933110]
    assert fired(engine, FORM) == []
    # the content of an upload is the body's (REQUEST_BODY), not a FILES item
    assert fired(engine, shell.replace(b"GIF89a", b"<?php system($_GET['c']); ?>")) == [900204, 933110]
    # the name of a text field is not a file name, nor a file's content an argument
    assert fired(engine, multipart(part(b'form-data; name="x"', b"shell.php"))) == []
    assert fired(engine, multipart(part(b'form-data; name="f"; filename="a.txt"', b"1 union select 2"))) == []
    assert fired(engine, multipart(part(b'form-data; name="q"', b"1 union select 2"))) == [900201]
    assert fired(engine, multipart(part(b'form-data; name="evil"; filename="a.txt"', b""))) == [900202]
    assert fired(engine, multipart(part(b'form-data; name="avatar"; filename="a.exe"', b""))) == [900203]
    assert fired(engine, multipart(part(b'form-data; name="other"; filename="a.exe"', b""))) == []


def test_an_lf_only_upload_is_found_too(engine):
    shell = multipart(part(b'form-data; name="upload"; filename="shell.php"', b"GIF89a"),
                      part(b'form-data; name="q"', b"1 union select 2")).replace(b"\r\n", b"\n")
    assert fired(engine, shell) == [900201, 933110]


def test_a_form_body_cannot_forge_file_items(engine):
    """FILES items come only from a multipart body's parts: a urlencoded body (passed to the rules as sent) or a
    multipart text part holding what looks like a file item gives none."""
    fs = engine.flow_scanner(app="http")
    fs.scan("form", 0, b"upload=shell.php&fl=shell.php&evil=1", 1, 1)
    fs.close()
    assert [m.rule.rule_id for m in fs.alerts] == []
    assert fired(engine, multipart(part(b'form-data; name="upload"', b'shell.php'),
                                   part(b'form-data; name="x"', b'\r\nContent-Disposition: form-data; name="evil"; '
                                                              b'filename="a.php"'))) == []


# ---- through the pipeline, with Debian's OWASP CRS ----

def posted(tmp_path: Path, name: str, body: bytes, config: AnalyzeConfig, ctype: bytes = CTYPE,
           segment: int = 1 << 20) -> tuple[Path, set[int]]:
    request = (b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
               b"Content-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    steps = [(0, request[i:i + segment]) for i in range(0, len(request), segment)]
    pcap = conversation(tmp_path / f"{name}.pcap", [*steps, (1, OK)])
    res = run(pcap, config)
    return pcap, {a["rule_id"] for a in res.alerts() if a.get("category") == "waf"}


def test_real_crs_finds_a_php_upload_and_sqli_in_a_text_part(tmp_path, real_crs):
    shell = multipart(part(b'form-data; name="title"', b"holiday"),
                      part(b'form-data; name="upload"; filename="shell.php"', b"GIF89a\x00\x01\x02",
                           b"Content-Type: image/gif"))
    assert 933110 in posted(tmp_path, "shell", shell, real_crs)[1]
    sqli = multipart(part(b'form-data; name="q"', b"1 union select password from users--"),
                     part(b'form-data; name="photo"; filename="photo.jpg"', b"\xff\xd8\xff"))
    got = posted(tmp_path, "sqli", sqli, real_crs)[1]
    assert {942190, 949110} <= got, got
    # before, ARGS links did not see multipart fields: the same text as a file's content is not an argument
    hidden = multipart(part(b'form-data; name="f"; filename="notes.txt"', b"1 union select password from users--"))
    assert 942190 not in posted(tmp_path, "hidden", hidden, real_crs)[1]


def test_real_crs_is_quiet_on_an_ordinary_multipart_form(tmp_path, real_crs):
    ordinary = multipart(part(b'form-data; name="page"', b"2"),
                         part(b'form-data; name="sort"', b"price"),
                         part(b'form-data; name="comment"', b"Hello, world! See you at 10:30 & bring snacks."),
                         part(b'form-data; name="photo"; filename="photo.jpg"', NOISE(20000),
                              b"Content-Type: image/jpeg"))
    assert posted(tmp_path, "ordinary", ordinary, real_crs, segment=1448)[1] == set()
    # a urlencoded body naming a php file is no upload (933110 reads FILES and X-Filename headers only)
    assert 933110 not in posted(tmp_path, "urlenc", b"file=shell.php&page=2", real_crs,
                                b"application/x-www-form-urlencoded")[1]


def test_parts_agree_with_wireshark(tmp_path, tshark, real_crs):
    """tshark's mime_multipart dissector (an independent parser) splits the body into the same parts: each
    Content-Disposition it reports, read by httpforms.disposition, gives the arguments and files nvpcap's parse
    gave, in order."""
    body = multipart(part(b'form-data; name="page"', b"2"),
                     part(b'form-data; name="upload"; filename="shell.php"', b"<?php system($_GET['c']); ?>",
                          b"Content-Type: application/x-php"),
                     part(b"form-data; name=note", b"a\r\n--not-the-boundary\r\nb"),
                     part(b'form-data; name="photo"; filename="C:\\\\pics\\\\photo.jpg"', NOISE(3000)),
                     part(b'form-data; name="q"', b"1 union select 2"))
    pcap, got = posted(tmp_path, "oracle", body, real_crs, segment=1000)
    assert 933110 in got
    out = subprocess.run([tshark, "-r", str(pcap), "-Y", "mime_multipart", "-T", "fields", "-E", "occurrence=a",
                          "-E", "aggregator=\x1f", "-e", "mime_multipart.header.content-disposition"],
                         capture_output=True, timeout=120, check=True).stdout
    lines = [line for line in out.split(b"\n") if line.strip()]
    assert len(lines) == 1, out
    dispositions = [v.strip() for v in lines[0].split(b"\x1f")]
    assert len(dispositions) == 5
    theirs = [bodies.disposition(v) for v in dispositions]
    ours = units(body, piece=1000)
    assert [(n, v) for n, v in theirs if v is None] == [(n, None) for n in fields.select("select:apn", ours["form"],
                                                                                          "form")]
    assert [(n, v) for n, v in theirs if v is not None] == fields.form_args(ours["files"])
    assert fields.form_args(ours["files"]) == [(b"upload", b"shell.php"), (b"photo", b"C:\\pics\\photo.jpg")]
