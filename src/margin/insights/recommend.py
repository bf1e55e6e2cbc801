"""Cost recommendations with estimated monthly savings, from the ledger alone. Pure: no I/O, prices passed in.

Input rows are ledger events (``usage_events`` rows as mappings, or :class:`margin.usage.UsageEvent`); ``tags`` and
``decisions`` may be dicts or JSON text, ``effective_cost`` a Decimal or its text, ``finished_at`` a datetime or
ISO text (naive read as UTC). Prices come from a *pricer*, ``price(model, TokenUsage) -> Decimal`` (the effective
cost; :func:`catalog_pricer` makes one from a :class:`margin.pricing.Catalog` at a fixed date, so results are
deterministic). ``period_days`` is the length of the observed window the rows were read from (not the span of
the rows: a quiet last day still counts).

Every saving is scaled to a 30-day month and rounded half-even to micro-dollars::

    monthly = max(0, observed) x 30 / period_days

so savings are never negative. Each :class:`Recommendation` carries in ``evidence`` the numbers it was computed
from (counts, token sums, observed dollars, thresholds, ``period_days``), as JSON-ready values (Decimals as text).

The rules (see ``docs/insights-recommend.md`` for their limits):

* :func:`cheaper_model`: short, tool-less requests on expensive models, repriced on a cheap model.
* :func:`cache_candidates`: exact repeats by prompt hash when hashes are given; otherwise the cache's observed
  hit rate extrapolated to the same route's uncached traffic. Today's ledger stores no prompts and no prompt
  hash, so without ``prompt_hashes`` repeats can only be estimated from cache decisions: ``cache='hit'`` events
  are counted, and repeats among ``miss`` or uncached events cannot be detected at all.
* :func:`context_bloat`: routes whose median prompt sits far above their peers', or whose prompts grow along a
  task's calls; saving from trimming prompts to the peer (or the route's) median.
* :func:`max_tokens_issues`: outputs that hit their cap (truncated answers, usually re-asked), and caps that are
  the gateway default or far above the outputs seen (worst-case budget reservations held for nothing).
* :func:`self_hosting`: idle self-hosted GPUs (utilization under 40%), or API volume past the planner's
  break-even.
* :func:`recommend`: runs the rules that have their inputs and sorts by saving.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any, Literal

from ..errors import MarginError
from ..money import MONEY_CONTEXT, ZERO
from ..pricing.cost import TokenUsage

if TYPE_CHECKING:
    from ..pricing import Catalog

__all__ = [
    "DAYS_PER_MONTH",
    "Confidence",
    "Pricer",
    "Recommendation",
    "cache_candidates",
    "catalog_pricer",
    "cheaper_model",
    "context_bloat",
    "max_tokens_issues",
    "monthly",
    "recommend",
    "self_hosting",
]

DAYS_PER_MONTH = 30
MICRO = Decimal("0.000001")
Confidence = Literal["high", "medium", "low"]
Pricer = Callable[[str, TokenUsage], Decimal]
HIT_KINDS = frozenset({"hit", "semantic-hit"})


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """One recommendation: what to change, why (``evidence``), and what it should save per 30 days."""

    kind: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    estimated_monthly_saving: Decimal = ZERO
    confidence: Confidence = "medium"
    action: str = ""


def monthly(observed: Decimal, period_days: Decimal | int) -> Decimal:
    """``max(0, observed) x 30 / period_days``, rounded half-even to micro-dollars."""
    days = Decimal(period_days)
    if days <= 0:
        raise ValueError(f"period_days must be > 0, got {period_days!r}")
    if observed <= 0:
        return ZERO.quantize(MICRO)
    with localcontext(MONEY_CONTEXT):
        return (observed * DAYS_PER_MONTH / days).quantize(MICRO, rounding=ROUND_HALF_EVEN)


def catalog_pricer(catalog: Catalog, at: datetime) -> Pricer:
    """A pricer over ``catalog`` at the prices in force at ``at`` (effective cost, negotiated discounts included)."""

    def price(model: str, usage: TokenUsage) -> Decimal:
        return catalog.price(usage, model, at=at).effective_cost

    return price


# --- rows ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    event_id: str
    finished_at: datetime
    status: str
    model: str
    route: str | None
    provider: str | None
    tags: dict[str, Any]
    task_id: str | None
    attempt: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    effective_cost: Decimal
    avoided_cost: Decimal
    max_tokens: int | None
    cache: str | None
    decisions: dict[str, Any]
    endpoint: str | None

    @property
    def billed(self) -> bool:
        """An answered upstream call (not a cache hit, error or rejection)."""
        return self.status == "ok" and self.cache not in HIT_KINDS

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )

    def trimmed(self, target: int) -> TokenUsage:
        """The usage with the prompt cut to ``target`` tokens (cache parts shrunk in proportion)."""
        if self.input_tokens <= target:
            return self.usage
        return TokenUsage(
            input_tokens=target,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens * target // self.input_tokens,
            cache_write_tokens=self.cache_write_tokens * target // self.input_tokens,
        )


def _json_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _when(value: Any) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except ArithmeticError:
            return ZERO
    return ZERO


def _rows(rows: Iterable[Any]) -> list[_Row]:
    """Ledger rows (mappings as read from SQLite, UsageEvents, or rows this function already parsed) as
    :class:`_Row`, in one deterministic order."""
    out = []
    for row in rows:
        if isinstance(row, _Row):  # parsed already: recommend() parses once for every rule
            out.append(row)
            continue
        # One type check per row, not per field (isinstance against Mapping is an ABC check).
        if isinstance(row, Mapping):
            get = row.get
        else:

            def get(name: str, default: Any = None, _row: Any = row) -> Any:
                return getattr(_row, name, default)

        max_tokens = get("max_tokens")
        out.append(
            _Row(
                event_id=str(get("event_id", "")),
                finished_at=_when(get("finished_at")),
                status=str(get("status", "ok")),
                model=str(get("served_model") or get("requested_model") or ""),
                route=get("route"),
                provider=get("provider"),
                tags=_json_dict(get("tags")),
                task_id=get("task_id"),
                attempt=_int(get("attempt")),
                input_tokens=_int(get("input_tokens")),
                cache_read_tokens=_int(get("cache_read_tokens")),
                cache_write_tokens=_int(get("cache_write_tokens")),
                output_tokens=_int(get("output_tokens")),
                effective_cost=_money(get("effective_cost")),
                avoided_cost=_money(get("avoided_cost")),
                max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
                cache=get("cache"),
                decisions=_json_dict(get("decisions")),
                endpoint=get("endpoint"),
            )
        )
    # One deterministic order whatever order the rows came in.
    out.sort(key=lambda r: (r.finished_at, r.event_id, r.attempt))
    return out


def _scope(row: _Row, group_by: str) -> str | None:
    """The route (``group_by="route"``; a row without a route is grouped by ``model:<served model>``) or a tag."""
    if group_by == "route":
        return row.route or (f"model:{row.model}" if row.model else None)
    value = row.tags.get(group_by)
    return str(value) if value not in (None, "") else None


def _rank(values: list[int], q: float) -> int:
    """Nearest-rank quantile (an observed value; 0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ratio(num: int | Decimal, den: int | Decimal) -> str:
    """A share as text with 4 decimals (JSON-ready, exact enough to read)."""
    if not den:
        return "0"
    with localcontext(MONEY_CONTEXT):
        return str((Decimal(num) / Decimal(den)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def _priced(price: Pricer, model: str, usage: TokenUsage) -> Decimal | None:
    try:
        return price(model, usage)
    except MarginError:  # unknown model, unpriceable usage: the row is left out and counted as unpriced
        return None


# --- cheaper model ------------------------------------------------------------------------------------------


def _looks_simple(row: _Row, max_input: int, max_output: int) -> tuple[bool, bool]:
    """(simple, judged from routing signals). Signals, when recorded, must show no tools and the tier must not be
    complex; sizes are always checked (tool definitions also inflate the prompt)."""
    if row.input_tokens > max_input or row.output_tokens > max_output:
        return False, False
    signals = row.decisions.get("signals")
    if not isinstance(signals, Mapping):
        return True, False
    tools = signals.get("tools", 0)
    if isinstance(tools, int | float) and not isinstance(tools, bool) and tools > 0:
        return False, True
    if row.decisions.get("tier") == "complex":
        return False, True
    return True, True


def cheaper_model(
    rows: Iterable[Any],
    *,
    price: Pricer,
    period_days: Decimal | int,
    cheap_model: str,
    expensive_models: Collection[str],
    max_input: int = 1_000,
    max_output: int = 300,
    min_requests: int = 20,
) -> list[Recommendation]:
    """Per expensive model: its answered requests with ``input_tokens <= max_input``, ``output_tokens <=
    max_output`` and no tools (routing signals ``tools == 0`` and tier not ``complex`` when recorded).
    Saving = ``sum(price(model, tokens)) - sum(price(cheap_model, same tokens))`` over them, monthly. Both sides use
    the pricer, so the difference is the model choice alone (the recorded cost is in the evidence). Confidence is
    high when at least 90% of them carried routing signals (tools known), else medium."""
    expensive = set(expensive_models) - {cheap_model}
    by_model: dict[str, list[_Row]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    with_signals: dict[str, int] = defaultdict(int)
    for row in _rows(rows):
        if not row.billed or row.model not in expensive or row.endpoint == "embeddings":
            continue
        totals[row.model] += 1
        simple, from_signals = _looks_simple(row, max_input, max_output)
        if simple:
            by_model[row.model].append(row)
            with_signals[row.model] += from_signals
    out = []
    for model in sorted(by_model):
        now = cheap = recorded = ZERO
        priced = unpriced = input_tokens = output_tokens = 0
        for row in by_model[model]:
            a, b = _priced(price, model, row.usage), _priced(price, cheap_model, row.usage)
            if a is None or b is None:
                unpriced += 1
                continue
            now, cheap, recorded = now + a, cheap + b, recorded + row.effective_cost
            priced += 1
            input_tokens += row.input_tokens
            output_tokens += row.output_tokens
        if priced < min_requests or now <= cheap:
            continue
        saving = monthly(now - cheap, period_days)
        signals_share = Decimal(with_signals[model]) / len(by_model[model])
        out.append(
            Recommendation(
                kind="cheaper_model",
                title=f"Route {priced} simple {model} requests to {cheap_model}",
                evidence={
                    "model": model,
                    "cheap_model": cheap_model,
                    "requests": priced,
                    "unpriced_requests": unpriced,
                    "model_requests": totals[model],
                    "share_of_model_requests": _ratio(priced, totals[model]),
                    "requests_with_signals": with_signals[model],
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cost_now": str(now),
                    "cost_on_cheap_model": str(cheap),
                    "recorded_cost": str(recorded),
                    "max_input": max_input,
                    "max_output": max_output,
                    "period_days": str(period_days),
                },
                estimated_monthly_saving=saving,
                confidence="high" if signals_share >= Decimal("0.9") else "medium",
                action=(
                    f"Enable tier routing for {model} traffic (simple tier -> {cheap_model}) or move these callers "
                    f"to {cheap_model}; check quality on a sample first."
                ),
            )
        )
    return out


# --- cache --------------------------------------------------------------------------------------------------


def cache_candidates(
    rows: Iterable[Any],
    *,
    period_days: Decimal | int,
    prompt_hashes: Mapping[str, str] | None = None,
    ttl_seconds: int | None = None,
    min_repeats: int = 5,
    min_requests: int = 20,
) -> list[Recommendation]:
    """Requests a cache would have served, per route.

    With ``prompt_hashes`` (event id -> hash of the request as the exact cache keys it; any grouping key works,
    e.g. a semantic-cache cluster id for near duplicates): answered requests are grouped by (hash, model) in time
    order; the first of a group fills the cache and every later one within ``ttl_seconds`` of the fill (no limit
    when None) is a repeat it would have served; a later one past the TTL fills it again. Saving = the recorded
    effective cost of the repeats (confidence high); needs ``min_repeats``.

    Without hashes the ledger cannot see repeats: on each route where the exact or semantic cache decided at least
    ``min_requests`` times with at least one hit, the observed hit rate ``h = hits / (hits + misses)`` is applied to
    the route's traffic that had no cache policy (``cache`` NULL): saving = ``h x`` its cost (confidence low).
    Bypassed requests (no-cache header, non-deterministic) are reported, not counted.
    """
    parsed = _rows(rows)
    if prompt_hashes is not None:
        return _hash_repeats(parsed, prompt_hashes, period_days, ttl_seconds, min_repeats)
    by_route: dict[str, list[_Row]] = defaultdict(list)
    for row in parsed:
        if row.status in ("ok", "cached") and (scope := _scope(row, "route")) is not None:
            by_route[scope].append(row)
    out = []
    for route in sorted(by_route):
        events = by_route[route]
        hits = sum(1 for r in events if r.cache in HIT_KINDS)
        misses = sum(1 for r in events if r.cache == "miss" and r.billed)
        bypass = sum(1 for r in events if r.cache == "bypass" and r.billed)
        uncached = [r for r in events if r.cache is None and r.billed]
        uncached_cost = sum((r.effective_cost for r in uncached), ZERO)
        if hits == 0 or hits + misses < min_requests or not uncached or uncached_cost <= 0:
            continue
        with localcontext(MONEY_CONTEXT):
            rate = Decimal(hits) / (hits + misses)
            observed = rate * uncached_cost
        out.append(
            Recommendation(
                kind="cache_extend",
                title=f"Extend the cache on {route} to its {len(uncached)} uncached requests",
                evidence={
                    "route": route,
                    "hits": hits,
                    "misses": misses,
                    "hit_rate": _ratio(hits, hits + misses),
                    "avoided_cost": str(sum((r.avoided_cost for r in events if r.cache in HIT_KINDS), ZERO)),
                    "bypassed_requests": bypass,
                    "uncached_requests": len(uncached),
                    "uncached_cost": str(uncached_cost),
                    "period_days": str(period_days),
                    "limit": "no prompt hashes in the ledger: repeats among misses and uncached requests are unseen",
                },
                estimated_monthly_saving=monthly(observed, period_days),
                confidence="low",
                action=(
                    f"Apply the cache policy to every lever serving {route}; record prompt hashes to measure "
                    "repeats directly."
                ),
            )
        )
    return out


def _hash_repeats(
    parsed: list[_Row],
    hashes: Mapping[str, str],
    period_days: Decimal | int,
    ttl_seconds: int | None,
    min_repeats: int,
) -> list[Recommendation]:
    groups: dict[tuple[str, str, str], list[_Row]] = defaultdict(list)
    route_cost: dict[str, Decimal] = defaultdict(lambda: ZERO)
    route_requests: dict[str, int] = defaultdict(int)
    for row in parsed:
        digest = hashes.get(row.event_id)
        scope = _scope(row, "route")
        if not row.billed or digest is None or scope is None:
            continue
        groups[(scope, row.model, digest)].append(row)
        route_cost[scope] += row.effective_cost
        route_requests[scope] += 1
    repeats: dict[str, list[_Row]] = defaultdict(list)
    distinct: dict[str, int] = defaultdict(int)
    for (scope, _model, _digest), events in groups.items():
        distinct[scope] += 1
        filled = events[0].finished_at
        for row in events[1:]:
            if ttl_seconds is None or (row.finished_at - filled).total_seconds() <= ttl_seconds:
                repeats[scope].append(row)
            else:
                filled = row.finished_at
    out = []
    for scope in sorted(repeats):
        found = repeats[scope]
        if len(found) < min_repeats:
            continue
        cost = sum((r.effective_cost for r in found), ZERO)
        out.append(
            Recommendation(
                kind="cache_repeats",
                title=f"Cache {scope}: {len(found)} repeated requests",
                evidence={
                    "route": scope,
                    "hashed_requests": route_requests[scope],
                    "distinct_prompts": distinct[scope],
                    "repeat_requests": len(found),
                    "repeat_cost": str(cost),
                    "hashed_cost": str(route_cost[scope]),
                    "repeat_cost_share": _ratio(cost, route_cost[scope]),
                    "ttl_seconds": ttl_seconds,
                    "period_days": str(period_days),
                },
                estimated_monthly_saving=monthly(cost, period_days),
                confidence="high",
                action=f"Enable the exact cache (cache.enabled) on the lever serving {scope}.",
            )
        )
    return out


# --- context bloat ------------------------------------------------------------------------------------------


def context_bloat(
    rows: Iterable[Any],
    *,
    price: Pricer,
    period_days: Decimal | int,
    group_by: str = "route",
    peer_ratio: Decimal | int = 3,
    growth_ratio: Decimal | int = 2,
    min_requests: int = 20,
    min_tasks: int = 5,
    min_task_calls: int = 3,
) -> list[Recommendation]:
    """Per route (``group_by="route"``) or per tag value (``group_by="feature"``...), over answered requests:

    * **above peers**: the group's median prompt (nearest rank) is more than ``peer_ratio`` times the median of the
      other groups' medians (needs two other groups of ``min_requests``). Target = that peer median.
    * **growth**: among the group's tasks with ``min_task_calls`` calls or more (``task_id``, ordered by time), the
      median of ``last prompt / first prompt`` is at least ``growth_ratio`` (needs ``min_tasks`` tasks). Target =
      the group's own median prompt, applied to those tasks' calls.

    Saving = ``sum(price(tokens) - price(tokens with the prompt cut to the target))`` over the affected calls
    (cache tokens shrink in proportion), monthly. Above peers wins when both hold. Confidence low: peers may
    genuinely need more context (retrieval, documents)."""
    groups: dict[str, list[_Row]] = defaultdict(list)
    for row in _rows(rows):
        if row.billed and row.endpoint != "embeddings" and (scope := _scope(row, group_by)) is not None:
            groups[scope].append(row)
    medians = {k: _rank([r.input_tokens for r in v], 0.5) for k, v in groups.items() if len(v) >= min_requests}
    peer_q = Decimal(peer_ratio)
    growth_q = Decimal(growth_ratio)
    out = []
    for scope in sorted(medians):
        events = groups[scope]
        median = medians[scope]
        peers = [m for k, m in medians.items() if k != scope]
        peer_median = _rank(peers, 0.5) if len(peers) >= 2 else None
        tasks: dict[str, list[_Row]] = defaultdict(list)
        for row in events:
            if row.task_id:
                tasks[row.task_id].append(row)
        growing = {t: calls for t, calls in tasks.items() if len(calls) >= min_task_calls and calls[0].input_tokens}
        growths = sorted(Decimal(c[-1].input_tokens) / c[0].input_tokens for c in growing.values())
        median_growth = growths[max(0, math.ceil(len(growths) / 2) - 1)] if growths else None
        if peer_median and median > peer_q * peer_median:
            reason, target, affected = "above_peers", peer_median, events
        elif median_growth is not None and len(growing) >= min_tasks and median_growth >= growth_q:
            reason, target = "growth", median
            affected = [r for calls in growing.values() for r in calls]
        else:
            continue
        observed = ZERO
        trimmed_tokens = unpriced = 0
        for row in affected:
            if row.input_tokens <= target:
                continue
            before, after = _priced(price, row.model, row.usage), _priced(price, row.model, row.trimmed(target))
            if before is None or after is None:
                unpriced += 1
                continue
            observed += before - after
            trimmed_tokens += row.input_tokens - target
        if observed <= 0:
            continue
        out.append(
            Recommendation(
                kind="context_bloat",
                title=(
                    f"Trim prompts on {scope}: median {median} tokens vs peers' {peer_median}"
                    if reason == "above_peers"
                    else f"Trim conversation history on {scope}: prompts grow {median_growth:.1f}x over a task"
                ),
                evidence={
                    group_by: scope,
                    "reason": reason,
                    "requests": len(events),
                    "median_prompt_tokens": median,
                    "peer_median_prompt_tokens": peer_median,
                    "tasks": len(growing),
                    "median_task_growth": str(median_growth.quantize(Decimal("0.01"))) if median_growth else None,
                    "target_prompt_tokens": target,
                    "affected_requests": len(affected),
                    "trimmed_tokens": trimmed_tokens,
                    "unpriced_requests": unpriced,
                    "period_days": str(period_days),
                },
                estimated_monthly_saving=monthly(observed, period_days),
                confidence="low",
                action=(
                    f"Cut retrieved context or system prompt on {scope} towards {target} tokens"
                    if reason == "above_peers"
                    else f"Enable the context lever (window or summarize) on {scope}"
                ),
            )
        )
    return out


# --- max_tokens ---------------------------------------------------------------------------------------------


def max_tokens_issues(
    rows: Iterable[Any],
    *,
    price: Pricer,
    period_days: Decimal | int,
    default_max_tokens: int | None = None,
    too_high_ratio: int = 10,
    min_capped_share: Decimal | str = "0.05",
    min_requests: int = 20,
) -> list[Recommendation]:
    """Per route, over answered requests that recorded their cap (``max_tokens``):

    * **hits the cap** (``output_tokens >= max_tokens``) in at least ``min_capped_share`` of them: the truncated
      answers are usually thrown away and re-asked, so saving = their recorded effective cost (an upper bound;
      confidence low).
    * **default or too-high cap**: requests whose cap equals ``default_max_tokens`` (the client sent none, the
      gateway's default was used; the ledger only sees the cap) or is at least ``too_high_ratio`` times the route's
      p99 output. Budget reservations hold the worst case, ``price(model, prompt + cap output tokens)``; the
      evidence gives the reserved-but-unused amount ``sum(worst - price(actual))`` per month. Reservations are
      released at settlement, so this is budget headroom, not spend: the dollar saving is 0.
    """
    share_min = Decimal(min_capped_share)
    groups: dict[str, list[_Row]] = defaultdict(list)
    for row in _rows(rows):
        if row.billed and row.max_tokens and (scope := _scope(row, "route")) is not None:
            groups[scope].append(row)
    out = []
    for scope in sorted(groups):
        events = groups[scope]
        if len(events) < min_requests:
            continue
        capped = [r for r in events if r.max_tokens is not None and r.output_tokens >= r.max_tokens]
        if capped and Decimal(len(capped)) / len(events) >= share_min:
            cost = sum((r.effective_cost for r in capped), ZERO)
            out.append(
                Recommendation(
                    kind="max_tokens_capped",
                    title=f"{len(capped)} answers on {scope} hit max_tokens",
                    evidence={
                        "route": scope,
                        "requests": len(events),
                        "capped_requests": len(capped),
                        "capped_share": _ratio(len(capped), len(events)),
                        "capped_cost": str(cost),
                        "caps": sorted({r.max_tokens for r in capped if r.max_tokens is not None}),
                        "period_days": str(period_days),
                    },
                    estimated_monthly_saving=monthly(cost, period_days),
                    confidence="low",
                    action=f"Raise max_tokens on {scope}, or ask for shorter answers, so they are not re-asked.",
                )
            )
        p99 = _rank([r.output_tokens for r in events], 0.99)
        loose = [
            r
            for r in events
            if r.max_tokens is not None
            and (r.max_tokens == default_max_tokens or r.max_tokens >= too_high_ratio * max(p99, 1))
        ]
        if len(loose) < min_requests:
            continue
        excess = ZERO
        unpriced = 0
        for row in loose:
            assert row.max_tokens is not None
            worst_usage = TokenUsage(
                input_tokens=row.input_tokens,
                output_tokens=max(row.max_tokens, row.output_tokens),
                cache_read_tokens=row.cache_read_tokens,
                cache_write_tokens=row.cache_write_tokens,
            )
            worst, actual = _priced(price, row.model, worst_usage), _priced(price, row.model, row.usage)
            if worst is None or actual is None:
                unpriced += 1
                continue
            excess += worst - actual
        suggested = max(1, math.ceil(p99 * 1.2))
        defaults = sum(1 for r in loose if r.max_tokens == default_max_tokens)
        out.append(
            Recommendation(
                kind="max_tokens_loose",
                title=f"Set max_tokens near {suggested} on {scope} ({len(loose)} requests reserve far more)",
                evidence={
                    "route": scope,
                    "requests": len(events),
                    "loose_requests": len(loose),
                    "default_cap_requests": defaults,
                    "default_max_tokens": default_max_tokens,
                    "p99_output_tokens": p99,
                    "suggested_max_tokens": suggested,
                    "reserved_unused_per_month": str(monthly(excess, period_days)),
                    "unpriced_requests": unpriced,
                    "period_days": str(period_days),
                },
                estimated_monthly_saving=monthly(ZERO, period_days),
                confidence="medium",
                action=(
                    f"Send max_tokens={suggested} from the clients of {scope} (or lower gateway.default_max_tokens): "
                    "budgets then reserve what answers really use."
                ),
            )
        )
    return out


# --- self-hosting -------------------------------------------------------------------------------------------


def self_hosting(
    rows: Iterable[Any],
    *,
    period_days: Decimal | int,
    gpu_hourly: Decimal,
    gpu_hours: Decimal | int,
    utilization: Decimal | None = None,
    tokens_per_gpu_hour: int | None = None,
    self_hosted_providers: Collection[str] = (),
    breakeven_tokens_per_month: int | None = None,
    idle_below: Decimal | str = "0.40",
    target_utilization: Decimal | str = "0.70",
) -> list[Recommendation]:
    """Self-hosted capacity and the API-vs-self-host break-even.

    * **idle**: ``utilization`` (measured, 0..1) or, failing it, ``self-hosted tokens / (gpu_hours x
      tokens_per_gpu_hour)`` from rows whose provider is in ``self_hosted_providers``. Below ``idle_below`` (40%):
      consolidating to ``target_utilization`` (70%) needs ``u / target`` of the GPU hours, so saving = monthly GPU
      cost ``x (1 - u / target)``, with monthly GPU cost ``= gpu_hourly x gpu_hours x 30 / period_days``
      (``gpu_hours`` are the hours paid in the period). Confidence medium when measured, low when estimated.
    * **break-even**: API tokens (input + output of the other providers' answered requests) per month above
      ``breakeven_tokens_per_month`` (from the planner's break-even). Saving, taking self-hosting as a flat cost
      equal to the API cost at break-even, = monthly API cost ``x (1 - breakeven / volume)``: an upper bound
      (confidence low); run the planner for the real figure.
    """
    parsed = [r for r in _rows(rows) if r.billed]
    hosted = set(self_hosted_providers)
    out = []
    hours = Decimal(gpu_hours)
    with localcontext(MONEY_CONTEXT):
        gpu_cost = Decimal(gpu_hourly) * hours
    measured = utilization is not None
    util = Decimal(utilization) if utilization is not None else None
    hosted_tokens = sum(r.input_tokens + r.output_tokens for r in parsed if r.provider in hosted)
    if util is None and tokens_per_gpu_hour and hours > 0:
        with localcontext(MONEY_CONTEXT):
            util = Decimal(hosted_tokens) / (hours * tokens_per_gpu_hour)
    target = Decimal(target_utilization)
    if util is not None and gpu_cost > 0 and util < Decimal(idle_below):
        with localcontext(MONEY_CONTEXT):
            observed = gpu_cost * (1 - util / target)
        out.append(
            Recommendation(
                kind="self_hosting_idle",
                title=f"Self-hosted GPUs are {util * 100:.0f}% utilized",
                evidence={
                    "utilization": _ratio(util, 1),
                    "utilization_measured": measured,
                    "gpu_hourly": str(gpu_hourly),
                    "gpu_hours": str(gpu_hours),
                    "gpu_cost": str(gpu_cost),
                    "self_hosted_tokens": hosted_tokens,
                    "tokens_per_gpu_hour": tokens_per_gpu_hour,
                    "target_utilization": str(target),
                    "period_days": str(period_days),
                },
                estimated_monthly_saving=monthly(observed, period_days),
                confidence="medium" if measured else "low",
                action=(
                    "Consolidate onto fewer GPUs (or scale to zero off-hours), or move this traffic back to an API."
                ),
            )
        )
    if breakeven_tokens_per_month:
        api = [r for r in parsed if r.provider not in hosted]
        api_tokens = sum(r.input_tokens + r.output_tokens for r in api)
        api_cost = sum((r.effective_cost for r in api), ZERO)
        with localcontext(MONEY_CONTEXT):
            volume = Decimal(api_tokens) * DAYS_PER_MONTH / Decimal(period_days)
        if volume > breakeven_tokens_per_month and api_cost > 0:
            with localcontext(MONEY_CONTEXT):
                observed = api_cost * (1 - breakeven_tokens_per_month / volume)
            out.append(
                Recommendation(
                    kind="self_hosting_breakeven",
                    title=f"API volume is {volume / breakeven_tokens_per_month:.1f}x the self-hosting break-even",
                    evidence={
                        "api_tokens": api_tokens,
                        "api_tokens_per_month": str(volume.quantize(Decimal(1))),
                        "breakeven_tokens_per_month": breakeven_tokens_per_month,
                        "api_cost": str(api_cost),
                        "period_days": str(period_days),
                    },
                    estimated_monthly_saving=monthly(observed, period_days),
                    confidence="low",
                    action="Run `margin plan breakeven` with these volumes and price a self-hosted deployment.",
                )
            )
    return out


# --- all ----------------------------------------------------------------------------------------------------


def recommend(
    rows: Iterable[Any],
    *,
    price: Pricer,
    period_days: Decimal | int,
    cheap_model: str | None = None,
    expensive_models: Collection[str] = (),
    prompt_hashes: Mapping[str, str] | None = None,
    default_max_tokens: int | None = None,
    gpu_hourly: Decimal | None = None,
    gpu_hours: Decimal | int | None = None,
    utilization: Decimal | None = None,
    tokens_per_gpu_hour: int | None = None,
    self_hosted_providers: Collection[str] = (),
    breakeven_tokens_per_month: int | None = None,
) -> list[Recommendation]:
    """Every rule whose inputs are given (cheaper model needs ``cheap_model`` and ``expensive_models``; self-hosting
    needs ``gpu_hourly`` and ``gpu_hours``, or ``breakeven_tokens_per_month``), default thresholds, sorted by
    saving (largest first), then kind and title, so the order is deterministic."""
    data = _rows(rows)  # parsed once; each rule takes the parsed rows as they are
    found: list[Recommendation] = []
    if cheap_model and expensive_models:
        found += cheaper_model(
            data, price=price, period_days=period_days, cheap_model=cheap_model, expensive_models=expensive_models
        )
    found += cache_candidates(data, period_days=period_days, prompt_hashes=prompt_hashes)
    found += context_bloat(data, price=price, period_days=period_days)
    found += max_tokens_issues(data, price=price, period_days=period_days, default_max_tokens=default_max_tokens)
    if (gpu_hourly is not None and gpu_hours is not None) or breakeven_tokens_per_month:
        found += self_hosting(
            data,
            period_days=period_days,
            gpu_hourly=gpu_hourly if gpu_hourly is not None else ZERO,
            gpu_hours=gpu_hours if gpu_hours is not None else 0,
            utilization=utilization,
            tokens_per_gpu_hour=tokens_per_gpu_hour,
            self_hosted_providers=self_hosted_providers,
            breakeven_tokens_per_month=breakeven_tokens_per_month,
        )
    return sorted(found, key=lambda r: (-r.estimated_monthly_saving, r.kind, r.title))
