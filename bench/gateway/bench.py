#!/usr/bin/env python3
"""The gateway benchmark's driver: what margin's gateway adds to a request, next to the LiteLLM proxy.

Starts, in this order and all on 127.0.0.1:
  * mock upstream   (mock_upstream.py)          pinned to the driver CPU (default 1), next to wrk
  * margin gateway  (`margin serve`)            pinned to the gateway CPU (default 0); metering, the ledger
                                                 and a global daily budget ON; a virtual key from
                                                 `margin keys create --team bench`
  * LiteLLM proxy   (litellm 1.109.1, 1 worker) pinned to the gateway CPU; no database, no master key
then, per variant (non-streaming "json", streaming "stream") and connection count, a short unmeasured
warm-up of each target, then REPS rounds of one closed-loop wrk run per target (direct to the mock, through
margin, through LiteLLM; the order rotates each round). Around every run it samples /proc: the CPU time
(utime+stime, all threads) of each benchmark process, wrk's CPU (rusage), and the machine's busy time,
so that it can report the CPU used by processes outside the benchmark (the machine is shared).

Writes one JSON line per run (plus a meta line) to --out, then prints summarize.py's Markdown tables and
summary JSON lines. Everything started here is stopped here (by PID/process group), however it exits.

    .venv/bin/python bench/gateway/bench.py [--quick] [--no-litellm] [--conns 1,16,64] ...
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import request_body  # noqa: E402
import summarize  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- /proc sampling
def proc_jiffies(pid: int) -> int:
    """utime + stime of one process (the kernel sums all its threads, live and exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def group_jiffies(pgid: int) -> int:
    """utime + stime of every process in a process group (a gateway and any workers it forks)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


def cpu_lines() -> dict[str, list[int]]:
    """/proc/stat cpu lines: name -> [user nice system idle iowait irq softirq steal ...]."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *vals = line.split()
                out[name] = [int(v) for v in vals]
    return out


def busy(v: list[int]) -> int:
    return v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq (idle, iowait, steal excluded)


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class Service:
    name: str
    argv: list[str]
    cpus: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_file = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            ["taskset", "-c", self.cpus, *self.argv],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log(f"started {self.name} (pid/pgid {self.proc.pid}, cpu {self.cpus})")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def jiffies(self) -> int:
        return group_jiffies(self.pid) if self.alive() else 0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        log(f"stopped {self.name} (exit {self.proc.returncode})")
        self.log_file.close()


@dataclass
class ServiceGroup:
    """Several gateway processes serving one target (``margin serve --reuse-port`` on one port): started,
    measured (CPU summed) and stopped together."""

    name: str
    members: list[Service]

    def start(self) -> None:
        for member in self.members:
            member.start()

    @property
    def proc(self) -> subprocess.Popen | None:
        dead = [m for m in self.members if not m.alive()]
        return (dead or self.members)[0].proc

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def log_path(self) -> Path:
        return self.members[0].log_path

    def alive(self) -> bool:
        return all(member.alive() for member in self.members)

    def jiffies(self) -> int:
        return sum(member.jiffies() for member in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def start_redis(cpus: str) -> Any:
    """A throwaway redis-server (tests/redis_server.py: free loopback port, no persistence), pinned like the
    mock; its CPU is sampled by pid."""
    sys.path.insert(0, str(REPO))
    from tests.redis_server import ServerUnavailable, start_server

    try:
        server = start_server()
    except ServerUnavailable as exc:
        raise SystemExit(f"bench.py --instances: {exc}") from None
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(server.process.pid)], check=True, capture_output=True)
    log(f"started redis (pid {server.process.pid}, cpu {cpus})")
    return server


def post(port: int, body: bytes, auth: str | None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if auth:
            name, _, value = auth.partition(":")
            headers[name.strip()] = value.strip()
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def mock_stats(port: int) -> dict:
    """The mock's counters (chat requests served, connections accepted); this query's own connection counts."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait_ready(svc: Service | None, port: int, body: bytes, auth: str | None, stream: bool, timeout: float) -> dict:
    """Until a POST of the benchmark body answers 200 with a full chat completion (or SSE up to [DONE])."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if svc is not None and not svc.alive():
            raise RuntimeError(f"{svc.name} exited (code {svc.proc.returncode}); see {svc.log_path}")
        try:
            status, headers, data = post(port, body, auth)
            ok = status == 200 and (b"data: [DONE]" in data if stream else b'"choices"' in data)
            if ok:
                return headers
            last = f"HTTP {status}: {data[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"port {port} not ready after {timeout:.0f}s: {last}")


# ---------------------------------------------------------------------------------------------- one wrk run
@dataclass
class Target:
    name: str  # direct | margin | litellm | margin-redis | margin-x2
    port: int
    auth: str | None
    service: Service | ServiceGroup | None  # the process(es) that serve it (None: the mock itself)


@dataclass
class Bench:
    args: argparse.Namespace
    mock: Service
    services: dict[str, Service | ServiceGroup] = field(default_factory=dict)
    redis: Any = None  # tests.redis_server.RedisServer, with --instances
    runs: list[dict] = field(default_factory=list)
    retries_left: int = 0
    crashes: list[dict] = field(default_factory=list)
    out: Path | None = None
    targets: list[Target] = field(default_factory=list)
    deadline: float = 0.0

    def sample(self) -> dict:
        return {
            "t": time.monotonic(),
            "stat": cpu_lines(),
            "mock": proc_jiffies(self.mock.pid),
            "redis": proc_jiffies(self.redis.process.pid) if self.redis else 0,
            "svc": {n: s.jiffies() for n, s in self.services.items()},
            "wrk": resource.getrusage(resource.RUSAGE_CHILDREN),
            "self": os.times(),
        }

    def wrk(self, target: Target, variant: str, conns: int, seconds: float, body_file: Path) -> dict:
        env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_AUTH": target.auth or ""}
        argv = [
            "taskset",
            "-c",
            self.args.driver_cpu,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk_post.lua"),
            f"http://{LOOPBACK}:{target.port}/v1/chat/completions",
        ]
        m0 = mock_stats(self.args.mock_port)
        s0 = self.sample()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
        s1 = self.sample()
        m1 = mock_stats(self.args.mock_port)
        result = None
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                result = json.loads(line.split(" ", 1)[1])
        if result is None:
            raise RuntimeError(
                f"wrk gave no result (exit {done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}"
            )
        wall = s1["t"] - s0["t"]
        core = wall * HZ  # jiffies of one fully busy core
        stat0, stat1 = s0["stat"], s1["stat"]
        wrk_cpu_s = (s1["wrk"].ru_utime - s0["wrk"].ru_utime) + (s1["wrk"].ru_stime - s0["wrk"].ru_stime)
        self_cpu_s = (s1["self"].user - s0["self"].user) + (s1["self"].system - s0["self"].system)
        svc = {n: s1["svc"][n] - s0["svc"][n] for n in s1["svc"]}
        mock = s1["mock"] - s0["mock"]
        redis = s1["redis"] - s0["redis"]
        total_busy = busy(stat1["cpu"]) - busy(stat0["cpu"])
        ours = mock + redis + sum(svc.values()) + (wrk_cpu_s + self_cpu_s) * HZ
        served = mock if target.service is None else svc[target.name]
        requests = result["requests"]
        errors = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        per_cpu = {}
        for name in sorted(stat1):
            if name == "cpu":
                continue
            d = [b - a for a, b in zip(stat0[name], stat1[name], strict=False)]
            per_cpu[name] = {"busy_pct": round(100 * busy(d) / core, 1), "steal_pct": round(100 * d[7] / core, 1)}
        return {
            "type": "run",
            "variant": variant,
            "conns": conns,
            "target": target.name,
            "seconds": round(result["seconds"], 3),
            "requests": requests,
            "errors": errors,
            "rps": round(result["rps"], 2),
            **{k: round(result[k], 4) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms", "max_ms")},
            # CPU of the process serving the target (mock for direct, else the gateway's process group)
            "server_cpu_ms_per_req": round(1000 * served / HZ / requests, 4) if requests else None,
            "server_cpu_pct": round(100 * served / core, 1),
            "mock_cpu_ms_per_req": round(1000 * mock / HZ / requests, 4) if requests else None,
            "mock_cpu_pct": round(100 * mock / core, 1),
            # the shared Redis's CPU (targets margin-redis and margin-x2; ~0 for the others)
            "redis_cpu_ms_per_req": round(1000 * redis / HZ / requests, 4) if requests and self.redis else None,
            # connections the mock accepted during the run (the gateway's upstream pool, or wrk's own)
            "upstream_connections": m1["connections"] - m0["connections"] - 1,
            "upstream_requests": m1["served"] - m0["served"],
            "wrk_cpu_pct": round(100 * wrk_cpu_s / wall, 1),
            "idle_gateways_cpu_pct": round(100 * sum(v for n, v in svc.items() if n != target.name) / core, 1),
            # CPU used meanwhile by processes outside the benchmark, in % of one core (>= 0 by clamping)
            "other_cpu_pct": round(max(0.0, 100 * (total_busy - ours) / core), 1),
            "steal_pct": round(100 * (stat1["cpu"][7] - stat0["cpu"][7]) / core, 1),
            "per_cpu": per_cpu,
        }

    def other_cpu_pct(self, seconds: float) -> float:
        """CPU used by processes outside the benchmark over the next ``seconds`` (% of one core)."""
        s0 = self.sample()
        time.sleep(seconds)
        s1 = self.sample()
        ours = (s1["mock"] - s0["mock"]) + (s1["redis"] - s0["redis"])
        ours += sum(s1["svc"][n] - s0["svc"][n] for n in s1["svc"])
        total = busy(s1["stat"]["cpu"]) - busy(s0["stat"]["cpu"])
        return max(0.0, 100 * (total - ours) / ((s1["t"] - s0["t"]) * HZ))

    def wait_quiet(self, limit: float) -> float | None:
        deadline = time.monotonic() + limit
        while True:
            other = self.other_cpu_pct(5.0)
            if other <= self.args.max_other_cpu:
                log(f"machine quiet enough: other processes use {other:.0f}% of a core")
                return other
            if time.monotonic() >= deadline:
                log(
                    f"machine still busy after {limit:.0f}s (other processes: {other:.0f}% of a core): measuring anyway"
                )
                return other
            log(f"waiting for a quieter machine: other processes use {other:.0f}% of a core")

    def revive(self, variant: str, conns: int, rep: int, body_file: Path) -> bool:
        """Restart every benchmark gateway that died (recording the crash); False if none had died. A gateway
        that crashes more than --max-crashes times ends the benchmark."""
        revived = False
        for t in self.targets:
            svc = t.service
            if svc is None or svc.alive():
                continue
            crash = {
                "type": "crash",
                "service": svc.name,
                "exit_code": svc.proc.returncode,
                "variant": variant,
                "conns": conns,
                "rep": rep,
                "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self.crashes.append(crash)
            if self.out:
                with self.out.open("a") as f:
                    f.write(json.dumps(crash) + "\n")
            n = sum(1 for c in self.crashes if c["service"] == svc.name)
            log(f"  {svc.name} DIED (exit code {svc.proc.returncode}, crash {n}); see {svc.log_path}")
            if n > self.args.max_crashes:
                raise RuntimeError(f"{svc.name} crashed {n} times; giving up")
            svc.stop()
            if svc.name == "margin":
                crash["margin_source_at_restart"] = source_fingerprint()
            svc.start()
            wait_ready(svc, t.port, body_file.read_bytes(), t.auth, variant == "stream", 180)
            self.wrk(t, variant, conns, self.args.warmup or 1, body_file)  # warm it up again, unmeasured
            log(f"  {svc.name} restarted; repeating the run")
            revived = True
        return revived

    def measured_run(self, target: Target, variant: str, conns: int, rep: int, body_file: Path) -> dict:
        a = self.args
        tries = 0
        while True:
            tries += 1
            self.revive(variant, conns, rep, body_file)
            run = self.wrk(target, variant, conns, a.duration, body_file)
            run.update(rep=rep, tries=tries)
            if self.revive(variant, conns, rep, body_file):
                continue  # a gateway died during the run: its figures are void
            disturbed = run["other_cpu_pct"] > a.max_other_cpu
            room = self.deadline - time.monotonic() > a.duration * 4
            if disturbed and self.retries_left > 0 and room:
                self.retries_left -= 1
                log(
                    f"  {variant} c={conns} {target.name}: other processes used {run['other_cpu_pct']}% of a core "
                    f"(> {a.max_other_cpu}%): repeating the run ({self.retries_left} repeats left)"
                )
                time.sleep(a.retry_pause)
                continue
            run["disturbed"] = disturbed
            return run


# ---------------------------------------------------------------------------------------------- set-up
def margin_config(path: Path, database: Path, mock_port: int, redis_url: str | None = None) -> None:
    shared = f"  redis_url: {redis_url}\n  redis_timeout_ms: 2000\n" if redis_url else ""
    path.write_text(
        f"""# written by bench/gateway/bench.py
gateway:
  host: {LOOPBACK}
  database: {database}
{shared}  providers:
    - name: bench-mock
      type: openai_compatible
      base_url: http://{LOOPBACK}:{mock_port}/v1
  models:
    - name: mock-gpt
      provider: bench-mock
      price: {{input_mtok: 0.15, output_mtok: 0.60}}
  budgets:
    - name: bench-global-daily
      scope: global
      period: day
      amount: 1000000000
"""
    )


def create_key(margin_bin: Path, config: Path, env: dict[str, str]) -> str:
    """A virtual key for team ``bench`` in the ledger of ``config`` (``margin keys create``), its secret."""
    done = subprocess.run(
        [str(margin_bin), "--config", str(config), "keys", "create", "--team", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def litellm_config(path: Path, mock_port: int) -> None:
    path.write_text(
        f"""# written by bench/gateway/bench.py: one model to the mock; no database, no cache, no callbacks
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/mock-gpt
      api_base: http://{LOOPBACK}:{mock_port}/v1
      api_key: sk-bench-mock
litellm_settings:
  telemetry: false
  cache: false
  drop_params: true
"""
    )


def versions(litellm_venv: Path | None) -> dict:
    def run(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    from importlib.metadata import version

    info = {
        "python": platform.python_version(),
        "margin": version("margin"),
        "genai_prices": version("genai-prices"),
        "uvicorn": version("uvicorn"),
        "starlette": version("starlette"),
        "wrk": " ".join(run(["wrk", "--version"]).split()[:2]),
        "kernel": platform.release(),
    }
    if litellm_venv:
        info["litellm"] = run(
            [
                str(litellm_venv / "bin/python"),
                "-c",
                "from importlib.metadata import version; print(version('litellm'))",
            ]
        )
    return info


def source_fingerprint() -> dict:
    """sha256 over margin's source files (the venv installs margin editable: the code measured is src/)."""
    import hashlib

    digest, newest, count = hashlib.sha256(), 0.0, 0
    for path in sorted((REPO / "src" / "margin").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
        count += 1
    return {
        "sha256": digest.hexdigest()[:16],
        "files": count,
        "newest_mtime_utc": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
    }


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def ledger_counts(db: Path) -> dict:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT status, COUNT(*) FROM usage_events GROUP BY status").fetchall()
            open_res = con.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
        finally:
            con.close()
        return {"events_by_status": dict(rows), "open_reservations": open_res}
    except sqlite3.Error as exc:
        return {"error": str(exc)}


# ---------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="margin gateway benchmark (see README.md)")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: conns 1,16, 1 rep of 3 s")
    p.add_argument("--conns", help="connection counts (default 1,16,64; quick: 1,16)")
    p.add_argument("--duration", type=float, help="seconds per measured run (default 10; quick: 3)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds per target before each count (default 2)")
    p.add_argument("--reps", type=int, help="measured runs per target and count (default 3; quick: 1)")
    p.add_argument("--variants", default="json,stream", help="json (non-streaming) and/or stream")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    p.add_argument(
        "--instances",
        action="store_true",
        help="also margin with its budget counters in Redis (margin-redis) and two instances on one port "
        "(margin-x2: --reuse-port, one Redis, one SQLite ledger); needs redis-server",
    )
    p.add_argument("--x2-cpus", help="taskset CPU list of margin-x2's two processes (default: --gateway-cpu)")
    p.add_argument("--litellm-venv", default=os.environ.get("LITELLM_VENV", "/tmp/margin-bench-litellm"))
    p.add_argument("--gateway-cpu", default="0", help="taskset CPU list of the gateways (default 0)")
    p.add_argument("--driver-cpu", default="1", help="taskset CPU list of wrk and the mock (default 1)")
    p.add_argument("--mock-port", type=int, default=18181)
    p.add_argument("--margin-port", type=int, default=14100)
    p.add_argument("--litellm-port", type=int, default=14200)
    p.add_argument(
        "--max-other-cpu",
        type=float,
        default=20.0,
        help="a run during which other processes used more than this %% of a core is 'disturbed' "
        "and repeated while repeats and time are left (default 20)",
    )
    p.add_argument("--max-repeats", type=int, help="repeats of disturbed runs in all (default 8; quick: 0)")
    p.add_argument("--retry-pause", type=float, default=5.0)
    p.add_argument(
        "--max-crashes",
        type=int,
        default=3,
        help="restart a gateway that dies (the run is repeated) at most this many times (default 3)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        help="before measuring, wait up to this many seconds for a 5 s window "
        "in which other processes use at most --max-other-cpu %% of a core (default 60; quick: 0)",
    )
    p.add_argument("--max-total", type=float, default=14 * 60, help="time budget in seconds (default 840)")
    p.add_argument("--out", help="JSON lines file (default bench/gateway/results/run-<UTC time>.jsonl)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, ledger)")
    a = p.parse_args()
    q = a.quick
    a.conns = [int(c) for c in (a.conns or ("1,16" if q else "1,16,64")).split(",")]
    a.duration = a.duration or (3.0 if q else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if q else 2.0)
    a.reps = a.reps or (1 if q else 3)
    a.max_repeats = a.max_repeats if a.max_repeats is not None else (0 if q else 8)
    a.wait_quiet = a.wait_quiet if a.wait_quiet is not None else (0.0 if q else 60.0)
    a.variants = [v for v in a.variants.split(",") if v]
    if set(a.variants) - {"json", "stream"}:
        p.error("--variants takes json and/or stream")
    return a


def main() -> int:
    a = parse_args()
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(a.out) if a.out else HERE / "results" / f"run-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="margin-gw-bench-"))
    home = work / "home"
    home.mkdir()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"bench.py: {tool} is missing (run.sh installs wrk)")
    venv_bin = Path(sys.executable).parent
    margin_bin = venv_bin / "margin"
    if not margin_bin.exists():
        raise SystemExit(f"bench.py: run it with margin's venv python ({margin_bin} missing)")
    litellm_venv = Path(a.litellm_venv)
    use_litellm = not a.no_litellm and (litellm_venv / "bin" / "litellm").exists()
    if not a.no_litellm and not use_litellm:
        log(f"LiteLLM is not installed in {litellm_venv}: measuring direct and margin only")

    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", MARGIN_HOME=str(home), PYTHONUNBUFFERED="1"
    )
    env.pop("MARGIN_MASTER_KEY", None)
    bodies = {}
    for variant in a.variants:
        bodies[variant] = work / f"body_{variant}.json"
        bodies[variant].write_text(json.dumps(request_body.body(stream=variant == "stream")))

    mock = Service(
        "mock",
        [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(a.mock_port)],
        a.driver_cpu,
        env,
        work / "mock.log",
    )
    bench = Bench(a, mock)
    bench.retries_left = a.max_repeats
    bench.deadline = started + a.max_total
    targets = [Target("direct", a.mock_port, None, None)]
    bench.targets, bench.out = targets, out

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    meta: dict = {}
    try:
        mock.start()
        wait_ready(mock, a.mock_port, bodies[a.variants[0]].read_bytes(), None, a.variants[0] == "stream", 20)

        # margin: config, key, gateway
        cfg = work / "margin.yaml"
        margin_config(cfg, home / "ledger.db", a.mock_port)
        key = create_key(margin_bin, cfg, env)
        margin_svc = Service(
            "margin",
            [str(margin_bin), "--config", str(cfg), "serve", "--port", str(a.margin_port)],
            a.gateway_cpu,
            env,
            work / "margin.log",
        )
        source_at_start = source_fingerprint()  # the gateway loads this code once, at start
        margin_svc.start()
        bench.services["margin"] = margin_svc
        targets.append(Target("margin", a.margin_port, f"Authorization: Bearer {key}", margin_svc))

        if a.instances:
            # The scale-out set-up: budget counters in a shared Redis; "margin-redis" is one such instance,
            # "margin-x2" two processes on one port (SO_REUSEPORT) sharing the Redis and one SQLite ledger.
            bench.redis = start_redis(a.driver_cpu)
            redis_url = bench.redis.url
            for name, port, count in (("margin-redis", a.margin_port + 1, 1), ("margin-x2", a.margin_port + 2, 2)):
                shome = work / name
                shome.mkdir()
                scfg = work / f"{name}.yaml"
                margin_config(scfg, shome / "ledger.db", a.mock_port, redis_url)
                skey = create_key(margin_bin, scfg, env)
                serve = [str(margin_bin), "--config", str(scfg), "serve", "--port", str(port)]
                if count > 1:
                    serve.append("--reuse-port")
                cpus = a.x2_cpus or a.gateway_cpu
                members = [
                    Service(f"{name}-{i}", serve, cpus if count > 1 else a.gateway_cpu, env, work / f"{name}-{i}.log")
                    for i in range(count)
                ]
                group = ServiceGroup(name, members)
                group.start()
                bench.services[name] = group
                targets.append(Target(name, port, f"Authorization: Bearer {skey}", group))

        if use_litellm:
            lcfg = work / "litellm.yaml"
            litellm_config(lcfg, a.mock_port)
            lenv = dict(env)
            # no master key (the "no key" variant), and every fetch LiteLLM would make on its own turned off
            lenv.update(
                LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",
                LITELLM_LOCAL_MODEL_COST_MAP="True",
                LITELLM_OFFLINE_MODE="true",
                LITELLM_DISABLE_LATEST_RELEASE_CHECK="true",
                LITELLM_LOCAL_BLOG_POSTS="True",
                LITELLM_LOG="ERROR",
            )
            for k in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
                lenv.pop(k, None)
            litellm_svc = Service(
                "litellm",
                [
                    str(litellm_venv / "bin/litellm"),
                    "--config",
                    str(lcfg),
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(a.litellm_port),
                    "--num_workers",
                    "1",
                    "--telemetry",
                    "False",
                ],
                a.gateway_cpu,
                lenv,
                work / "litellm.log",
            )
            litellm_svc.start()
            bench.services["litellm"] = litellm_svc
            targets.append(Target("litellm", a.litellm_port, "Authorization: Bearer sk-anything", litellm_svc))

        for t in targets:
            for variant in a.variants:
                headers = wait_ready(
                    t.service,
                    t.port,
                    bodies[variant].read_bytes(),
                    t.auth,
                    variant == "stream",
                    180 if t.name == "litellm" else 60,
                )
                if t.name.startswith("margin") and variant == "json" and "x-margin-cost" not in headers:
                    raise RuntimeError(f"margin answered without x-margin-cost (metering off?): {headers}")
                if t.name == "margin" and variant == "json":
                    meta["margin_probe_headers"] = {k: v for k, v in headers.items() if k.startswith("x-margin")}
            log(f"{t.name} answers on port {t.port}")

        meta.update(
            type="meta",
            date_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            margin_source=source_at_start,
            machine=machine(),
            versions=versions(litellm_venv if use_litellm else None),
            targets=[t.name for t in targets],
            litellm_variant="no master key, no database, 1 worker" if use_litellm else "not run",
            conns=a.conns,
            duration_s=a.duration,
            warmup_s=a.warmup,
            reps=a.reps,
            variants=a.variants,
            pinning={"gateways": a.gateway_cpu, "mock+wrk": a.driver_cpu},
            request_words=request_body.WORDS,
            request_bytes={v: len(b.read_bytes()) for v, b in bodies.items()},
            max_other_cpu_pct=a.max_other_cpu,
            quick=a.quick,
        )
        if a.wait_quiet > 0:
            meta["other_cpu_pct_at_start"] = round(bench.wait_quiet(a.wait_quiet), 1)
        with out.open("w") as f:
            f.write(json.dumps(meta) + "\n")

        for variant in a.variants:
            for conns in a.conns:
                for t in targets:
                    if a.warmup > 0:
                        bench.wrk(t, variant, conns, a.warmup, bodies[variant])
                for rep in range(1, a.reps + 1):
                    k = (rep - 1) % len(targets)
                    for t in targets[k:] + targets[:k]:
                        if time.monotonic() > bench.deadline:
                            raise RuntimeError(f"time budget --max-total {a.max_total:.0f}s exhausted")
                        run = bench.measured_run(t, variant, conns, rep, bodies[variant])
                        with out.open("a") as f:
                            f.write(json.dumps(run) + "\n")
                        log(
                            f"{variant:6} c={conns:<3} rep {rep} {t.name:8} {run['rps']:>9.1f} rps  "
                            f"p50 {run['p50_ms']:.3f}  p99 {run['p99_ms']:.3f} ms  "
                            f"cpu {run['server_cpu_ms_per_req'] or 0:.3f} ms/req  other {run['other_cpu_pct']}%  "
                            f"err {run['errors']}"
                        )
    finally:
        for svc in reversed(list(bench.services.values())):
            svc.stop()
        if bench.redis is not None:
            bench.redis.stop()
            shutil.rmtree(bench.redis.directory, ignore_errors=True)
        mock.stop()
    ledger = ledger_counts(home / "ledger.db")
    recorded = [r for r in map(json.loads, out.read_text().splitlines()[1:]) if r.get("type") == "run"]
    served = sum(r["requests"] for r in recorded if r["target"] == "margin")
    instance_ledgers = {}
    for name in ("margin-redis", "margin-x2") if a.instances else ():
        counts = ledger_counts(work / name / "ledger.db")
        counts["requests_measured"] = sum(r["requests"] for r in recorded if r["target"] == name)
        instance_ledgers[name] = counts
    with out.open("a") as f:
        f.write(
            json.dumps(
                {
                    "type": "ledger",
                    "margin_requests_measured": served,
                    "instance_ledgers": instance_ledgers,
                    **ledger,
                    "margin_source_at_end": source_fingerprint(),
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
            )
            + "\n"
        )
    log(f"margin ledger: {ledger} (measured margin requests: {served}; warm-ups and probes add more)")
    if a.keep:
        log(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    log(f"raw results: {out}")
    summarize.main([str(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
