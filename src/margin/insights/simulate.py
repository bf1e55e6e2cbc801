"""What-if replay: the ledger's logged traffic re-priced under other prices, model routing and budgets.

Pure: it takes the period's usage events (as recorded: tokens, served model, tags, key, time) and a
:class:`Policy`, and returns what the same traffic would have cost. It uses the gateway's own code for what
it models: the price catalog (:class:`~margin.pricing.Catalog`, with the policy's custom prices and
discounts) and the budget policy (:func:`~margin.policy.budgets.applicable_budgets`, counters, the block
threshold). Assumptions, stated in every result:

* token counts stay as recorded; a re-routed request is assumed to use the same tokens on the new model
  (answers' lengths differ between models: this is the largest uncertainty);
* an event is re-priced only when it is re-routed or the policy changes its model's or provider's prices;
  otherwise its recorded cost stands (a gateway route may have priced it with an override);
* only the events that cost money upstream are replayed (ok, upstream errors and client aborts with a
  cost); cache hits stay free; rejected requests stay rejected;
* budgets are applied in time order to the simulated actual cost (not to a worst-case reservation, which
  would refuse more near a cap), and a refused request costs nothing;
* with a :class:`CacheReplay`, the exact cache is replayed from the requests' hashes (``prompt_hash``, the
  gateway's own cache key) in the gateway's own partitions (:func:`~margin.cache.cache_scope_value`): a request
  whose hash an earlier answered request stored in the same partition within ``ttl_seconds`` is a hit and
  costs nothing (every attempt of it). The ledger does not record sampling parameters, so every hashed
  request is assumed cacheable except those the gateway bypassed (``cache = bypass``: non-deterministic or
  opted out); events without a hash (written before margin recorded them) are never hits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..cache._exact import CacheScope, cache_scope_value
from ..errors import MarginError
from ..policy.budgets import BudgetCounters, RequestScope, applicable_budgets
from ..pricing import Catalog, TokenUsage
from ..usage import UsageEvent

__all__ = ["CacheReplay", "Policy", "SimulationResult", "simulate"]

ZERO = Decimal(0)
ASSUMPTIONS = (
    "token counts stay as recorded; a re-routed request is assumed to use the same tokens on its new model",
    "only events that cost money upstream are replayed; cache hits stay free and rejections stay rejected",
    "budgets are applied in time order to the simulated actual cost; a refused request costs nothing",
)


CACHE_ASSUMPTION = (
    "the exact cache is replayed from request hashes: every hashed request not bypassed by the gateway is "
    "assumed cacheable (temperature is not in the ledger); a hit costs nothing"
)


@dataclass(frozen=True, kw_only=True)
class CacheReplay:
    """An exact cache to replay: entries live ``ttl_seconds`` in partitions of ``scope`` (as the gateway's)."""

    ttl_seconds: int
    scope: CacheScope = "team"


@dataclass(frozen=True)
class Policy:
    """What changes: ``models`` re-routes served models (old -> new), ``budgets`` are gateway budget rules
    (``margin.gateway.config.BudgetConfig``) applied instead of none; prices come with the catalog."""

    models: Mapping[str, str] = field(default_factory=dict)
    budgets: Sequence[Any] = ()
    # Models and providers whose prices the policy changes (its custom models and discounts): events on
    # them are re-priced; others keep their recorded cost unless re-routed (a gateway route may have priced
    # them with its own override, which the catalog does not know).
    repriced_models: frozenset[str] = frozenset()
    repriced_providers: frozenset[str] = frozenset()
    cache: CacheReplay | None = None


@dataclass
class SimulationResult:
    events: int
    recorded_cost: Decimal
    simulated_cost: Decimal
    refused_by_budgets: int
    refused_cost: Decimal
    by_model: dict[str, dict[str, Decimal]]
    unpriced: dict[str, int]
    assumptions: tuple[str, ...] = ASSUMPTIONS
    cache_hits: int = 0  # requests the replayed cache would have served
    cache_avoided: Decimal = ZERO  # what those requests' replayed events would have cost

    @property
    def difference(self) -> Decimal:
        return self.simulated_cost - self.recorded_cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "recorded_cost": str(self.recorded_cost),
            "simulated_cost": str(self.simulated_cost),
            "difference": str(self.difference),
            "refused_by_budgets": self.refused_by_budgets,
            "refused_cost": str(self.refused_cost),
            "by_model": {m: {k: str(v) for k, v in row.items()} for m, row in self.by_model.items()},
            "unpriced_models": self.unpriced,
            "cache_hits": self.cache_hits,
            "cache_avoided": str(self.cache_avoided),
            "assumptions": list(self.assumptions),
        }


class _CacheState:
    """The replayed exact cache: (partition, hash) -> when the entry was stored; which requests hit."""

    def __init__(self, replay: CacheReplay) -> None:
        self.replay = replay
        self.stored: dict[tuple[str, str], Any] = {}
        self.hit_requests: set[str] = set()
        self.seen_requests: set[str] = set()

    def _slot(self, event: UsageEvent) -> tuple[str, str] | None:
        if event.prompt_hash is None or event.cache == "bypass":
            return None
        partition = cache_scope_value(self.replay.scope, key_id=event.key_id, tags=event.tags)
        return partition, event.prompt_hash

    def is_hit(self, event: UsageEvent) -> bool:
        """Decided at a request's first replayed event; its later attempts follow."""
        if event.request_id in self.seen_requests:
            return event.request_id in self.hit_requests
        self.seen_requests.add(event.request_id)
        slot = self._slot(event)
        stored_at = self.stored.get(slot) if slot is not None else None
        if stored_at is not None and (event.started_at - stored_at).total_seconds() <= self.replay.ttl_seconds:
            self.hit_requests.add(event.request_id)
            return True
        return False

    def store(self, event: UsageEvent) -> None:
        """An answered event fills its slot (the gateway stores answers, never errors or rejected answers)."""
        slot = self._slot(event)
        if slot is not None and event.status == "ok" and event.error_type != "cascade_escalated":
            self.stored[slot] = event.finished_at


def simulate(events: Iterable[UsageEvent], catalog: Catalog, policy: Policy) -> SimulationResult:
    """Re-price ``events`` (any order: replayed by finish time) under ``policy`` with ``catalog``."""
    counters = BudgetCounters()
    recorded = simulated = refused_cost = avoided = ZERO
    refused = count = 0
    by_model: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"recorded": ZERO, "simulated": ZERO})
    unpriced: dict[str, int] = defaultdict(int)
    cache = _CacheState(policy.cache) if policy.cache is not None else None
    for event in sorted(events, key=lambda e: (e.finished_at, e.event_id)):
        if event.status in ("rejected", "cached") or not event.effective_cost:
            continue
        count += 1
        old_model = event.served_model or event.requested_model
        new_model = policy.models.get(old_model, old_model)
        recorded += event.effective_cost
        by_model[old_model]["recorded"] += event.effective_cost
        touched = new_model in policy.repriced_models or (event.provider or "") in policy.repriced_providers
        if new_model == old_model and not touched:
            cost = event.effective_cost
        else:
            usage = TokenUsage(
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cache_read_tokens=event.cache_read_tokens,
                cache_write_tokens=event.cache_write_tokens,
            )
            try:
                cost = catalog.price(usage, new_model, at=event.finished_at).effective_cost
            except MarginError:  # a model the catalog cannot price: keep the recorded cost, and say so
                unpriced[new_model] += 1
                cost = event.effective_cost
        if cache is not None and cache.is_hit(event):
            avoided += cost
            continue
        if policy.budgets:
            applied = applicable_budgets(
                policy.budgets, RequestScope(key_id=event.key_id, tags=event.tags, model=new_model), event.finished_at
            )
            held = counters.try_reserve(event.event_id, applied, cost)
            if held is None:
                refused += 1
                refused_cost += cost
                continue
            counters.settle(held, cost)
        if cache is not None:
            cache.store(event)
        simulated += cost
        by_model[new_model]["simulated"] += cost
    return SimulationResult(
        count,
        recorded,
        simulated,
        refused,
        refused_cost,
        dict(by_model),
        dict(unpriced),
        assumptions=(*ASSUMPTIONS, CACHE_ASSUMPTION) if cache is not None else ASSUMPTIONS,
        cache_hits=len(cache.hit_requests) if cache is not None else 0,
        cache_avoided=avoided,
    )
