"""CPU per request of candidate upstream HTTP clients, against margin's mock upstream: the input for
choosing the gateway's hot-path client (httpx2 is ~half of the gateway's CPU per request today).

Run: .venv/bin/python bench/gateway/client_overhead.py [--requests N] [--loop asyncio|uvloop]
Starts bench/gateway/mock_upstream.py on a free port, sends N sequential keep-alive POSTs of a 300-word
chat body with each client, and prints this process's CPU per request (the mock runs in its own process).
Clients: httpx2, margin's own pool (margin.gateway.providers._h1.H1Pool, what the gateway uses) and aiohttp,
which is measured only when installed (`.venv/bin/pip install aiohttp`); it is not a margin dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import orjson

from margin.gateway.providers._h1 import H1Pool

BODY = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hello " * 300}], "max_tokens": 100})
HEADERS = {"content-type": "application/json"}


async def httpx2_cpu(url: str, n: int) -> float:
    async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100)) as client:
        for _ in range(200):
            await client.post(url, content=BODY, headers=HEADERS)
        cpu = time.process_time()
        for _ in range(n):
            orjson.loads((await client.post(url, content=BODY, headers=HEADERS)).content)
        return (time.process_time() - cpu) / n


async def aiohttp_cpu(url: str, n: int) -> float | None:
    try:
        import aiohttp
    except ImportError:
        return None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        for _ in range(200):
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
        cpu = time.process_time()
        for _ in range(n):
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                orjson.loads(await response.read())
        return (time.process_time() - cpu) / n


async def h1_cpu(url: str, n: int) -> float:
    pool = H1Pool(url)
    try:
        for _ in range(200):
            await pool.request("POST", url, HEADERS, BODY, read_timeout=10)
        cpu = time.process_time()
        for _ in range(n):
            orjson.loads((await pool.request("POST", url, HEADERS, BODY, read_timeout=10)).body)
        return (time.process_time() - cpu) / n
    finally:
        await pool.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    else:
        run = asyncio.run
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mock = subprocess.Popen([sys.executable, str(Path(__file__).with_name("mock_upstream.py")), "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(100):
            try:
                httpx2.get(f"http://127.0.0.1:{port}/stats", timeout=0.2)
                break
            except httpx2.HTTPError:
                time.sleep(0.05)
        print(f"| client | µs CPU per request (client process, {args.loop} loop) |")
        print("|---|---|")
        print(f"| httpx2 | {run(httpx2_cpu(url, args.requests)) * 1e6:.0f} |")
        aio = run(aiohttp_cpu(url, args.requests))
        print(f"| aiohttp | {aio * 1e6:.0f} |" if aio is not None else "| aiohttp | not installed |")
        print(f"| margin H1Pool | {run(h1_cpu(url, args.requests)) * 1e6:.0f} |")
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
