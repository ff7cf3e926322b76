"""Reports: self-contained HTML for checks and analyses (html.py, Jinja2 with autoescape), and the CI formats of
a check result (ci_formats.py: table, JSON, JSONL, CSV, SARIF, JUnit)."""
