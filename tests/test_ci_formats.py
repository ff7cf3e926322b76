"""CI output formats of `baseline check`: every format parses back, counts match the hand-built result, and
hostile capture strings come back as the same text (or, where a format cannot carry a character, as its escape).

SARIF is checked by hand against the OASIS SARIF 2.1.0 specification (errata01 OS); section numbers are cited at
each check. The JSON schema was not vendored (see the report of this change)."""
from __future__ import annotations

import copy
import csv
import io
import json
import xml.etree.ElementTree as ET
from urllib.parse import unquote, urlsplit

import pytest

from nvpcap.report.ci_formats import FORMATS, write_violations

HOSTILE = '<script>alert("x")</script> & ]]> [bold]red[/bold] :smile: é'
CONTROL = "evil\x1b[31m\x07\x00name"          # ESC, BEL, NUL: forbidden in XML 1.0, dangerous on a terminal


def _violation(**kw) -> dict:
    v = {
        "fingerprint": "0000000000000000", "type": "new_edge", "severity": 4, "severity_name": "high",
        "action": "violate", "accepted": False, "from_group": "web", "to_group": "db", "proto": "tcp", "port": 5432,
        "app": "postgresql", "message": "web -> db: tcp/5432 (postgresql) is not in the baseline",
        "flows": 3, "packets": 30, "bytes": 5000, "denied_packets": 0,
        "first_seen": 1700000000.0, "last_seen": 1700000005.0,
        "clients": ["10.0.0.1"], "servers": ["10.0.0.2"], "server_names": [],
        "evidence": [{"community_id": "1:abc=", "pcap_filename": "week2/b.pcap", "first_frame": 3, "last_frame": 11,
                      "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "10.0.0.2", "dest_port": 5432,
                      "ts": 1700000000.0}],
        "closest_rule": None,
        "suggested_rule": {"from": "web", "to": "db", "kind": "app", "ports": ["tcp/5432"],
                           "applications": ["postgresql"]},
        "rule_id": None, "rule_name": None, "snippet": None,
    }
    v.update(kw)
    return v


@pytest.fixture
def result() -> dict:
    vs = [
        # critical alert, not accepted: fails (fail_on medium)
        _violation(fingerprint="a1a1a1a1a1a1a1a1", type="dlp", severity=5, severity_name="critical", app="http",
                   rule_id=2002, rule_name="sensor.creditcard", snippet="****1111", suggested_rule=None,
                   message=f"DLP match in {HOSTILE}", server_names=[HOSTILE, CONTROL],
                   evidence=[{**_violation()["evidence"][0], "pcap_filename": "caps/my capture #1.pcap"}]),
        # high new edge, not accepted: fails
        _violation(fingerprint="b2b2b2b2b2b2b2b2", message=f"new edge to {CONTROL}"),
        # medium new port, accepted: skipped, never fails
        _violation(fingerprint="c3c3c3c3c3c3c3c3", type="new_port", severity=3, severity_name="medium",
                   accepted=True, port=6432, app=None, message="web -> db: tcp/6432 is not in the baseline"),
        # low external destination, not accepted but below fail_on: passes
        _violation(fingerprint="d4d4d4d4d4d4d4d4", type="external_destination", severity=2, severity_name="low",
                   to_group="external", port=443, app="ssl", evidence=[],
                   message="web -> external: tcp/443 (ssl) is not in the baseline"),
    ]
    return {
        "tool": {"name": "nvpcap", "version": "0.1.0"}, "kind": "check", "mode": "monitor", "verdict": "fail",
        "fail_on": "medium",
        "baseline": {"path": "baseline.yaml", "rules": 2, "learned_from": ["week1/a.pcap"]},
        "rule_packs": [{"name": "bundled:dlp", "rules": 4}], "inputs": [],
        "capture_quality": {"packets": 10, "outcomes": {"decoded": 10}, "issues": []},
        "totals": {"flows": 12, "flows_checked": 12, "flows_allowed": 2, "flows_violating": 10, "flows_ignored": 0,
                   "violations": 4, "accepted": 1, "denied_packets": 0,
                   "first_ts": 1700000000.0, "last_ts": 1700000005.0},
        "violations": vs, "graph": {"nodes": [], "edges": []}, "hostnames": {"10.0.0.2": [HOSTILE]},
    }


def _render(result: dict, fmt: str) -> str:
    buf = io.StringIO()
    write_violations(result, fmt, buf)
    return buf.getvalue()


def test_unknown_format_is_a_clear_error(result):
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        _render(result, "xml")


def test_every_format_writes_utf8_encodable_text_even_with_lone_surrogates(result):
    # A name decoded with surrogateescape carries lone surrogates, which UTF-8 cannot encode.
    result["violations"][1]["server_names"] = ["bad\udcffbyte"]
    result["violations"][1]["evidence"][0]["pcap_filename"] = "bad\udcff.pcap"
    for fmt in FORMATS:
        _render(result, fmt).encode("utf-8")   # raises UnicodeEncodeError if a surrogate leaked


def test_json_is_the_whole_result(result):
    assert json.loads(_render(result, "json")) == result


def test_jsonl_one_violation_per_line(result):
    lines = _render(result, "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == result["violations"]


def test_jsonl_without_violations_is_empty(result):
    result["violations"] = []
    assert _render(result, "jsonl") == ""


def test_csv_round_trip(result):
    rows = list(csv.DictReader(io.StringIO(_render(result, "csv"))))
    assert len(rows) == 4
    assert [r["fingerprint"] for r in rows] == [v["fingerprint"] for v in result["violations"]]
    dlp = rows[0]
    assert dlp["message"] == f"DLP match in {HOSTILE}"
    assert json.loads(dlp["server_names"]) == [HOSTILE, CONTROL]       # JSON text column, exact strings back
    assert json.loads(dlp["evidence"]) == result["violations"][0]["evidence"]
    assert dlp["pcap_filename"] == "caps/my capture #1.pcap" and dlp["first_frame"] == "3"
    assert dlp["rule_id"] == "2002" and dlp["snippet"] == "****1111"
    assert rows[1]["message"] == f"new edge to {CONTROL}"               # csv quoting keeps control chars as text
    assert rows[2]["accepted"] == "true" and rows[2]["app"] == ""
    assert rows[3]["pcap_filename"] == "" and rows[3]["evidence"] == "[]"
    assert json.loads(rows[1]["closest_rule"] or "null") is None


def test_table_shows_verdict_and_rows_without_markup_or_escapes(result):
    text = _render(result, "table")
    assert text.splitlines()[0].startswith("FAIL: 4 violation(s), 1 accepted, fail-on medium")
    for fp in ("a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2", "c3c3c3c3c3c3c3c3", "d4d4d4d4d4d4d4d4"):
        assert fp in text
    assert "medium (accepted)" in text
    assert "\x1b" not in text and "\x07" not in text            # no terminal control from the capture
    assert "web -> external" in text and "tcp/443" in text


def test_table_cells_are_not_rich_markup():
    v = _violation(from_group="[bold]x[/bold]", to_group=":smile:\x1b[2J")
    res = {"verdict": "fail", "fail_on": "any", "mode": "monitor", "totals": {}, "violations": [v]}
    text = _render(res, "table")
    assert "[bold]x[/bold]" in text                 # printed literally, not interpreted
    assert ":smile:" in text and "\\x1b[2J" in text  # no emoji substitution; ESC shown as an escape
    assert "\x1b" not in text


def test_table_pass_without_violations(result):
    result.update(verdict="pass", violations=[])
    result["totals"].update(violations=0, accepted=0)
    text = _render(result, "table")
    assert text.startswith("PASS: 0 violation(s)") and "fingerprint" not in text


# ---- JUnit -------------------------------------------------------------------------------------------------------

def test_junit_cases_failures_skips(result):
    root = ET.fromstring(_render(result, "junit").encode("utf-8"))
    suite = root.find("testsuite")
    assert suite.get("name") == "nvpcap baseline check"
    cases = suite.findall("testcase")
    assert len(cases) == 4
    # fail_on medium: the critical and the high violation fail; the accepted medium is skipped; the low passes.
    assert [c.find("failure") is not None for c in cases] == [True, True, False, False]
    assert [c.find("skipped") is not None for c in cases] == [False, False, True, False]
    for el in (root, suite):
        assert (el.get("tests"), el.get("failures"), el.get("errors"), el.get("skipped")) == ("4", "2", "0", "1")
    assert cases[0].find("failure").get("message") == f"DLP match in {HOSTILE}"     # markup survives as text
    assert cases[0].find("failure").get("type") == "critical"
    assert HOSTILE in cases[0].find("failure").text
    # ESC, BEL, NUL are not XML 1.0 characters: written as escapes, so the document parses
    assert cases[1].find("failure").get("message") == "new edge to evil\\x1b[31m\\x07\\x00name"
    assert "below --fail-on medium" in cases[3].find("system-out").text
    assert "b2b2b2b2b2b2b2b2" in cases[1].get("name")


def test_junit_fail_on_any_and_high(result):
    result["fail_on"] = "any"
    suite = ET.fromstring(_render(result, "junit")).find("testsuite")
    assert suite.get("failures") == "3"           # every not-accepted violation
    result["fail_on"] = "critical"
    suite = ET.fromstring(_render(result, "junit")).find("testsuite")
    assert suite.get("failures") == "1"


def test_junit_no_violations_is_one_passing_case(result):
    result.update(verdict="pass", violations=[])
    suite = ET.fromstring(_render(result, "junit")).find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 1 and list(cases[0]) == []
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "0")


# ---- SARIF 2.1.0 -------------------------------------------------------------------------------------------------

RESULT_PROPS = {  # SARIF 2.1.0 section 3.27 (result object): the properties it defines
    "guid", "correlationGuid", "ruleId", "ruleIndex", "rule", "taxa", "kind", "level", "message", "locations",
    "analysisTarget", "webRequest", "webResponse", "fingerprints", "partialFingerprints", "codeFlows", "graphs",
    "graphTraversals", "stacks", "relatedLocations", "suppressions", "baselineState", "rank", "attachments",
    "workItemUris", "hostedViewerUri", "provenance", "fixes", "occurrenceCount", "properties"}


def test_sarif_structure(result):
    log = json.loads(_render(result, "sarif"))
    # 3.13.2 version "2.1.0"; 3.13.3 $schema is a URI string; 3.13.4 runs is an array
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-schema-2.1.0.json")
    assert isinstance(log["runs"], list) and len(log["runs"]) == 1
    run = log["runs"][0]
    # 3.14.6 run.tool required; 3.18.2 tool.driver required; 3.19.8 toolComponent.name required
    driver = run["tool"]["driver"]
    assert driver["name"] == "nvpcap" and driver["version"] == "0.1.0"
    assert "informationUri" not in driver
    rules = driver["rules"]
    # 3.49.3 reportingDescriptor.id required, unique within the component
    ids = [r["id"] for r in rules]
    assert ids == ["dlp/2002", "new_edge", "new_port", "external_destination"]
    assert rules[0]["name"] == "sensor.creditcard"
    for r in rules:
        assert r["shortDescription"]["text"]                                  # 3.49.9 multiformatMessageString
        assert r["defaultConfiguration"]["level"] in ("none", "note", "warning", "error")   # 3.50.3
    results = run["results"]
    assert len(results) == len(result["violations"])
    for res, v in zip(results, result["violations"]):
        assert set(res) <= RESULT_PROPS
        assert res["message"]["text"] == v["message"]                        # 3.27.11 message required; 3.11.8 text
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]                # 3.27.6: ruleIndex points at ruleId's rule
        assert res["partialFingerprints"] == {"nvpcapFingerprint/v1": v["fingerprint"]}   # 3.27.17
    # 3.27.10 level: error for high/critical, warning for medium, note for low/info
    assert [r["level"] for r in results] == ["error", "error", "warning", "note"]
    # 3.27.23 / 3.35: suppressions only on the accepted one; kind (required) is inSource or external
    assert [("suppressions" in r) for r in results] == [False, False, True, False]
    sup = results[2]["suppressions"][0]
    assert sup["kind"] == "external" and sup["status"] in ("accepted", "underReview", "rejected")
    # 3.27.12 locations; 3.28.3 physicalLocation; 3.29.3 artifactLocation; 3.4.3 uri is a URI reference
    loc = results[0]["locations"][0]
    uri = loc["physicalLocation"]["artifactLocation"]["uri"]
    assert " " not in uri and "#" not in uri and urlsplit(uri).path == uri     # relative reference, no fragment
    assert unquote(uri) == "caps/my capture #1.pcap"
    # 3.28.4 logicalLocations; 3.33.4 name
    assert loc["logicalLocations"][0]["name"] == "frames 3-11"
    assert results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "week2/b.pcap"
    assert "locations" not in results[3]                                      # no evidence, no location
    # hostile strings are plain JSON strings: exactly the same text back
    assert results[0]["message"]["text"] == f"DLP match in {HOSTILE}"
    assert results[0]["properties"]["server_names"] == [HOSTILE, CONTROL]
    assert run["properties"]["verdict"] == "fail" and run["properties"]["totals"]["violations"] == 4


def test_sarif_empty_run(result):
    result.update(verdict="pass", violations=[])
    run = json.loads(_render(result, "sarif"))["runs"][0]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []


def test_writers_do_not_modify_the_result(result):
    before = copy.deepcopy(result)
    for fmt in FORMATS:
        _render(result, fmt)
    assert result == before



# A subset of the SARIF 2.1.0 schema, written from the specification for the objects this writer emits:
# required properties, enums and the closed property sets (the schema sets additionalProperties false on each).
def _obj(props: dict, required: tuple = (), **extra) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": props, "required": list(required),
            **extra}


_BAG = {"type": "object"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
_MSG = _obj({"text": _STR, "markdown": _STR, "id": _STR, "arguments": {"type": "array"}, "properties": _BAG},
            anyOf=[{"required": ["text"]}, {"required": ["id"]}])                                   # 3.11
_MMS = _obj({"text": _STR, "markdown": _STR, "properties": _BAG}, ("text",))                       # 3.12
_CONFIG = _obj({"enabled": {"type": "boolean"}, "level": _LEVEL, "rank": {"type": "number"},
                "parameters": _BAG, "properties": _BAG})                                            # 3.50
_DESCRIPTOR = _obj({"id": _STR, "name": _STR, "shortDescription": _MMS, "fullDescription": _MMS,
                    "defaultConfiguration": _CONFIG, "helpUri": _STR, "help": _MMS,
                    "properties": _BAG}, ("id",))                                                   # 3.49
_DRIVER = _obj({"name": _STR, "version": _STR, "semanticVersion": _STR,
                "informationUri": {"type": "string", "format": "uri"},
                "rules": {"type": "array", "uniqueItems": True, "items": _DESCRIPTOR}}, ("name",))  # 3.19
_TOOL = _obj({"driver": _DRIVER, "extensions": {"type": "array"}, "properties": _BAG}, ("driver",))  # 3.18
_ARTIFACT_LOCATION = _obj({"uri": {"type": "string", "format": "uri-reference"}, "uriBaseId": _STR,
                           "index": _INT, "description": _MSG, "properties": _BAG})                 # 3.4
_PHYSICAL = _obj({"address": _BAG, "artifactLocation": _ARTIFACT_LOCATION, "region": _BAG,
                  "contextRegion": _BAG, "properties": _BAG},
                 anyOf=[{"required": ["address"]}, {"required": ["artifactLocation"]}])             # 3.29
_LOGICAL = _obj({"name": _STR, "index": _INT, "fullyQualifiedName": _STR, "decoratedName": _STR,
                 "parentIndex": _INT, "kind": _STR, "properties": _BAG})                            # 3.33
_LOCATION = _obj({"id": _INT, "physicalLocation": _PHYSICAL,
                  "logicalLocations": {"type": "array", "items": _LOGICAL}, "message": _MSG,
                  "annotations": {"type": "array"}, "relationships": {"type": "array"},
                  "properties": _BAG})                                                              # 3.28
_SUPPRESSION = _obj({"guid": _STR, "kind": {"enum": ["inSource", "external"]},
                     "status": {"enum": ["accepted", "underReview", "rejected"]}, "justification": _STR,
                     "location": _LOCATION, "properties": _BAG}, ("kind",))                         # 3.35
_RESULT = _obj({**{k: {} for k in RESULT_PROPS},
                "ruleId": _STR, "ruleIndex": {"type": "integer", "minimum": -1}, "level": _LEVEL,
                "message": _MSG, "locations": {"type": "array", "items": _LOCATION},
                "partialFingerprints": {"type": "object", "additionalProperties": _STR},
                "suppressions": {"type": "array", "uniqueItems": True, "items": _SUPPRESSION},
                "properties": _BAG}, ("message",))                                                 # 3.27
_RUN = {"type": "object", "required": ["tool"],
        "properties": {"tool": _TOOL, "results": {"type": "array", "items": _RESULT}, "properties": _BAG}}  # 3.14
SARIF_SUBSET = _obj({"$schema": {"type": "string", "format": "uri"}, "version": {"enum": ["2.1.0"]},
                     "runs": {"type": "array", "items": _RUN}, "properties": _BAG}, ("version", "runs"))  # 3.13


def test_sarif_validates_against_the_spec_subset(result):
    jsonschema = pytest.importorskip("jsonschema")
    # formats (uri, uri-reference) are checked only when jsonschema has a URI library; test_sarif_structure checks
    # the artifact URI by hand either way
    validator = jsonschema.Draft7Validator(SARIF_SUBSET, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    log = json.loads(_render(result, "sarif"))
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, errors[0]
    # the subset is not vacuous: a suppression with an unknown kind and a result without message are rejected
    bad = copy.deepcopy(log)
    bad["runs"][0]["results"][2]["suppressions"][0]["kind"] = "accepted"
    del bad["runs"][0]["results"][0]["message"]
    assert len(list(validator.iter_errors(bad))) == 2


def test_numpy_scalars_stay_numbers(result):
    np = pytest.importorskip("numpy")
    result["violations"][0]["flows"] = np.int64(7)
    result["totals"]["first_ts"] = np.float64(1.5)
    assert json.loads(_render(result, "json"))["violations"][0]["flows"] == 7
    assert json.loads(_render(result, "jsonl").splitlines()[0])["flows"] == 7
    assert json.loads(_render(result, "sarif"))["runs"][0]["results"][0]["properties"]["flows"] == 7
    assert json.loads(_render(result, "sarif"))["runs"][0]["properties"]["totals"]["first_ts"] == 1.5
