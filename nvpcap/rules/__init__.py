"""DLP/WAF rules: NeuVector sensor loaders, bundled packs, validators and the Hyperscan scanning engine.

    rules = load_bundled()                     # or neuvector.load_file(path, ids) for user sensors
    engine = RuleEngine(rules.rules)           # engine.problems, engine.warning
    fs = engine.flow_scanner(flow_key)
    fs.scan("url" | "header" | "body" | "sql" | "raw", side, data, frame, ts_ns) ...
    fs.close(); fs.alerts                      # [Match(rule, context, side, frame, ts_ns, snippet, count)]

NeuVector's session threats stay in nvpcap/threats.py.
"""
from .bundled import load_bundled
from .engine import FlowScanner, RuleEngine
from .model import LoadResult, Match, Pattern, Rule
from .neuvector import RuleIds, load_file, load_files, load_text

__all__ = ["FlowScanner", "LoadResult", "Match", "Pattern", "Rule", "RuleEngine", "RuleIds", "load_bundled",
           "load_file", "load_files", "load_text"]


def build_engine(paths: list[str] | tuple[str, ...] = (), bundled: bool = True) -> tuple[RuleEngine | None, list[str]]:
    """The run's engine from the bundled packs and the user's sensor files (one id space), with every
    problem found on the way (rules not imported, patterns not compiled, a slower fallback). None when there
    are no rules at all."""
    ids = RuleIds()
    loaded = load_bundled(ids) if bundled else LoadResult()
    loaded.extend(load_files(list(paths), ids))
    problems = list(loaded.problems)
    if not loaded.rules:
        return None, problems
    engine = RuleEngine(loaded.rules)
    problems += list(engine.problems)
    if engine.warning:
        problems.append(engine.warning)
    return engine, problems
