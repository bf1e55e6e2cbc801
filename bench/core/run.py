"""Benchmark of margin's price and token core: tokenizer load, token counting and pricing throughput.

Run: .venv/bin/python bench/core/run.py [--seconds S]
Prints a Markdown table (wall and CPU time) to paste into bench/README.md. Single process, one thread.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from decimal import Decimal

from margin.pricing import TokenUsage, load_catalog
from margin.tokens import _vocab, count_messages, count_text


def measure(fn: Callable[[], object], seconds: float) -> tuple[int, float, float]:
    """Call fn repeatedly for about `seconds`; return (calls, wall seconds, cpu seconds)."""
    calls = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - wall0, time.process_time() - cpu0


def sample_text(words: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    vocabulary = (
        "the cost of a request grows with the prompt tokens and the output tokens; cache what repeats, "
        "route simple questions to a cheaper model, cap max_tokens. Prix, coût, Kosten, 費用, 42, 3.14"
    ).split()
    return " ".join(rng.choice(vocabulary) for _ in range(words))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []

    for name in ("o200k_base", "cl100k_base"):
        _vocab.get_encoding.cache_clear()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        _vocab.get_encoding(name)
        rows.append(
            (
                f"load + verify {name} (first use)",
                f"{time.perf_counter() - wall0:.3f} s",
                f"{time.process_time() - cpu0:.3f} s CPU",
            )
        )

    text = sample_text(20_000)
    size_mb = len(text.encode()) / 1e6
    tokens = count_text(text, "gpt-4o").tokens
    calls, wall, cpu = measure(lambda: count_text(text, "gpt-4o"), args.seconds)
    rows.append(
        (
            "count_text, 20k-word document (gpt-4o)",
            f"{calls * tokens / wall / 1e6:.2f} M tokens/s",
            f"{calls * size_mb / cpu:.1f} MB/s per CPU-second",
        )
    )

    prompt = sample_text(300)
    calls, wall, cpu = measure(lambda: count_text(prompt, "gpt-4o"), args.seconds)
    rows.append(
        ("count_text, 300-word prompt", f"{wall / calls * 1e6:.1f} µs/call", f"{cpu / calls * 1e6:.1f} µs CPU/call")
    )

    messages = [{"role": "system", "content": sample_text(50, 1)}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": sample_text(60, i)} for i in range(10)
    ]
    calls, wall, cpu = measure(lambda: count_messages(messages, "gpt-4o"), args.seconds)
    rows.append(
        ("count_messages, 11 messages", f"{wall / calls * 1e6:.1f} µs/call", f"{cpu / calls * 1e6:.1f} µs CPU/call")
    )

    calls, wall, cpu = measure(lambda: count_text(prompt, "claude-sonnet-4-5"), args.seconds)
    rows.append(
        (
            "estimate (claude), 300-word prompt",
            f"{wall / calls * 1e6:.1f} µs/call",
            f"{cpu / calls * 1e6:.1f} µs CPU/call",
        )
    )

    catalog = load_catalog()
    usage = TokenUsage(input_tokens=2000, output_tokens=500, cache_read_tokens=1000)
    catalog.price(usage, "gpt-4o")
    calls, wall, cpu = measure(lambda: catalog.price(usage, "gpt-4o"), args.seconds)
    rows.append(
        (
            "Catalog.price (gpt-4o, cached tokens)",
            f"{calls / wall:,.0f} prices/s",
            f"{cpu / calls * 1e6:.1f} µs CPU/price",
        )
    )
    tiered = TokenUsage(input_tokens=250_000, output_tokens=1000)
    calls, wall, cpu = measure(lambda: catalog.price(tiered, "claude-sonnet-4-5"), args.seconds)
    rows.append(
        (
            "Catalog.price (tiered, above threshold)",
            f"{calls / wall:,.0f} prices/s",
            f"{cpu / calls * 1e6:.1f} µs CPU/price",
        )
    )
    assert catalog.price(tiered, "claude-sonnet-4-5").list_cost > Decimal(0)

    print("| measurement | throughput / latency | CPU |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
