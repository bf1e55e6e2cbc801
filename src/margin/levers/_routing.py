"""Route rules: a tier -> model map, the routing decision, cascades upward and budget downgrades downward.

Pure functions over public model names (the gateway's ``model_list`` names). Money is Decimal, never float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..errors import ConfigError
from ._complexity import ComplexityScore, Tier

__all__ = [
    "TIERS",
    "RouteDecision",
    "TierMap",
    "cascade_order",
    "choose_model",
    "downgrade_order",
    "downgrade_to_fit",
]

TIERS: tuple[Tier, ...] = ("simple", "standard", "complex")


@dataclass(frozen=True)
class TierMap:
    """The public model serving each tier. One model may serve several tiers (``standard`` = ``complex``)."""

    simple: str
    standard: str
    complex: str

    def __post_init__(self) -> None:
        for tier in TIERS:
            value = getattr(self, tier)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"tier map: '{tier}' needs a model name, got {value!r}.")

    def model_for(self, tier: Tier) -> str:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}.")
        return str(getattr(self, tier))

    def tier_of(self, model: str) -> Tier | None:
        """The lowest tier served by ``model``, or None if the map does not name it."""
        for tier in TIERS:
            if self.model_for(tier) == model:
                return tier
        return None


@dataclass(frozen=True)
class RouteDecision:
    """The model to call, the tier it stands for, and why (a readable sentence for logs and headers).

    ``pinned`` is True when the client named a concrete model and routing kept it.
    """

    model: str
    tier: Tier
    reason: str
    pinned: bool = False


def choose_model(score: ComplexityScore, tier_map: TierMap, *, pinned: str | None = None) -> RouteDecision:
    """The model for ``score``'s tier, unless the request ``pinned`` a model: a pinned model is always kept
    (routing only chooses for requests that leave the choice to margin). A pinned model reports the lowest tier
    it serves in ``tier_map``, or the score's tier if the map does not name it."""
    if pinned:
        tier = tier_map.tier_of(pinned) or score.tier
        return RouteDecision(
            model=pinned,
            tier=tier,
            reason=f"model {pinned!r} pinned by the request (complexity {score.score:.4g}, {score.tier})",
            pinned=True,
        )
    model = tier_map.model_for(score.tier)
    return RouteDecision(
        model=model, tier=score.tier, reason=f"complexity {score.score:.4g} -> {score.tier} tier -> {model!r}"
    )


def _unique(models: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(models))


def cascade_order(tier: Tier, tier_map: TierMap) -> tuple[str, ...]:
    """Models to try, cheapest first, from ``tier`` upward (duplicates removed): a cascade answers with the
    first model whose answer passes validation, escalating only when it does not."""
    start = TIERS.index(tier) if tier in TIERS else -1
    if start < 0:
        raise ValueError(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}.")
    return _unique([tier_map.model_for(t) for t in TIERS[start:]])


def downgrade_order(tier: Tier, tier_map: TierMap) -> tuple[str, ...]:
    """Models from ``tier`` downward (the chosen one first, then cheaper ones): the order
    :func:`downgrade_to_fit` walks when a budget cannot afford the chosen model."""
    start = TIERS.index(tier) if tier in TIERS else -1
    if start < 0:
        raise ValueError(f"unknown tier {tier!r}; tiers: {', '.join(TIERS)}.")
    return _unique([tier_map.model_for(t) for t in reversed(TIERS[: start + 1])])


def downgrade_to_fit(
    order_of_tiers: Sequence[str],
    worst_case_cost_by_model: Mapping[str, Decimal],
    headroom: Decimal | None,
) -> tuple[str, bool]:
    """The first model of ``order_of_tiers`` (preferred first, e.g. :func:`downgrade_order`) whose worst-case
    cost fits in ``headroom``, and whether that is a downgrade from the first.

    * ``headroom`` None (no budget applies): the first model, not downgraded.
    * Nothing fits: the first model, not downgraded; the gateway's budget check then refuses the request with
      its usual message instead of silently calling a model the budget cannot afford either.

    A cost equal to the headroom fits (the budget check reserves ``spent + cost <= limit``).
    """
    if not order_of_tiers:
        raise ValueError("downgrade_to_fit needs at least one model.")
    first = order_of_tiers[0]
    if headroom is None:
        return first, False
    _require_decimal(headroom, "headroom")
    for model in order_of_tiers:
        if model not in worst_case_cost_by_model:
            raise ValueError(f"no worst-case cost for model {model!r}.")
        cost = _require_decimal(worst_case_cost_by_model[model], f"worst-case cost of {model!r}")
        if cost <= headroom:
            return model, model != first
    return first, False


def _require_decimal(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal (money is never a float), got {type(value).__name__}.")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, got {value}.")
    return value
