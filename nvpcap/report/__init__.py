"""HTML/SARIF/JUnit reports for analysis and baseline checks. Not built yet: see the open issue
"Learn-mode baseline, replay check ... HTML violation report"."""
