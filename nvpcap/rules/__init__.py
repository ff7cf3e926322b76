"""DLP/WAF rules and NeuVector's meters and session threats (Hyperscan). Not built yet: see the open issue
"DLP and WAF with Hyperscan"; the threat catalogue used today is nvpcap/threats.py."""
