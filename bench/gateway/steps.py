#!/usr/bin/env python3
"""Deterministic CPU cost of each step of margin's request pipeline, called in-process one at a time.

A cross-check of profile.py's sampled figures: builds the gateway exactly as `margin serve` does (same
config as bench.py: metering, ledger and a global budget ON, route mock-gpt to the mock upstream), pins
itself to the gateway CPU, and times N sequential calls of each step with ``time.process_time()`` (CPU of
the whole process, so the ledger writer thread's share is included where a step waits for a commit).
Without the HTTP server (uvicorn + Starlette) and without concurrency, so no group commit either.

    .venv/bin/python bench/gateway/steps.py [-n 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import request_body  # noqa: E402


def timed(n: int, fn) -> float:
    """µs of process CPU per call over n calls (after 50 unmeasured ones)."""
    for _ in range(min(50, n)):
        fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return 1e6 * (time.process_time() - t0) / n


async def atimed(n: int, fn) -> float:
    for _ in range(min(50, n)):
        await fn()
    t0 = time.process_time()
    for _ in range(n):
        await fn()
    return 1e6 * (time.process_time() - t0) / n


def main() -> int:
    p = argparse.ArgumentParser(description="per-step CPU cost of margin's gateway pipeline")
    p.add_argument("-n", type=int, default=1000, help="calls per step and round (default 1000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds over all steps (default 5)")
    p.add_argument("--gateway-cpu", type=int, default=0)
    p.add_argument("--driver-cpu", default="1")
    p.add_argument("--mock-port", type=int, default=18199)
    a = p.parse_args()

    from margin.config import load_config
    from margin.gateway import pipeline as pl
    from margin.gateway.providers.base import UpstreamCall
    from margin.gateway.state import build_gateway
    from margin.pricing import TokenUsage
    from margin.usage import count_prompt_tokens

    work = Path(tempfile.mkdtemp(prefix="margin-gw-steps-"))
    home = work / "home"
    home.mkdir()
    os.environ["MARGIN_HOME"] = str(home)
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    mock = bench.Service(
        "mock",
        [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(a.mock_port)],
        a.driver_cpu,
        env,
        work / "mock.log",
    )
    cfg = work / "margin.yaml"
    bench.margin_config(cfg, home, a.mock_port)
    os.sched_setaffinity(0, {a.gateway_cpu})
    body = request_body.body()
    raw = json.dumps(body).encode()
    results: dict[str, list[float]] = {}

    def add(name: str, us: float) -> None:
        results.setdefault(name, []).append(us)

    async def measure(gw) -> None:
        import orjson

        route = gw.routes["mock-gpt"]
        principal = pl.Principal(key=None, key_id="bench", tags={"team": "bench"})
        now = gw.clock()
        prompt = count_prompt_tokens("chat.completions", body, route.upstream_model)
        usage = TokenUsage(input_tokens=430, output_tokens=16)
        lookup_is_async = inspect.iscoroutinefunction(gw.lookup_key)

        def plan():
            return pl.plan_request(
                gw,
                wire="openai",
                endpoint="chat.completions",
                body=body,
                body_size=len(orjson.dumps(body)),
                headers={},
                principal=principal,
            )

        ctx = plan()
        call = UpstreamCall(wire="openai", endpoint="chat.completions", body=pl.upstream_body(ctx, route, 256))
        usage_block = {"usage": {"prompt_tokens": 430, "completion_tokens": 16, "total_tokens": 446}}

        async def lookup():
            return await gw.lookup_key("mk-x") if lookup_is_async else gw.lookup_key("mk-x")

        async def send():
            return await route.provider.send(call)

        async def reserve_settle():
            reserved = await pl.reserve(gw, ctx, route)
            u = pl.normalize(ctx, usage_block)
            cost = route.pricer.price(u.to_token_usage(), gw.clock())
            await pl.settle(
                gw,
                reserved,
                pl.make_event(gw, ctx, route, status="ok", usage=u, cost=cost, reserved=reserved, attempt=0),
            )

        async def whole():
            c = plan()
            r, reserved, response, attempt = await pl.run_call(gw, c)
            u = pl.normalize(c, response.body)
            cost = r.pricer.price(u.to_token_usage(), gw.clock())
            await pl.settle(
                gw,
                reserved,
                pl.make_event(gw, c, r, status="ok", usage=u, cost=cost, reserved=reserved, attempt=attempt),
            )

        for _ in range(a.rounds):  # rounds interleave the steps, so a slow spell of the VM hits all of them
            add("orjson.loads(request body)", timed(a.n, lambda: orjson.loads(raw)))
            add(
                "count_prompt_tokens (356-word system + user)",
                timed(a.n, lambda: count_prompt_tokens("chat.completions", body, route.upstream_model)),
            )
            add("plan_request (route, tags, token count, context)", timed(a.n, plan))
            add(
                "RoutePricer.worst_case (2 x Catalog.price)",
                timed(a.n, lambda: route.pricer.worst_case(prompt, 256, now)),
            )
            add("RoutePricer.price (actual cost)", timed(a.n, lambda: route.pricer.price(usage, now)))
            add("gw.lookup_key (sha256 + key cache hit)", await atimed(a.n, lookup))
            add("provider.send: httpx2 POST to the mock + JSON parse", await atimed(a.n, send))
            add(
                "reserve + price + make_event + settle (2 ledger commits, incl. writer thread)",
                await atimed(a.n, reserve_settle),
            )
            add("whole pipeline without HTTP server (plan .. settle)", await atimed(a.n, whole))
        await gw.aclose()

    try:
        mock.start()
        bench.wait_ready(mock, a.mock_port, raw, None, False, 20)
        import uvloop

        uvloop.run(measure(build_gateway(load_config(cfg))))
    finally:
        mock.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(
        f"## margin pipeline steps, in-process, sequential: median of {a.rounds} rounds of {a.n} calls "
        f"(µs of process CPU per call)\n"
    )
    print("| step | µs CPU per call | rounds min-max |\n|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f}-{max(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
