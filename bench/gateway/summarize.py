#!/usr/bin/env python3
"""Summarize bench.py's JSON lines: Markdown tables (results, margin vs LiteLLM, the issue's targets) and one
summary JSON line per (variant, connections, target) plus one for the targets.

    .venv/bin/python bench/gateway/summarize.py bench/gateway/results/run-*.jsonl

Statistics: the median over the measured runs (reps) of each figure; "added" latency = the median for a
gateway minus the median for direct calls to the mock, same variant and connection count.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

TARGETS = {  # the goals for margin
    "added_p50_ms_c1": 1.0,
    "added_p99_ms_c1": 5.0,
    "cpu_ms_per_req": 1.0,
    "rps_vs_litellm": 20.0,
}


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load(paths: list[str]) -> tuple[dict, list[dict], dict]:
    meta, runs, ledger = {}, [], {}
    crashes = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                kind = rec.get("type")
                if kind == "meta":
                    meta = rec
                elif kind == "run":
                    runs.append(rec)
                elif kind == "ledger":
                    ledger = rec
                elif kind == "crash":
                    crashes.append(rec)
    if crashes:
        ledger = {**ledger, "crashes": crashes}
    return meta, runs, ledger


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["variant"], r["conns"], r["target"])].append(r)
    order = {"direct": 0, "margin": 1, "margin-redis": 2, "margin-x2": 3, "litellm": 4}
    rows = []
    for (variant, conns, target), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "json", kv[0][1], order.get(kv[0][2], 9))
    ):
        row = {"type": "summary", "variant": variant, "conns": conns, "target": target, "runs": len(rs)}
        for k in (
            "rps",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "server_cpu_ms_per_req",
            "server_cpu_pct",
            "mock_cpu_pct",
            "redis_cpu_ms_per_req",
            "wrk_cpu_pct",
            "other_cpu_pct",
            "steal_pct",
        ):
            row[k] = median([r.get(k) for r in rs])
        row["rps_min_max"] = [min(r["rps"] for r in rs), max(r["rps"] for r in rs)]
        row["p50_ms_min_max"] = [min(r["p50_ms"] for r in rs), max(r["p50_ms"] for r in rs)]
        row["p99_ms_min_max"] = [min(r["p99_ms"] for r in rs), max(r["p99_ms"] for r in rs)]
        row["other_cpu_pct_runs"] = [r["other_cpu_pct"] for r in rs]
        row["disturbed_runs"] = sum(1 for r in rs if r.get("disturbed"))
        row["errors"] = sum(r["errors"] for r in rs)
        up = [r.get("upstream_connections") for r in rs if r.get("upstream_connections") is not None]
        row["upstream_connections_opened"] = sum(up) if up else None
        row["requests"] = sum(r["requests"] for r in rs)
        rows.append(row)
    direct = {(r["variant"], r["conns"]): r for r in rows if r["target"] == "direct"}
    for r in rows:
        d = direct.get((r["variant"], r["conns"]))
        if d and r["target"] != "direct":
            for k in ("p50_ms", "p90_ms", "p99_ms"):
                r["added_" + k] = round(r[k] - d[k], 4)
    return rows


def targets(rows: list[dict]) -> list[dict]:
    by = {(r["variant"], r["conns"], r["target"]): r for r in rows}
    out = []

    def add(name: str, goal: str, measured: str, met: bool | None, value: float | None, **extra) -> None:
        out.append({"target": name, "goal": goal, "measured": measured, "met": met, "value": value, **extra})

    m1 = by.get(("json", 1, "margin"))
    if m1 and "added_p50_ms" in m1:
        add(
            "added latency p50, 1 connection (non-streaming)",
            f"<= {TARGETS['added_p50_ms_c1']} ms",
            f"{m1['added_p50_ms']:.3f} ms",
            m1["added_p50_ms"] <= TARGETS["added_p50_ms_c1"],
            m1["added_p50_ms"],
        )
        add(
            "added latency p99, 1 connection (non-streaming)",
            f"<= {TARGETS['added_p99_ms_c1']} ms",
            f"{m1['added_p99_ms']:.3f} ms",
            m1["added_p99_ms"] <= TARGETS["added_p99_ms_c1"],
            m1["added_p99_ms"],
        )
    s1 = by.get(("stream", 1, "margin"))
    if s1 and "added_p50_ms" in s1:
        add(
            "added latency p50 / p99, 1 connection (streaming, to the last byte)",
            f"<= {TARGETS['added_p50_ms_c1']} / {TARGETS['added_p99_ms_c1']} ms",
            f"{s1['added_p50_ms']:.3f} / {s1['added_p99_ms']:.3f} ms",
            s1["added_p50_ms"] <= TARGETS["added_p50_ms_c1"] and s1["added_p99_ms"] <= TARGETS["added_p99_ms_c1"],
            s1["added_p50_ms"],
        )
    for variant in ("json", "stream"):
        cpu = [
            (r["conns"], r["server_cpu_ms_per_req"])
            for r in rows
            if r["variant"] == variant and r["target"] == "margin" and r["server_cpu_ms_per_req"] is not None
        ]
        if cpu:
            worst = max(v for _, v in cpu)
            add(
                f"gateway CPU per request ({'non-streaming' if variant == 'json' else 'streaming'}, "
                f"conns {'/'.join(str(c) for c, _ in cpu)})",
                f"<= {TARGETS['cpu_ms_per_req']} ms",
                " / ".join(f"{v:.3f}" for _, v in cpu) + " ms",
                worst <= TARGETS["cpu_ms_per_req"],
                worst,
            )
    for variant in ("json", "stream"):
        ratios = []
        for r in rows:
            if r["variant"] == variant and r["target"] == "margin":
                lite = by.get((variant, r["conns"], "litellm"))
                if lite and lite["rps"]:
                    ratios.append((r["conns"], r["rps"] / lite["rps"]))
        if ratios:
            worst = min(v for _, v in ratios)
            add(
                f"requests/s vs LiteLLM ({'non-streaming' if variant == 'json' else 'streaming'}, "
                f"conns {'/'.join(str(c) for c, _ in ratios)})",
                f">= {TARGETS['rps_vs_litellm']:.0f}x",
                " / ".join(f"{v:.1f}x" for _, v in ratios),
                worst >= TARGETS["rps_vs_litellm"],
                worst,
            )
    return out


def markdown(meta: dict, rows: list[dict], goals: list[dict], ledger: dict) -> str:
    lines = []
    if meta:
        mach, ver = meta.get("machine", {}), meta.get("versions", {})
        sizes = meta.get("request_bytes") or {}
        sizes = sizes if isinstance(sizes, dict) else {"json": sizes}
        lines.append(
            f"Run {meta.get('date_utc')} UTC on {mach.get('nproc')} x {mach.get('cpu_model')}, "
            f"{mach.get('mem_gib')} GiB, kernel {ver.get('kernel')}, Python {ver.get('python')}; margin "
            f"{ver.get('margin')} (uvicorn {ver.get('uvicorn')}, starlette {ver.get('starlette')}, genai-prices "
            f"{ver.get('genai_prices')}); LiteLLM {ver.get('litellm', 'not run')} ({meta.get('litellm_variant')}); "
            f"{ver.get('wrk')}. Gateways on CPU {meta.get('pinning', {}).get('gateways')}, mock + wrk (1 thread) on "
            f"CPU {meta.get('pinning', {}).get('mock+wrk')}. {meta.get('reps')} x {meta.get('duration_s'):g} s per "
            f"cell, medians; request: system + user message, {meta.get('request_words')} words "
            f"({' / '.join(f'{k} {v} B' for k, v in sizes.items())}), max_tokens 256. "
            f"Other processes' CPU before the first run: {meta.get('other_cpu_pct_at_start', '-')}% of a core."
        )
        lines.append("")
    lines.append(
        "| variant | conns | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| server CPU ms/req | server CPU % of core | other CPU % per run | new upstream conns | errors |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['conns']} | {r['target']} | {fmt(r['rps'], 1)} | {fmt(r['p50_ms'])} "
            f"| {fmt(r['p99_ms'])} | {fmt(r.get('added_p50_ms'))} | {fmt(r.get('added_p99_ms'))} "
            f"| {fmt(r['server_cpu_ms_per_req'])} | {fmt(r['server_cpu_pct'], 0)} "
            f"| {', '.join(f'{v:.0f}' for v in r['other_cpu_pct_runs'])} "
            f"| {'-' if r['target'] == 'direct' else r['upstream_connections_opened']} | {r['errors']} |"
        )
    pairs = [
        (
            r,
            next(
                (
                    x
                    for x in rows
                    if x["variant"] == r["variant"] and x["conns"] == r["conns"] and x["target"] == "litellm"
                ),
                None,
            ),
        )
        for r in rows
        if r["target"] == "margin"
    ]
    pairs = [(m, lite) for m, lite in pairs if lite]
    if pairs:
        lines += [
            "",
            "| variant | conns | margin req/s | LiteLLM req/s | margin / LiteLLM | margin CPU ms/req "
            "| LiteLLM CPU ms/req | CPU ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m, lite in pairs:
            cr = (
                lite["server_cpu_ms_per_req"] / m["server_cpu_ms_per_req"]
                if m["server_cpu_ms_per_req"] and lite["server_cpu_ms_per_req"]
                else None
            )
            lines.append(
                f"| {m['variant']} | {m['conns']} | {fmt(m['rps'], 1)} | {fmt(lite['rps'], 1)} "
                f"| {m['rps'] / lite['rps']:.1f}x | {fmt(m['server_cpu_ms_per_req'])} "
                f"| {fmt(lite['server_cpu_ms_per_req'])} | {fmt(cr, 1)}x |"
            )
    scaled = [r for r in rows if r["target"] in ("margin", "margin-redis", "margin-x2")]
    if any(r["target"] != "margin" for r in scaled):
        lines += [
            "",
            "| variant | conns | target | req/s | added p50 ms | added p99 ms | gateways' CPU ms/req "
            "| Redis CPU ms/req |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in scaled:
            lines.append(
                f"| {r['variant']} | {r['conns']} | {r['target']} | {fmt(r['rps'], 1)} | {fmt(r.get('added_p50_ms'))} "
                f"| {fmt(r.get('added_p99_ms'))} | {fmt(r['server_cpu_ms_per_req'])} "
                f"| {fmt(r.get('redis_cpu_ms_per_req')) if r['target'] != 'margin' else '-'} |"
            )
    if goals:
        lines += ["", "| target (margin) | goal | measured | met |", "|---|---|---|---|"]
        for g in goals:
            lines.append(f"| {g['target']} | {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'NO'} |")
    src0, src1 = (meta or {}).get("margin_source"), (ledger or {}).get("margin_source_at_end")
    if src0:
        restarted = any(c.get("service") == "margin" for c in (ledger or {}).get("crashes", []))
        note = "."
        if src1 and src1 != src0:
            note = (
                f"; the source tree changed later (at the end: sha256 {src1['sha256']}, newest change "
                f"{src1['newest_mtime_utc']}). A running gateway keeps the code it loaded at start"
                + (
                    ", but margin was RESTARTED during this run: its results mix versions."
                    if restarted
                    else ", and margin was not restarted, so every margin figure is for the code above."
                )
            )
        lines += [
            "",
            f"margin source at gateway start: sha256 {src0['sha256']} over {src0['files']} files of "
            f"src/margin (newest change {src0['newest_mtime_utc']}){note}",
        ]
    for c in (ledger or {}).get("crashes", []):
        lines += [
            "",
            f"CRASH: {c['service']} died (exit code {c['exit_code']}) at {c['time_utc']} during "
            f"{c['variant']} c={c['conns']} rep {c['rep']}; it was restarted and that run repeated.",
        ]
    if ledger and "events_by_status" in ledger:
        lines += [
            "",
            f"Ledger check: {ledger.get('events_by_status')} usage events, "
            f"{ledger.get('open_reservations')} open reservations; "
            f"{ledger.get('margin_requests_measured')} margin requests in measured runs "
            f"(warm-ups and readiness probes add the rest).",
        ]
    for name, counts in (ledger or {}).get("instance_ledgers", {}).items():
        lines.append(
            f"{name} ledger: {counts.get('events_by_status')} usage events, {counts.get('open_reservations')} open "
            f"reservations; {counts.get('requests_measured')} requests in its measured runs."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    meta, runs, ledger = load(paths)
    rows = summarize(runs)
    goals = targets(rows)
    print(markdown(meta, rows, goals, ledger))
    print()
    for r in rows:
        print(json.dumps(r, separators=(",", ":")))
    print(json.dumps({"type": "targets", "date_utc": meta.get("date_utc"), "targets": goals}, separators=(",", ":")))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
