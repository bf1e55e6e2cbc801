"""Savings demo: one seeded workload sent twice through a real ``margin serve`` on the mock provider, once with
the cost levers OFF (every request to gpt-4o) and once ON (requests to ``auto``: exact cache + complexity
routing + cascade), then both ledgers read back and compared side by side.

Run: .venv/bin/python bench/savings/run.py [--requests 600] [--seed 1] [--standard gpt-4o|gpt-4o-mini]
Prints a Markdown table; writes one JSON line per run to bench/savings/results/ (git-ignored). Every number
comes from the run; the script checks its own invariants (ledger vs what the client saw) and exits 1 when one
fails. Whether the levers save money is reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
USD = Decimal("0.000001")
KINDS = ("simple", "json", "standard", "complex")  # what the workload generator meant each prompt to be

# --- the workload ------------------------------------------------------------------------------------------------

_NAMES = "Ana Bruno Chen Dara Emil Fatima Goran Hana Ivo Jun Kofi Lena Mateo Nia Omar Priya Rosa Sven Tariq".split()
_CITIES = "Lisbon Osaka Nairobi Lyon Austin Gdansk Pune Quito Tromso Porto Leeds Busan Cusco Graz Hobart".split()
_LANGS = ("French", "German", "Spanish", "Italian", "Portuguese", "Japanese", "Dutch", "Polish")
_PHRASES = (
    "Your order {n} has shipped and should arrive on Thursday.",
    "The meeting with {name} moved to room {n}.",
    "Please reset the password for account {n}.",
    "We are closed on public holidays, see you on Monday.",
    "The invoice {n} is attached; payment is due in 30 days.",
    "{name} will be ten minutes late.",
    "Thank you for your feedback about ticket {n}.",
)
_REVIEWS = (
    "The {item} arrived broken and support never answered.",
    "Great {item}, works exactly as described, would buy again.",
    "The {item} is fine, nothing special, delivery took {n} days.",
    "I love the {item} but the battery dies after {n} hours.",
    "Worst {item} I ever bought. Refund request {n} still open.",
)
_ITEMS = "headphones kettle backpack lamp keyboard blender tent monitor charger stroller".split()
_YESNO = (
    "Answer yes or no: is {n} a prime number?",
    "Answer yes or no: is {city} a capital city?",
    "Yes or no: does the sentence 'the {item} are on the table' contain a grammar error?",
    "Answer yes or no: is {n} divisible by 7?",
)
_CONCEPTS = (
    "a write-ahead log",
    "HTTP keep-alive",
    "an LRU cache",
    "database connection pooling",
    "exponential backoff with jitter",
    "a bloom filter",
    "OAuth token refresh",
    "consistent hashing",
    "a token bucket rate limiter",
    "optimistic locking",
)
_DOMAINS = ("a payments API", "a chat app", "an online shop", "a logistics platform", "a hospital scheduling tool")
_FILLER = (
    "Our service handles about {n} requests per minute at peak.",
    "The team is small and most engineers joined this year.",
    "We deploy several times a day behind a feature flag system.",
    "Most traffic comes from mobile clients on slow networks.",
    "The database is PostgreSQL with one read replica.",
    "Customers complained about slow pages during the last sale.",
    "We keep an on-call rotation of {k} people.",
    "The budget for new infrastructure this quarter is limited.",
    "Logs are shipped to a central store and kept for {k} days.",
    "The public API is versioned and has {k} major clients.",
)
_CODE_LINES = (
    "def {f}(items, limit={k}):",
    "    result = []",
    "    for item in items:",
    "        if item.get('{a}') is None:",
    "            continue",
    "        value = item['{a}'] * {k} + item.get('{b}', 0)",
    "        result.append(value)",
    "    total = sum(result) / max(len(result), 1)",
    "    cache['{f}'] = total",
    "    return sorted(result)[:limit]",
    "class {F}Store:",
    "    def __init__(self, conn):",
    "        self.conn = conn",
    "    def load(self, key):",
    "        row = self.conn.execute('select {a} from t where id = ?', (key,)).fetchone()",
    "        return row[0] if row else None",
)
_LOG_LINES = (
    "2026-11-{d:02d}T10:{m:02d}:{s:02d}Z INFO  api GET /orders/{n} 200 {ms}ms",
    "2026-11-{d:02d}T10:{m:02d}:{s:02d}Z WARN  db  slow query on orders ({ms}ms) rows={n}",
    "2026-11-{d:02d}T10:{m:02d}:{s:02d}Z INFO  api POST /checkout 201 {ms}ms",
    "2026-11-{d:02d}T10:{m:02d}:{s:02d}Z ERROR pool timeout waiting for connection after {ms}ms",
    "2026-11-{d:02d}T10:{m:02d}:{s:02d}Z INFO  cache miss ratio {k}% over the last minute",
)


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        n=rng.randint(100, 99999),
        k=rng.randint(2, 40),
        name=rng.choice(_NAMES),
        city=rng.choice(_CITIES),
        item=rng.choice(_ITEMS),
        f=rng.choice(("score", "rank", "merge", "bucket", "window")),
        F=rng.choice(("Order", "User", "Invoice", "Session")),
        a=rng.choice(("price", "qty", "weight", "age")),
        b=rng.choice(("bonus", "fee", "tax", "offset")),
        d=rng.randint(1, 28),
        m=rng.randint(0, 59),
        s=rng.randint(0, 59),
        ms=rng.randint(20, 4000),
    )


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_fill(rng, rng.choice(_FILLER)) for _ in range(sentences))


def _code(rng: random.Random, lines: int) -> str:
    start = rng.randrange(len(_CODE_LINES))
    body = [_fill(rng, _CODE_LINES[(start + i) % len(_CODE_LINES)]) for i in range(lines)]
    return "```python\n" + "\n".join(body) + "\n```"


def _simple(rng: random.Random) -> str:
    job = rng.randrange(4)
    if job == 0:
        return f'Translate to {rng.choice(_LANGS)}: "{_fill(rng, rng.choice(_PHRASES))}"'
    if job == 1:
        review = _fill(rng, rng.choice(_REVIEWS))
        return f'Classify the sentiment of this review as positive, negative or neutral: "{review}"'
    if job == 2:
        return f'Extract the order number from this message: "{_fill(rng, rng.choice(_PHRASES))}"'
    return _fill(rng, rng.choice(_YESNO))


def _json(rng: random.Random) -> str:
    date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    text = f"{rng.choice(_NAMES)} flew from {rng.choice(_CITIES)} on {date}"
    return f'Extract the name, city and date from this text and reply in JSON with keys name, city, date: "{text}."'


def _standard(rng: random.Random) -> str:
    job = rng.randrange(3)
    if job == 0:
        return (
            f"Explain how {rng.choice(_CONCEPTS)} works to a new engineer on our team, with one concrete example "
            f"from {rng.choice(_DOMAINS)}. Keep it under 200 words.\n\nContext: {_paragraph(rng, 4)}"
        )
    if job == 1:
        return f"Review this function and suggest a clearer name and a docstring:\n\n{_code(rng, rng.randint(5, 9))}"
    return (
        f"Summarize this status update for the {rng.choice(_CITIES)} office in three bullet points and list the "
        f"open questions:\n\n{_paragraph(rng, rng.randint(8, 14))}"
    )


def _complex(rng: random.Random) -> str:
    job = rng.randrange(3)
    if job == 0:
        logs = "\n".join(_fill(rng, rng.choice(_LOG_LINES)) for _ in range(rng.randint(25, 45)))
        return (
            "Analyze step by step why the checkout service's p95 latency regressed after yesterday's deploy. "
            "Identify the root cause, compare two possible fixes and explain the trade-offs in depth.\n\n"
            f"Background: {_paragraph(rng, 5)}\n\nLogs:\n```\n{logs}\n```"
        )
    if job == 1:
        steps = "\n".join(f"{i}. {_paragraph(rng, 2)}" for i in range(1, rng.randint(5, 8)))
        return (
            f"Design the architecture of a {rng.choice(('multi-region', 'event-driven', 'offline-first'))} "
            f"version of {rng.choice(_DOMAINS)}. Evaluate two strategies, compare their costs and failure modes, "
            f"and plan the migration step by step. Requirements:\n{steps}\n\nContext: {_paragraph(rng, 6)}"
        )
    return (
        "Refactor this module for testability, explain why each change helps, and analyze the algorithm's "
        f"complexity before and after:\n\n{_code(rng, rng.randint(20, 35))}\n\n{_paragraph(rng, 3)}"
    )


_MAKERS = {"simple": _simple, "json": _json, "standard": _standard, "complex": _complex}


@dataclass(frozen=True)
class Request:
    index: int
    kind: str
    prompt: str
    first: int  # index of this prompt's first occurrence (== index when it is not a repeat)

    @property
    def repeat(self) -> bool:
        return self.first != self.index

    def params(self, model: str, max_tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": self.prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if self.kind == "json":
            params["response_format"] = {"type": "json_object"}
        return params


def build_workload(n: int, seed: int, repeat_share: float, mix: dict[str, float]) -> list[Request]:
    """``n`` requests: ``round(n * repeat_share)`` exact repeats of earlier prompts (popularity skewed: a few
    prompts repeat often, most never) placed at random later positions, the rest distinct prompts drawn from
    ``mix`` (kind -> weight)."""
    rng = random.Random(seed)
    n_repeats = round(n * repeat_share)
    n_unique = n - n_repeats
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=n_unique)
    uniques: list[tuple[str, str]] = []
    seen: set[str] = set()
    for kind in kinds:
        prompt = _MAKERS[kind](rng)
        while prompt in seen:
            prompt = _MAKERS[kind](rng)
        seen.add(prompt)
        uniques.append((kind, prompt))
    # Zipf-like popularity over a random ranking of the distinct prompts.
    ranking = list(range(n_unique))
    rng.shuffle(ranking)
    weights = [0.0] * n_unique
    for rank, u in enumerate(ranking):
        weights[u] = 1 / (rank + 1) ** 1.1
    slots: list[tuple[float, int]] = [(float(u), u) for u in range(n_unique)]
    for u in rng.choices(range(n_unique), weights=weights, k=n_repeats):
        slots.append((rng.uniform(u + 0.5, n_unique), u))  # a repeat comes after its first occurrence
    slots.sort()
    first_index: dict[int, int] = {}
    requests = []
    for index, (_, u) in enumerate(slots):
        first_index.setdefault(u, index)
        kind, prompt = uniques[u]
        requests.append(Request(index, kind, prompt, first_index[u]))
    return requests


# --- one run through a real gateway -------------------------------------------------------------------------------


@dataclass
class Sent:
    index: int
    request_id: str = ""
    cost: Decimal = Decimal(0)
    cache: str | None = None
    served: str = ""
    seconds: float = 0.0
    started: float = 0.0  # perf_counter when sent and when the answer was read
    ended: float = 0.0
    error: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gateway:
    """``margin serve`` in a subprocess with its own MARGIN_HOME (so its own ledger)."""

    def __init__(self, workdir: Path, config_text: str) -> None:
        self.home = workdir / "home"
        self.home.mkdir(parents=True)
        self.config = workdir / "margin.yaml"
        self.config.write_text(config_text)
        self.log = workdir / "gateway.log"
        self.master_key = "mk-" + secrets.token_hex(16)
        self.env = {**os.environ, "MARGIN_HOME": str(self.home), "MARGIN_MASTER_KEY": self.master_key}
        self.env.pop("MARGIN_CONFIG", None)
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen | None = None

    def margin(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "margin", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"margin {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def __enter__(self) -> Gateway:
        port = self.base_url.rsplit(":", 1)[1]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "margin", "--config", str(self.config), "serve", "--port", port],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited early:\n{self.log.read_text()}")
            try:
                if httpx2.get(self.base_url + "/health", timeout=0.5).status_code == 200:
                    return self
            except httpx2.HTTPError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()}")

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def ledger_rows(self) -> list[dict[str, Any]]:
        response = httpx2.post(
            self.base_url + "/v1/margin/ledger/flush",
            headers={"authorization": f"Bearer {self.master_key}"},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"ledger flush failed: HTTP {response.status_code} {response.text}")
        with sqlite3.connect(f"file:{self.home / 'ledger.db'}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            sql = "select * from usage_events where endpoint = 'chat.completions' order by finished_at, attempt"
            rows = db.execute(sql)
            return [dict(r) for r in rows]


def gateway_config(levers: bool, standard: str, latency_ms: int, ms_per_token: float) -> str:
    text = f"""gateway:
  providers:
    - {{name: mock, type: mock, latency_ms: {latency_ms}, ms_per_token: {ms_per_token}}}
"""
    if levers:
        text += f"""  levers:
    - name: auto
      match: {{models: [auto]}}
      cache: {{ttl_seconds: 86400, scope: team}}
      routing:
        tiers: {{simple: gpt-4o-mini, standard: {standard}, complex: gpt-4o}}
        cascade: true
"""
    return text


def _send(client: openai.OpenAI, request: Request, model: str, max_tokens: int) -> Sent:
    sent = Sent(request.index)
    sent.started = started = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(**request.params(model, max_tokens))
        raw.parse()  # the body must be a valid completion
    except openai.OpenAIError as exc:
        sent.error = f"{type(exc).__name__}: {exc}"[:300]
        return sent
    sent.ended = time.perf_counter()
    sent.seconds = sent.ended - started
    headers = raw.headers
    sent.request_id = headers.get("x-margin-request-id", "")
    sent.cost = Decimal(headers.get("x-margin-cost", "NaN"))
    sent.cache = headers.get("x-margin-cache")
    sent.served = headers.get("x-margin-served-model", "")
    return sent


@dataclass
class Run:
    label: str
    model: str
    config: str
    sent: list[Sent]
    rows: list[dict[str, Any]]
    wall_seconds: float


def run_once(label: str, config: str, model: str, workload: list[Request], args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory(prefix="margin-savings-") as tmp, Gateway(Path(tmp), config) as gw:
        key = gw.margin("keys", "create", "--team", "app").strip().splitlines()[-1]
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
        # Warm-up (tokenizer load, first connections), on a prompt outside the workload; excluded below.
        warm = [_send(client, Request(-1, "simple", f"Translate to French: 'hi {i}'", -1), model, 20) for i in "ab"]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            sent = list(pool.map(lambda r: _send(client, r, model, args.max_tokens), workload))
        wall = time.perf_counter() - started
        rows = gw.ledger_rows()
        client.close()
    skip = {w.request_id for w in warm}
    return Run(label, model, config, sent, [r for r in rows if r["request_id"] not in skip], wall)


# --- metrics and invariants ---------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]  # nearest rank


def analyse(run: Run, workload: list[Request], problems: list[str]) -> dict[str, Any]:
    """The run's numbers, from its ledger and the client's measurements; violated invariants go to problems."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(f"[{run.label}] {message}")

    errors = [s for s in run.sent if s.error]
    check(not errors, f"{len(errors)} requests failed, first: {errors[0].error if errors else ''}")
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows:
        by_request.setdefault(row["request_id"], []).append(row)
    ids = [s.request_id for s in run.sent]
    check(len(set(ids)) == len(workload), f"{len(set(ids))} distinct request ids for {len(workload)} requests")
    check(set(by_request) == set(ids), f"ledger has {len(by_request)} requests, the client sent {len(ids)}")
    check(all(r["status"] in ("ok", "cached") for r in run.rows), "a ledger row is neither ok nor cached")

    finals: dict[str, dict[str, Any]] = {}
    escalated_rows: list[dict[str, Any]] = []
    for request_id, rows in by_request.items():
        rows.sort(key=lambda r: r["attempt"])
        final = [r for r in rows if r["error_type"] is None]
        check(len(final) == 1, f"request {request_id} has {len(final)} final rows")
        rejected = [r for r in rows if r["error_type"] == "cascade_escalated"]
        check(len(final) + len(rejected) == len(rows), f"request {request_id} has an unexpected row")
        finals[request_id] = final[-1] if final else rows[-1]
        escalated_rows.extend(rejected)

    total = sum((Decimal(r["effective_cost"]) for r in run.rows), Decimal(0))
    client_total = sum((s.cost for s in run.sent if not s.error), Decimal(0))
    escalated_cost = sum((Decimal(r["effective_cost"]) for r in escalated_rows), Decimal(0))
    check(
        client_total + escalated_cost == total, f"ledger {total} != client {client_total} + escalated {escalated_cost}"
    )
    for s in run.sent:
        final = finals.get(s.request_id)
        if final is not None:
            check(Decimal(final["effective_cost"]) == s.cost, f"request {s.index}: header cost != ledger final row")
            check(final["served_model"] == s.served, f"request {s.index}: served model header != ledger")

    hits = [s for s in run.sent if finals.get(s.request_id, {}).get("status") == "cached"]
    hit_ids = {s.request_id for s in hits}
    check(len(hits) == sum(s.cache == "hit" for s in run.sent), "cache hits: ledger != x-margin-cache headers")
    check(all(workload[s.index].repeat for s in hits), "a first occurrence was served from the cache")
    hit_rows = [finals[s.request_id] for s in hits]
    check(all(Decimal(r["effective_cost"]) == 0 and Decimal(r["avoided_cost"]) > 0 for r in hit_rows), "hit costs")
    avoided = sum((Decimal(r["avoided_cost"]) for r in hit_rows), Decimal(0))
    # What the hits' first occurrences actually cost (every attempt, cascade steps included), for comparison.
    cost_of_request = {
        s.index: sum((Decimal(r["effective_cost"]) for r in by_request.get(s.request_id, [])), Decimal(0))
        for s in run.sent
    }
    hits_at_first_cost = sum((cost_of_request[workload[s.index].first] for s in hits), Decimal(0))
    escalated_ids = {r["request_id"] for r in escalated_rows}
    escalated_index = {s.index for s in run.sent if s.request_id in escalated_ids}
    for s in hits:  # a hit on an answer that took one upstream call avoided exactly what that call cost
        first = workload[s.index].first
        if first not in escalated_index:
            avoided_here = Decimal(finals[s.request_id]["avoided_cost"])
            check(avoided_here == cost_of_request[first], f"request {s.index}: avoided cost != its first's cost")
    hits_on_escalated = [s for s in hits if workload[s.index].first in escalated_index]
    repeat_misses = [s for s in run.sent if workload[s.index].repeat and s.request_id not in hit_ids]
    in_flight = [s for s in repeat_misses if s.started < run.sent[workload[s.index].first].ended]
    if run.label == "on":  # an answer stored before the repeat was sent must be found
        check(len(in_flight) == len(repeat_misses), "a repeat sent after its first occurrence completed missed")

    first_attempt_cost = sum(
        (Decimal(by_request[i][0]["effective_cost"]) for i in escalated_ids), Decimal(0)
    )  # what routing planned to pay for the requests that escalated
    escalated_total = sum((cost_of_request[s.index] for s in run.sent if s.request_id in escalated_ids), Decimal(0))

    served = Counter("cache hit" if s.request_id in hit_ids else s.served for s in run.sent)
    tiers = Counter()
    for rows in by_request.values():
        decisions = json.loads(rows[0]["decisions"] or "{}")
        if "tier" in decisions:
            tiers[decisions["tier"]] += 1
    by_kind: dict[str, Counter] = {}
    for s in run.sent:
        rows = by_request.get(s.request_id)
        if rows and rows[0]["status"] != "cached":
            tier = json.loads(rows[0]["decisions"] or "{}").get("tier", "-")
            by_kind.setdefault(workload[s.index].kind, Counter())[tier] += 1

    n = len(workload)
    latencies = [s.seconds * 1000 for s in run.sent if not s.error]
    by_served: dict[str, list[float]] = {}
    for s in run.sent:
        if not s.error:
            name = "cache hit" if s.request_id in hit_ids else s.served
            name += " (escalated)" if s.request_id in escalated_ids else ""
            by_served.setdefault(name, []).append(s.seconds * 1000)
    gateway_ms = [sum(r["latency_ms"] or 0 for r in rows) for rows in by_request.values()]
    return {
        "requests": n,
        "ledger_requests": len(by_request),
        "upstream_calls": sum(r["status"] == "ok" for r in run.rows),
        "total_cost": total,
        "cost_per_request": total / n,
        "cache_hits": len(hits),
        "repeats": sum(r.repeat for r in workload),
        "cache_hit_rate": len(hits) / n,
        "avoided_cost": avoided,
        "hits_at_first_cost": hits_at_first_cost,
        "hits_on_escalated_answers": len(hits_on_escalated),
        "repeat_misses": len(repeat_misses),
        "repeat_misses_sent_while_first_in_flight": len(in_flight),
        "escalated_requests": len(escalated_ids),
        "escalation_rate": len(escalated_ids) / n,
        "escalated_cost": escalated_cost,
        "escalated_share": float(escalated_cost / total) if total else 0.0,
        "escalation_multiplier": float(escalated_total / first_attempt_cost) if first_attempt_cost else None,
        "served_share": {k: v / n for k, v in sorted(served.items())},
        "tiers": dict(tiers),
        "tiers_by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "p50_ms_by_served": {k: _percentile(v, 0.50) for k, v in sorted(by_served.items())},
        "gateway_p50_ms": _percentile(gateway_ms, 0.50),  # the ledger's latency_ms, summed over attempts
        "gateway_p95_ms": _percentile(gateway_ms, 0.95),
        "wall_seconds": run.wall_seconds,
    }


# --- report -------------------------------------------------------------------------------------------------------


def _usd(value: Decimal) -> str:
    return f"${value.quantize(USD):f}"


def table(off: dict[str, Any], on: dict[str, Any], standard: str) -> str:
    savings = (off["total_cost"] - on["total_cost"]) / off["total_cost"] * 100 if off["total_cost"] else Decimal(0)

    def pct(x: float) -> str:
        return f"{x * 100:.1f}%"

    def sent(m: dict[str, Any]) -> str:
        return f"{m['requests']} = {m['ledger_requests']}"

    def hit_rate(m: dict[str, Any]) -> str:
        text = f"{pct(m['cache_hit_rate'])} ({m['cache_hits']} / {m['repeats']})"
        if m["cache_hits"] and m["repeat_misses"]:
            text += f"; {m['repeat_misses_sent_while_first_in_flight']} of {m['repeat_misses']} misses sent in flight"
        return text

    def escalation(m: dict[str, Any]) -> str:
        return f"{pct(m['escalation_rate'])} ({m['escalated_requests']} requests)"

    def hidden(m: dict[str, Any]) -> str:
        if not m["escalated_requests"]:
            return "-"
        return f"{_usd(m['escalated_cost'])} ({pct(m['escalated_share'])} of spend)"

    def multiplier(m: dict[str, Any]) -> str:
        return "-" if m["escalation_multiplier"] is None else f"x{m['escalation_multiplier']:.1f}"

    def served(m: dict[str, Any]) -> str:
        return ", ".join(f"{name} {pct(share)}" for name, share in m["served_share"].items())

    def by_path(m: dict[str, Any]) -> str:
        return ", ".join(f"{name} {ms:.0f} ms" for name, ms in m["p50_ms_by_served"].items())

    def tiers(m: dict[str, Any]) -> str:
        if not m["tiers"]:
            return "-"
        return ", ".join(f"{t} {m['tiers'].get(t, 0)}" for t in ("simple", "standard", "complex"))

    rows = [
        ("model asked for", "`gpt-4o`", "`auto`"),
        ("levers", "none", f"cache + routing (simple→gpt-4o-mini, standard→{standard}, complex→gpt-4o) + cascade"),
        ("requests (sent = in ledger)", sent(off), sent(on)),
        ("upstream calls", str(off["upstream_calls"]), str(on["upstream_calls"])),
        ("total effective cost", _usd(off["total_cost"]), _usd(on["total_cost"])),
        ("cost per request", _usd(off["cost_per_request"]), _usd(on["cost_per_request"])),
        ("savings vs levers off", "-", f"{savings:.1f}%"),
        ("cache hit rate of requests (hits / exact repeats)", hit_rate(off), hit_rate(on)),
        ("avoided cost recorded by cache hits", _usd(off["avoided_cost"]), _usd(on["avoided_cost"])),
        ("cascade escalation rate", escalation(off), escalation(on)),
        ("cost of rejected cascade attempts", hidden(off), hidden(on)),
        ("escalated requests: total / first-attempt cost", multiplier(off), multiplier(on)),
        ("requests per routed tier (upstream calls only)", tiers(off), tiers(on)),
        ("served by", served(off), served(on)),
        ("p50 latency (client)", f"{off['p50_ms']:.1f} ms", f"{on['p50_ms']:.1f} ms"),
        ("p95 latency (client)", f"{off['p95_ms']:.1f} ms", f"{on['p95_ms']:.1f} ms"),
        ("p50 latency by path (client)", by_path(off), by_path(on)),
    ]  # fmt: skip
    lines = ["| | levers OFF | levers ON |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat-share", type=float, default=0.30, help="share of exact repeats")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument(
        "--standard", default="gpt-4o", choices=("gpt-4o", "gpt-4o-mini"), help="model of the standard tier"
    )
    parser.add_argument("--latency-ms", type=int, default=20, help="mock latency per call")
    parser.add_argument("--ms-per-token", type=float, default=0.2, help="mock time per output token")
    args = parser.parse_args()
    if args.requests < 20:
        parser.error("--requests must be at least 20")

    mix = {"simple": 0.45, "json": 0.10, "standard": 0.27, "complex": 0.18}
    workload = build_workload(args.requests, args.seed, args.repeat_share, mix)
    kinds = Counter(r.kind for r in workload)
    print(
        f"workload: {len(workload)} requests, seed {args.seed}, {sum(r.repeat for r in workload)} exact repeats; "
        + ", ".join(f"{k} {kinds[k]}" for k in KINDS),
        file=sys.stderr,
    )
    started = time.perf_counter()
    runs = []
    for label, levers, model in (("off", False, "gpt-4o"), ("on", True, "auto")):
        config = gateway_config(levers, args.standard, args.latency_ms, args.ms_per_token)
        run = run_once(label, config, model, workload, args)
        print(f"run {label}: {run.wall_seconds:.1f} s", file=sys.stderr)
        runs.append(run)

    problems: list[str] = []
    off, on = (analyse(run, workload, problems) for run in runs)
    for name in ("cache_hits", "escalated_requests"):
        if off[name]:
            problems.append(f"[off] {name} = {off[name]} with the levers off")
    if set(off["served_share"]) != {"gpt-4o"}:
        problems.append(f"[off] served by {off['served_share']}, expected gpt-4o only")

    print(table(off, on, args.standard))
    print(f"\nworkload: {', '.join(f'{k} {kinds[k]}' for k in KINDS)} (as generated); routed tier by kind (levers on, "
          f"upstream calls): {json.dumps(on['tiers_by_kind'])}")  # fmt: skip
    print(
        f"cache hits' recorded avoided cost {_usd(on['avoided_cost'])} vs what their first occurrences cost "
        f"{_usd(on['hits_at_first_cost'])} ({on['hits_on_escalated_answers']} hits repeat an escalated request); "
        f"demo took {time.perf_counter() - started:.0f} s"
    )

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"savings-{stamp}.jsonl"
    with out.open("w") as f:
        for run, metrics in zip(runs, (off, on), strict=True):
            line = {
                "time": stamp,
                "run": run.label,
                "model": run.model,
                "seed": args.seed,
                "args": vars(args),
                "config": run.config,
                "metrics": _jsonable(metrics),
                "invariants_ok": not problems,
            }
            f.write(json.dumps(line) + "\n")
    print(f"results: {out.relative_to(HERE.parent.parent)}", file=sys.stderr)
    if problems:
        print("INVARIANTS VIOLATED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
