#!/usr/bin/env python3
"""Markdown tables from the results.jsonl of scripts/bench-e2e.sh (or bench-load.sh).

    scripts/bench-summary.py RESULTS.jsonl

Throughput: median over the clean runs of a case (runs during which other processes used more than
OTHER_MAX % of the machine are excluded). Latency, RSS and CPU come from the clean run whose throughput
is nearest that median. Errors are summed over all runs, clean or not. Cases without a clean run are
listed with their contaminated figures, marked as such.
"""
import json, statistics, sys
from collections import OrderedDict


def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def groups(rows, key):
    g = OrderedDict()
    for r in rows:
        g.setdefault(key(r), []).append(r)
    return g


def pick(rs):
    """(median msgs/s, representative row, clean count, all count, errors, contaminated?)"""
    clean = [r for r in rs if r.get("clean") and "msgs_per_s" in r]
    use = clean or [r for r in rs if "msgs_per_s" in r]
    if not use:
        return None
    med = statistics.median(r["msgs_per_s"] for r in use)
    mid = min(use, key=lambda r: abs(r["msgs_per_s"] - med))
    errs = sum(r.get("errors", 0) for r in rs)
    return med, mid, len(clean), len(rs), errs, not clean


def f(x, d=0):
    if x is None:
        return "–"
    return f"{x:,.{d}f}"


def main():
    rows = load(sys.argv[1])
    out = []
    mib = lambda kb: f"{kb / 1024:.1f}" if kb else "–"

    rep = [r for r in rows if r.get("suite") == "replay"]
    if rep:
        out.append("### hl7bridge ACK throughput (`hl7bridge replay --unique-control-ids`, fixtures)\n")
        out.append("| backend | message | connections | N | clean / runs | msgs/s ACKed | p50 / p99 / max ACK ms | peak RSS MiB | bridge CPU % of a core | stage lag at last ACK | errors |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for (b, fx, c), rs in groups(rep, lambda r: (r["backend"], r["fixture"], r["conns"])).items():
            p = pick(rs)
            if not p:
                out.append(f"| {b} | {fx} | {c} | | 0 / {len(rs)} | run failed | | | | | |")
                continue
            med, m, nc, na, errs, dirty = p
            out.append(f"| {b} | {fx} | {c} | {m.get('n')} | {nc} / {na} | {f(med)}{' (contaminated)' if dirty else ''} | "
                       f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f} / {m['max_ms']:.1f} | {mib(m['rss_kb'])} | {m['cpu_pct']} | "
                       f"{'–' if m.get('stage_lag') is None else m['stage_lag']} | {errs} |")
        out.append("")

    e2e = [r for r in rows if r.get("suite") == "e2e"]
    if e2e:
        out.append("### End-to-end latency at a fixed offered rate (8 connections, ADT^A01 + ORU^R01 8 OBX)\n")
        out.append("| backend | offered msg/s | achieved msgs/s | ACK p50 / p99 ms | e2e messages measured | e2e p50 / p99 / max ms (received_at → FHIR committed) | peak RSS MiB | bridge CPU % | clean |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in e2e:
            out.append(f"| {r['backend']} | {r['offered_rate']} | {f(r.get('msgs_per_s'))} | {r.get('p50_ms', 0):.2f} / {r.get('p99_ms', 0):.2f} | "
                       f"{r.get('e2e_count')} | {f(r.get('e2e_p50_ms'), 1)} / {f(r.get('e2e_p99_ms'), 1)} / {f(r.get('e2e_max_ms'), 1)} | "
                       f"{mib(r['rss_kb'])} | {r['cpu_pct']} | {'yes' if r['clean'] else 'CONTAMINATED'} |")
        out.append("")

    pipe = [r for r in rows if r.get("suite") == "pipeline"]
    if pipe:
        out.append("### Whole pipeline (embedded, stage in `serve`): ORU^R01 8 OBX, 8 connections\n")
        out.append("| N | msgs/s ACKed | stage lag at last ACK | catch-up ms | whole-pipeline msgs/s (to FHIR committed) | FHIR records | peak RSS MiB | bridge CPU % | clean |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in pipe:
            out.append(f"| {r.get('n')} | {f(r.get('msgs_per_s'))} | {r['lag_at_last_ack']} | {f(r['catch_up_ms'])} | {f(r.get('pipeline_msgs_per_s'))} | "
                       f"{r['fhir_records']} | {mib(r['rss_kb'])} | {r['cpu_pct']} | {'yes' if r['clean'] else 'CONTAMINATED'} |")
        out.append("")

    kp = [r for r in rows if r.get("suite") == "kafka-pipe"]
    if kp:
        out.append("### Kafka pipeline at a fixed offered rate (README layout: Tansu + `serve --no-transform` on CPU 0, "
                   "`transform` on CPU 1; ORU^R01 8 OBX, 8 connections)\n")
        out.append("| run | offered msg/s | reached msgs/s | ACK p50 / p99 ms | e2e p50 / p99 ms | CPU µs per message | "
                   "Kafka requests per message | clean |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in kp:
            cpu = ", ".join(f"{k} {v}" for k, v in (r.get("cpu_us_per_msg") or {}).items())
            req = "; ".join(f"{c}: " + ", ".join(f"{a} {n}" for a, n in apis.items() if n >= 0.01)
                            for c, apis in (r.get("requests_per_msg") or {}).items()) or "–"
            out.append(f"| {r['label']} | {r['offered_rate']} | {f(r.get('msgs_per_s'))} | {r.get('p50_ms', 0):.2f} / "
                       f"{r.get('p99_ms', 0):.2f} | {f(r.get('e2e_p50_ms'), 1)} / {f(r.get('e2e_p99_ms'), 1)} | {cpu} | {req} | "
                       f"{'yes' if r['clean'] else 'CONTAMINATED'} |")
        out.append("")
    kg = [r for r in rows if r.get("suite") == "kafka-growth"]
    if kg:
        out.append(f"### Tansu over time (same layout, {kg[0]['rate']} msg/s offered): CPU µs per message, by 15 s window\n")
        out.append("| window | Tansu | bridge | transform |")
        out.append("|---|---|---|---|")
        for r in kg:
            out.append(f"| {r['window']} | {r['tansu_us']} | {r['bridge_us']} | {r['transform_us']} |")
        out.append("")
    kpl = [r for r in rows if r.get("suite") == "kafka-pipeline"]
    if kpl:
        out.append("### Whole pipeline on Kafka (same layout): ORU^R01 8 OBX, 8 connections, until every FHIR record is visible\n")
        out.append("| N | msgs/s ACKed | whole-pipeline msgs/s (to FHIR visible to a reader) | e2e p50 / p99 ms | clean |")
        out.append("|---|---|---|---|---|")
        for r in kpl:
            out.append(f"| {r.get('n')} | {f(r.get('msgs_per_s'))} | {f(r.get('pipeline_msgs_per_s'))} | "
                       f"{f(r.get('e2e_p50_ms'), 1)} / {f(r.get('e2e_p99_ms'), 1)} | {'yes' if r['clean'] else 'CONTAMINATED'} |")
        out.append("")

    for r in (r for r in rows if r.get("suite") == "fsync"):
        out.append(f"**Disk:** 4 KiB write + fsync at the {r['when']} of the run: p50 {r['fsync_p50_ms']} ms, p99 {r['fsync_p99_ms']} ms.\n")
    idle = [r for r in rows if r.get("suite") == "idle"]
    for r in idle:
        out.append(f"**Idle connections:** {r['conns']} opened ({r['established']} established at the bridge); "
                   f"bridge VmRSS {mib(r['rss_before_kb'])} MiB before, {mib(r['rss_kb'])} MiB with them.\n")

    lg = [r for r in rows if r.get("suite") == "loadgen" or ("suite" not in r and "mode" in r)]
    if lg:
        for r in lg:
            r.setdefault("server", "hl7bridge")
        g = groups(lg, lambda r: (r["server"], r["backend"], r["mode"], r["conns"]))
        ref = {}
        for (s, b, mode, c), rs in g.items():
            p = pick(rs)
            if s == "hl7bridge" and b == "embedded" and p:
                ref[(mode, c)] = p[0]
        out.append("### Same loadgen for hl7bridge and the peers (its own ADT/ORU mix, every ACK checked)\n")
        out.append("hl7bridge does a durable write (fsync, `synchronous=FULL`) before every ACK; the peers store nothing "
                   "(hl7v2-fhir-bridge writes a bundle file, without fsync).\n")
        out.append("| server | backend | mode | connections | N | clean / runs | msgs/s | p50 / p99 / max ms | errors | peak RSS MiB | CPU % | hl7bridge (embedded) ÷ this |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for (s, b, mode, c), rs in g.items():
            p = pick(rs)
            if not p:
                out.append(f"| {s} | {b} | {rs[0].get('mode', '?')} | {c} | | 0 / {len(rs)} | failed | | | | | |")
                continue
            med, m, nc, na, errs, dirty = p
            key = ("ping-pong" if mode == "conn-per-msg" else mode, c)
            broken = errs > 0 and m.get("ok", 0) < m.get("n", 0)
            ratio = f"{ref[key] / med:.2f}×" if key in ref and med > 0 and s != "hl7bridge" and not broken else ""
            if ratio and mode == "conn-per-msg":
                ratio += " (vs hl7bridge ping-pong)"
            out.append(f"| {s} | {b} | {mode} | {c} | {m.get('n')} | {nc} / {na} | {f(med)}{' (contaminated)' if dirty else ''}"
                       f"{' (**ACK errors**)' if broken else ''} | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} / {m['max_ms']:.1f} | {errs} | "
                       f"{mib(m['rss_kb'])} | {m['cpu_pct']} | {ratio} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
