#!/usr/bin/env python3
"""Payload scanning speed of the DLP/WAF/IDS rules engine, in MB/s of payload, with the bundled packs and with
a ~500-rule set, on the payloads of a capture.

    python3 bench/rules_scan.py [CAPTURE] [--packets 200000] [--sets bundled,500] [--repeat 3]
    python3 bench/rules_scan.py CAPTURE --dump-alerts /tmp/before   # /tmp/before.bundled, /tmp/before.500: diff
                                                                    # them with a dump after an engine change
    python3 bench/rules_scan.py --write-rules bench/data/et-generated.rules   # the generated part of the 500

The capture's payloads are read first (dpkt, no reassembly: each TCP segment in capture order, as a flow
direction's next chunk) and kept in memory; then only the engine is timed, through the calls the pipeline
makes (nvpcap/protocols/applayer.py): one FlowScanner per flow with the flow's app and endpoints; for flows
whose first payload is an HTTP/1 request, each message head as a `url` unit (the request target) and a
`header` unit (the header block), the rest of the segment and later segments as the `body` stream of that
side; for TLS (first byte 0x16, 0x03) and SSH flows nothing (the pipeline does not scan them); for every other
flow (DNS, SQL, unidentified, ...) each payload as the `raw` stream of its side. MB/s counts the bytes handed
to the engine.

The ~500-rule set ("500"): the bundled packs (NeuVector DLP sensors, secrets, WAF, IBAN: 38 rules) + the OWASP
CRS rules nvpcap imports at paranoia level 1 from /usr/share/modsecurity-crs/rules (Debian's modsecurity-crs
3.3.4: 87 rules) + generated Emerging-Threats-style Suricata rules up to 500 (`et_rules`: http.uri contents
with distance, User-Agent contents in http.header, hex contents on raw TCP, dns.query and tls.sni suffixes,
pcre on the uri; headers with $HOME_NET/$EXTERNAL_NET and $HTTP_PORTS, like ET's).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import dpkt

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from nvpcap.rules import RuleEngine, RuleIds, load_bundled, load_files  # noqa: E402
from nvpcap.rules import suricata  # noqa: E402

CRS_DIR = Path("/usr/share/modsecurity-crs/rules")
DEFAULT_FILE = BENCH_DIR / "data" / "real_mix.pcap"
TARGET_RULES = 500
METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
SID_BASE = 9_100_000


# ---- the rule sets ----

def et_rules(count: int, seed: int = 4) -> str:
    """`count` Emerging-Threats-style rules (deterministic): realistic shapes, literals that real traffic does
    not contain (random words), so the cost measured is scanning, not alerting."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def word(n: int = 8) -> str:
        return "".join(rnd.choice(letters) for _ in range(n))

    lines = []
    for i in range(count):
        sid = SID_BASE + i
        kind = i % 10
        if kind in (0, 1, 2):
            body = (f'flow:established,to_server; http.uri; content:"/{word()}.php"; nocase; '
                    f'content:"{word(4)}="; distance:0;')
            head = "http $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS"
        elif kind == 3:
            body = f'flow:established,to_server; http.uri; content:"/{word(6)}/{word(6)}"; fast_pattern;'
            head = "http $HOME_NET any -> any any"
        elif kind in (4, 5):
            body = f'flow:established,to_server; http.header; content:"User-Agent|3a 20|{word(10)}"; nocase;'
            head = "http $HOME_NET any -> $EXTERNAL_NET any"
        elif kind == 6:
            hexes = " ".join(f"{rnd.randrange(256):02x}" for _ in range(6))
            body = f'flow:established; content:"|{hexes}|"; depth:64; content:"{word(5)}"; distance:0;'
            head = "tcp $EXTERNAL_NET any -> $HOME_NET any"
        elif kind == 7:
            body = f'dns.query; content:".{word(7)}.top"; nocase; endswith;'
            head = "dns $HOME_NET any -> any any"
        elif kind == 8:
            body = f'tls.sni; content:"{word(9)}.xyz"; nocase; endswith;'
            head = "tls $HOME_NET any -> $EXTERNAL_NET any"
        else:
            body = (f'flow:established,to_server; http.uri; content:"/{word(5)}"; '
                    f'pcre:"/\\/{word(5)}\\/[a-z0-9]{{8,16}}\\.(?:php|asp)\\?id=\\d{{4,8}}/U";')
            head = "http $HOME_NET any -> $EXTERNAL_NET any"
        lines.append(f'alert {head} (msg:"ET-GEN {i} {word(6)}"; {body} classtype:trojan-activity; '
                     f'sid:{sid}; rev:1;)')
    return "\n".join(lines) + "\n"


def load_set(name: str, et_path: Path | None = None) -> tuple[list, list[str], str]:
    """(rules, problems, description) of a set: "bundled" or "500"."""
    ids = RuleIds()
    res = load_bundled(ids)
    if name == "bundled":
        return res.rules, res.problems, f"bundled packs ({len(res.rules)})"
    n_bundled = len(res.rules)
    n_crs = 0
    if CRS_DIR.is_dir():
        crs = load_files([CRS_DIR], ids)
        res.extend(crs)
        n_crs = len(crs.rules)
    n_et = max(0, TARGET_RULES - len(res.rules))
    et = suricata.load_text(et_rules(n_et), "et-generated.rules", ids)
    res.extend(et)
    desc = f"bundled {n_bundled} + CRS PL1 {n_crs} + ET-style {len(et.rules)}"
    if not CRS_DIR.is_dir():
        desc += f" (no CRS: {CRS_DIR} missing)"
    return res.rules, res.problems, desc


def write_et(path: Path) -> int:
    """Write the generated part of the 500 set (what `nvpcap analyze --rules` loads beside CRS)."""
    ids = RuleIds()
    n = len(load_bundled(ids).rules)
    if CRS_DIR.is_dir():
        n += len(load_files([CRS_DIR], ids).rules)
    count = max(0, TARGET_RULES - n)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(et_rules(count))
    return count


# ---- the payloads ----

def _addr_key(ip: bytes) -> tuple[int, int]:
    """nvpcap's two 64-bit words (IPv4 mapped into ::ffff:0:0/96)."""
    if len(ip) == 4:
        return 0, (0xFFFF << 32) | int.from_bytes(ip, "big")
    v = int.from_bytes(ip, "big")
    return v >> 64, v & ((1 << 64) - 1)


def read_payloads(path: Path, limit: int) -> tuple[list[tuple[int, int, bytes]], dict[int, tuple], int]:
    """[(flow number, side, payload)] in capture order, {flow number: keys}, packets read."""
    flows: dict[tuple, int] = {}
    keys: dict[int, tuple] = {}
    out: list[tuple[int, int, bytes]] = []
    n = 0
    with open(path, "rb") as f:
        pcapng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if pcapng else dpkt.pcap.Reader(f)
        for _ts, buf in reader:
            n += 1
            if n > limit:
                break
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.dpkt.UnpackError, IndexError, ValueError):
                continue
            ip = eth.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                proto = 6
            elif isinstance(l4, dpkt.udp.UDP):
                proto = 17
            else:
                continue
            data = bytes(l4.data)
            if not data:
                continue
            a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
            fwd = (proto, a, b)
            fid = flows.get(fwd)
            side = 0
            if fid is None:
                fid = flows.get((proto, b, a))
                side = 1
            if fid is None:
                fid = flows[fwd] = len(flows)
                side = 0
                keys[fid] = (proto, *_addr_key(ip.src), *_addr_key(ip.dst), l4.sport, l4.dport, 0)
            out.append((fid, side, data))
    return out, keys, min(n, limit)


def plan(payloads: list[tuple[int, int, bytes]]) -> tuple[list[tuple[int, str, int, bytes]], dict[int, str | None]]:
    """The engine calls the pipeline would make: [(flow, context, side, bytes)] and each flow's app."""
    apps: dict[int, str | None] = {}
    calls: list[tuple[int, str, int, bytes]] = []
    for fid, side, data in payloads:
        app = apps.get(fid, "?")
        if app == "?":
            if data.startswith(METHODS):
                app = "http"
            elif data[:2] in (b"\x16\x03", b"\x17\x03", b"\x15\x03", b"\x14\x03") or data.startswith(b"SSH-"):
                app = "ssl"
            else:
                app = None
            apps[fid] = app
        if app == "ssl":
            continue
        if app == "http":
            head_end = data.find(b"\r\n\r\n")
            if head_end > 0 and (data.startswith(METHODS) or data.startswith(b"HTTP/1.")):
                head = data[: head_end + 2]
                line_end = head.find(b"\r\n")
                if side == 0:
                    parts = head[:line_end].split(b" ")
                    if len(parts) >= 2:
                        calls.append((fid, "url", 0, parts[1]))
                calls.append((fid, "header", side, head[line_end + 2 :]))
                rest = data[head_end + 4 :]
                if rest:
                    calls.append((fid, "body", side, rest))
            else:
                calls.append((fid, "body", side, data))
        else:
            calls.append((fid, "raw", side, data))
    return calls, apps


def scan_all(engine: RuleEngine, calls: list[tuple[int, str, int, bytes]], apps: dict[int, str | None],
             keys: dict[int, tuple], dump: list[str] | None = None) -> tuple[float, int]:
    """Seconds to scan every call (flows closed at the end), alerts raised; with `dump`, one line per alert
    appended to it (outside the timed part)."""
    scanners = {}
    t0 = time.perf_counter()
    for i, (fid, ctx, side, data) in enumerate(calls):
        fs = scanners.get(fid)
        if fs is None:
            fs = scanners[fid] = engine.flow_scanner(fid, apps.get(fid), keys[fid])
        fs.scan(ctx, side, data, i, i)
    alerts = 0
    for fs in scanners.values():
        fs.close()
        alerts += len(fs.alerts)
    seconds = time.perf_counter() - t0
    if dump is not None:
        for fid, fs in scanners.items():
            dump.extend(alert_line(fid, m) for m in fs.alerts)
    return seconds, alerts


def alert_line(fid: int, m: object) -> str:
    """One alert as a line to diff between two versions of the engine: rule, flow, side, context, frame,
    count, snippet."""
    return (f"{m.rule.rule_id}\t{fid}\t{m.side}\t{m.context}\t{m.frame}\t{m.count}\t"  # type: ignore[attr-defined]
            f"{m.snippet!r}")  # type: ignore[attr-defined]


def cache_stats(cache: object) -> str:
    """The url/header unit cache of the last scan: hit rate, entries, estimated bytes."""
    looked = cache.hits + cache.misses  # type: ignore[attr-defined]
    rate = cache.hits / looked if looked else 0.0  # type: ignore[attr-defined]
    return (f"unit cache {rate:.0%} hits of {looked:,} units, {len(cache):,} entries, "  # type: ignore[arg-type]
            f"~{cache.bytes / 1e6:.1f} MB, {cache.evictions:,} evicted")  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    p.add_argument("--packets", type=int, default=200_000, help="read at most this many packets (default 200000)")
    p.add_argument("--sets", default="bundled,500", help="rule sets: bundled, 500 (default both)")
    p.add_argument("--repeat", type=int, default=3, help="scans per set; the median is reported")
    p.add_argument("--backend", default="auto", choices=("auto", "hyperscan", "python"))
    p.add_argument("--write-rules", type=Path, metavar="OUT", help="write the generated ET-style rules and exit")
    p.add_argument("--profile", action="store_true", help="cProfile one scan of each set")
    p.add_argument("--dump-alerts", type=Path, metavar="PATH",
                   help="write every alert of the last scan of each set (one line each, sorted) to PATH.<set>")
    args = p.parse_args(argv)
    if args.write_rules:
        print(f"{args.write_rules}: {write_et(args.write_rules)} rules", file=sys.stderr)
        return 0
    t = time.perf_counter()
    payloads, keys, packets = read_payloads(args.file, args.packets)
    calls, apps = plan(payloads)
    total = sum(len(c[3]) for c in calls)
    by_ctx: dict[str, int] = {}
    for c in calls:
        by_ctx[c[1]] = by_ctx.get(c[1], 0) + len(c[3])
    print(f"file: {args.file}, {packets:,} packets, {len(keys):,} flows with payload, {len(calls):,} scan calls, "
          f"{total / 1e6:.1f} MB scanned ({', '.join(f'{k} {v / 1e6:.1f}' for k, v in sorted(by_ctx.items()))}); "
          f"read in {time.perf_counter() - t:.1f} s", flush=True)
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        rules, problems, desc = load_set(name)
        t = time.perf_counter()
        engine = RuleEngine(rules, backend=args.backend)
        compile_s = time.perf_counter() - t
        if args.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            prof.enable()
            scan_all(engine, calls, apps, keys)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        times, alerts = [], 0
        for i in range(args.repeat):
            dump: list[str] | None = [] if args.dump_alerts and i == args.repeat - 1 else None
            engine.unit_cache.clear()  # each scan starts cold, as a run does
            s, alerts = scan_all(engine, calls, apps, keys, dump)
            times.append(s)
            if dump is not None:
                Path(f"{args.dump_alerts}.{name}").write_text("".join(f"{line}\n" for line in sorted(dump)))
        med = statistics.median(times)
        print(f"{name:>8}: {len(engine.rules)} rules ({desc}; {len(problems)} not imported, "
              f"{len(engine.problems)} not compiled), compile {compile_s:.1f} s, backend "
              f"{type(engine.backend).__name__}: scan {med:.2f} s (median of {args.repeat}) = "
              f"{total / 1e6 / med:,.0f} MB/s of payload, {len(calls) / med:,.0f} calls/s, {alerts} alerts; "
              f"{cache_stats(engine.unit_cache)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
