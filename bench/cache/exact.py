#!/usr/bin/env python3
"""Exact-cache lookup and store latency at 100k and 1M entries (in process, one thread): what the gateway adds
per request on a route with the exact cache, key hashing included.

    .venv/bin/python bench/cache/exact.py [--sizes 100000,1000000] [--lookups 200000]

For each size: fills an ExactCache with that many answers (a typical ~1 KB chat completion each, spread over
20 team partitions), then times, per call: ``exact_key`` of a ~2 KB request body, ``get`` of a present key
(a hit), ``get`` of an absent key (a miss) and ``put`` of a new answer (evicting the oldest at the bound).
Prints a Markdown table with p50 and p99 (nearest rank) in microseconds and the process's peak memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from margin.cache._exact import ExactCache, exact_key


def body(i: int) -> dict:
    return {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 400,
        "messages": [
            {"role": "system", "content": "You are the support assistant of Acme. " * 20},
            {"role": "user", "content": f"Question number {i}: how do I change the email on my account? " * 5},
        ],
    }


ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x" * 900}}],
    "usage": {"prompt_tokens": 400, "completion_tokens": 200, "total_tokens": 600},
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))]


def timed(calls: int, fn) -> list[float]:
    out = []
    for i in range(calls):
        t = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def measure(size: int, lookups: int) -> list[str]:
    """p50 / p99 cells for exact_key, a hit, a miss and a put at ``size`` entries."""
    cache = ExactCache(max_entries=size, max_bytes=size * 4096)
    keys = [f"{i:064x}" for i in range(size)]
    for i, key in enumerate(keys):
        cache.put(f"team:{i % 20}", key, ANSWER, output_tokens=200, route="r", served_model="m", ttl_seconds=3600)
    rng = random.Random(1)
    bodies = [body(i) for i in range(1000)]
    present = [(f"team:{j % 20}", keys[j]) for j in (rng.randrange(size) for _ in range(lookups))]
    hashing = timed(lookups, lambda i: exact_key("gpt-4o-mini", "chat.completions", bodies[i % 1000]))
    hits = timed(lookups, lambda i: cache.get(*present[i], max_output_tokens=400))
    misses = timed(lookups, lambda i: cache.get("team:0", f"absent-{i}", max_output_tokens=400))
    puts = timed(
        lookups,
        lambda i: cache.put(
            "team:0", f"new-{i}", ANSWER, output_tokens=200, route="r", served_model="m", ttl_seconds=3600
        ),
    )
    assert cache.hits >= lookups and len(cache) == size
    return [f"{pct(v, 0.5):.1f} / {pct(v, 0.99):.1f} µs" for v in (hashing, hits, misses, puts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--lookups", type=int, default=200_000)
    a = ap.parse_args()
    print("| entries | exact_key (2 KB body) p50 / p99 | get, hit p50 / p99 | get, miss p50 / p99 | put p50 / p99 |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in a.sizes.split(",")):
        print(f"| {size:,} | " + " | ".join(measure(size, a.lookups)) + " |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory {peak:,.0f} MB (the answers are shared objects here; in the gateway each is its own body)")


if __name__ == "__main__":
    main()
