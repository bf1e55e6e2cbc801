"""Self-hosting vs API break-even with a token-throughput capacity model.

Seed 002 ("The Self-Hosting Breakeven Analysis") gives ``SelfHostingAnalysis``; this model keeps its
parameter names and fixes its arithmetic. Month = 30 days (2,592,000 s, 720 h), as in the seed.

    G  = gpu_hourly_cost * 24 * 30 * num_gpus             monthly cost of one GPU set
    F  = engineering_monthly + infrastructure_monthly      overhead that does not scale with GPUs
    monthly_fixed_cost = G + F                              (the seed's figure: one set plus overhead)
    C  = output_tokens_per_sec_per_system * gpu_utilization * 2,592,000 / avg_output_tokens_per_request
                                                            requests one GPU set serves per month
    sets(V) = max(1, ceil(V / C))                           whole copies of the GPU set needed for V
    self_hosted(V) = F + G * sets(V) + m * V                m = marginal_cost_per_request
    api(V) = a * V                                          a = api_cost_per_request

Break-even is the smallest V with self_hosted(V) <= api(V). Within k sets the crossing is
V*_k = (F + k G) / (a - m), valid when it lies in ((k-1) C, k C], i.e. when k d >= F with
d = (a - m) C - G (what one full set earns over the API). Hence:

    a <= m                 never (each request costs self-hosting at least as much as the API)
    d < 0, or d = 0 < F    never (a full GPU set costs at least what the API charges for its traffic)
    otherwise              k = max(1, ceil(F / d)), break-even V = (F + k G) / (a - m)

Adding a set makes cost jump by G, so right after a new set the API can be cheaper again; from
j = max(1, ceil((F + G) / d)) sets on (V >= (F + j G) / (a - m)) self-hosting is no dearer at every volume.

To keep the segment tests exact, capacity is carried as the pair (output tokens per month, tokens per
request) and compared by products, never through a rounded quotient. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal, localcontext
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..errors import ScenarioError
from ..money import ZERO, format_usd
from ..pricing.rates import ModelRate
from ._base import (
    Column,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosDecimal,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    ceil_div,
    percent,
)
from ._prices import ModelPrice, ModelRef, request_cost, resolve_ref

__all__ = [
    "HOURS_PER_MONTH",
    "MODEL",
    "SECONDS_PER_MONTH",
    "BreakevenResult",
    "BreakevenScenario",
    "BreakevenSolution",
    "ModelPrice",
    "SelfHostingEconomics",
    "solve_breakeven",
]

SECONDS_PER_MONTH = 3600 * 24 * 30  # 2,592,000: a 30-day month, as in the seed
HOURS_PER_MONTH = 24 * 30  # 720
DEFAULT_MARGINAL_COST = Decimal("0.0001")  # the seed's marginal_cost_per_request constant
SWEEP_FACTORS = (
    Decimal("0.1"),
    Decimal("0.2"),
    Decimal("0.5"),
    Decimal(1),
    Decimal(2),
    Decimal(5),
    Decimal(10),
)
OUTPUT_FACTORS = (Decimal("0.5"), Decimal(1), Decimal(2))
UTILIZATION_LEVELS = (Decimal("0.25"), Decimal("0.5"), Decimal("0.75"), Decimal(1))

# Products of scenario inputs stay exact at this precision; only true divisions round.
_CTX = Context(prec=60)

# A share that must be strictly positive: zero utilization would mean zero capacity.
Utilization = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


# -- scenario ---------------------------------------------------------------------------------------


class BreakevenScenario(Scenario):
    # API side: a flat price per request (the seed's field), or a model priced per token.
    api_cost_per_request: NonNegDecimal | None = None
    api_model: ModelRef | None = None
    avg_input_tokens: NonNegDecimal | None = None
    # Self-hosting side (the seed's SelfHostingAnalysis fields, unchanged).
    gpu_hourly_cost: NonNegDecimal
    num_gpus: PosInt
    gpu_utilization: Utilization
    engineering_monthly: NonNegDecimal
    infrastructure_monthly: NonNegDecimal
    output_tokens_per_sec_per_system: PosDecimal
    avg_output_tokens_per_request: PosDecimal
    marginal_cost_per_request: NonNegDecimal = DEFAULT_MARGINAL_COST
    # Optional: the volume you expect, and the volumes of the cost sweep.
    monthly_requests: NonNegDecimal | None = None
    sweep_volumes: Annotated[list[NonNegDecimal], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check_api_side(self) -> BreakevenScenario:
        # Cross-field problems raise ScenarioError (not ValueError) so the error names the field itself.
        if (self.api_cost_per_request is None) == (self.api_model is None):
            raise ScenarioError(
                "give exactly one of api_cost_per_request (USD per request) or api_model "
                "(a catalog name or {name, input_per_mtok, output_per_mtok}) with avg_input_tokens",
                field="api_cost_per_request" if self.api_model is not None else "api_model",
            )
        if self.api_model is not None and self.avg_input_tokens is None:
            raise ScenarioError(
                "api_model prices each request from its tokens: give avg_input_tokens "
                "(0 to price output tokens only, as the seed does)",
                field="avg_input_tokens",
            )
        if self.api_model is None and self.avg_input_tokens is not None:
            raise ScenarioError(
                "avg_input_tokens is only used with api_model; with api_cost_per_request the price per "
                "request is already given, so remove avg_input_tokens",
                field="avg_input_tokens",
            )
        return self


# -- the economics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfHostingEconomics:
    """The self-hosting cost curve. Capacity is ``output_tokens_per_month / avg_output_tokens``."""

    overhead_monthly: Decimal  # F: engineering + infrastructure, independent of GPU count
    set_monthly_cost: Decimal  # G: one GPU set for a month
    marginal_cost_per_request: Decimal  # m
    output_tokens_per_month: Decimal  # tokens/s * utilization * 2,592,000 for one set
    avg_output_tokens: Decimal  # L

    @classmethod
    def build(
        cls,
        *,
        gpu_hourly_cost: Decimal,
        num_gpus: int,
        gpu_utilization: Decimal,
        engineering_monthly: Decimal,
        infrastructure_monthly: Decimal,
        output_tokens_per_sec_per_system: Decimal,
        avg_output_tokens_per_request: Decimal,
        marginal_cost_per_request: Decimal,
    ) -> SelfHostingEconomics:
        with localcontext(_CTX):
            return cls(
                overhead_monthly=engineering_monthly + infrastructure_monthly,
                set_monthly_cost=gpu_hourly_cost * HOURS_PER_MONTH * num_gpus,
                marginal_cost_per_request=marginal_cost_per_request,
                output_tokens_per_month=output_tokens_per_sec_per_system * gpu_utilization * SECONDS_PER_MONTH,
                avg_output_tokens=avg_output_tokens_per_request,
            )

    @property
    def capacity(self) -> Decimal:
        """Requests per month one GPU set serves (the seed's ``requests_per_gpu_month``)."""
        with localcontext(_CTX):
            return self.output_tokens_per_month / self.avg_output_tokens

    def sets_needed(self, volume: Decimal) -> int:
        """Whole GPU sets for ``volume`` requests/month; at least one (the service is up even when idle)."""
        with localcontext(_CTX):
            return max(1, ceil_div(volume * self.avg_output_tokens, self.output_tokens_per_month))

    def self_hosted_cost(self, volume: Decimal) -> Decimal:
        with localcontext(_CTX):
            return (
                self.overhead_monthly
                + self.set_monthly_cost * self.sets_needed(volume)
                + self.marginal_cost_per_request * volume
            )

    def top_of_segment(self, sets: int) -> Decimal:
        """The largest volume ``sets`` GPU sets serve, rounded down so it never needs one more set."""
        with localcontext(_CTX) as c:
            c.rounding = ROUND_FLOOR
            return sets * self.output_tokens_per_month / self.avg_output_tokens


NeverReason = Literal["api_not_above_marginal", "set_dearer_than_api"]


@dataclass(frozen=True)
class BreakevenSolution:
    """Where self-hosting first becomes no dearer than the API, and where it stays so."""

    breakeven_requests: Decimal | None
    breakeven_sets: int | None
    sustained_requests: Decimal | None
    sustained_sets: int | None
    never: NeverReason | None


def solve_breakeven(econ: SelfHostingEconomics, api_cost_per_request: Decimal) -> BreakevenSolution:
    """Smallest volume V with ``econ.self_hosted_cost(V) <= api_cost_per_request * V``, segment by segment."""
    with localcontext(_CTX):
        f, g, m = econ.overhead_monthly, econ.set_monthly_cost, econ.marginal_cost_per_request
        tokens, length = econ.output_tokens_per_month, econ.avg_output_tokens
        margin = api_cost_per_request - m
        if margin <= 0:
            return BreakevenSolution(None, None, None, None, "api_not_above_marginal")
        # length * d, where d = margin * C - G is what one full set saves over the API: exact products.
        d_scaled = margin * tokens - g * length
        if d_scaled < 0 or (d_scaled == 0 and f > 0):
            return BreakevenSolution(None, None, None, None, "set_dearer_than_api")
        if d_scaled == 0:
            # No overhead and a full set exactly as dear as the API: ties at every whole number of sets only.
            return BreakevenSolution(econ.top_of_segment(1), 1, None, None, None)
        k = max(1, ceil_div(f * length, d_scaled))
        j = max(1, ceil_div((f + g) * length, d_scaled))
        return BreakevenSolution(_crossing(econ, margin, k), k, _crossing(econ, margin, j), j, None)


def _crossing(econ: SelfHostingEconomics, margin: Decimal, sets: int) -> Decimal:
    volume = (econ.overhead_monthly + sets * econ.set_monthly_cost) / margin
    # Mathematically volume <= sets * C here; guard the last digit so the volume never needs one more set.
    if econ.sets_needed(volume) > sets:
        volume = econ.top_of_segment(sets)
    return _plain(volume)


def _plain(value: Decimal) -> Decimal:
    """Whole numbers without an exponent (6.400E+7 -> 64000000), so --json shows plain figures."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


# -- result -----------------------------------------------------------------------------------------

Cheaper = Literal["self-host", "api", "tie"]


class VolumePoint(Result):
    """Both options' monthly cost at one volume."""

    monthly_requests: Decimal
    gpu_sets: int
    gpus: int
    load_of_provisioned_capacity: Decimal  # volume / (sets * capacity)
    self_hosted_cost: Decimal
    api_cost: Decimal
    cheaper: Cheaper
    self_hosted_minus_api: Decimal
    self_hosted_cost_per_request: Decimal | None  # None at zero volume


class SensitivityRow(Result):
    label: str
    avg_output_tokens_per_request: Decimal
    gpu_utilization: Decimal
    requests_per_gpu_month: Decimal
    api_cost_per_request: Decimal
    breakeven_requests: Decimal | None
    breakeven_gpus: int | None
    sustained_breakeven_requests: Decimal | None
    never_reason: str | None
    is_scenario: bool


class BreakevenResult(Result):
    # API side
    api_cost_per_request: Decimal
    api_price_source: str
    # Self-hosting costs
    gpu_set_monthly_cost: Decimal
    engineering_monthly: Decimal
    infrastructure_monthly: Decimal
    overhead_monthly: Decimal
    monthly_fixed_cost: Decimal  # one GPU set + overhead (the seed's figure)
    marginal_cost_per_request: Decimal
    num_gpus: int
    # Capacity of one GPU set
    seconds_per_month: int
    output_tokens_per_gpu_month: Decimal
    requests_per_gpu_month: Decimal
    gpu_cost_per_request_at_capacity: Decimal  # G / C
    gpu_cost_per_million_output_tokens: Decimal  # G / output tokens per month * 1e6
    api_cost_per_million_output_tokens: Decimal  # a / avg_output_tokens * 1e6 (input cost spread over output)
    # Conditions for ever breaking even
    api_price_floor: Decimal  # G / C + m: the API must charge more than this per request
    min_utilization_to_break_even: Decimal | None  # utilization making (a - m) C = G; None when a <= m
    # Break-even (capacity-aware)
    breaks_even: bool
    breakeven_requests: Decimal | None
    breakeven_gpu_sets: int | None
    breakeven_gpus: int | None
    breakeven_monthly_cost: Decimal | None
    sustained_breakeven_requests: Decimal | None
    sustained_breakeven_gpus: int | None
    never_reason: str | None
    # The seed's own formula, for comparison
    naive_breakeven_requests: Decimal | None  # monthly_fixed_cost / (a - m), capacity ignored
    naive_breakeven_within_capacity: bool | None
    # At the expected volume, the sweep and the sensitivities
    at_monthly_requests: VolumePoint | None
    sweep_basis: str
    sweep: list[VolumePoint]
    output_length_sensitivity: list[SensitivityRow]
    utilization_sensitivity: list[SensitivityRow]
    api_price_scales_with_output: str
    month_days: int = 30


# -- compute ----------------------------------------------------------------------------------------


_pct = partial(percent, places=None, sign=False)


def _never_text(
    reason: NeverReason, econ: SelfHostingEconomics, api_price: Decimal, num_gpus: int, utilization: Decimal
) -> str:
    m = econ.marginal_cost_per_request
    if reason == "api_not_above_marginal":
        relation = "equal to" if api_price == m else "below"
        return (
            f"self-hosting never breaks even: the API's price {format_usd(api_price)}/request is {relation} "
            f"self-hosting's marginal cost {format_usd(m)}/request (marginal_cost_per_request), so every "
            "extra request adds at least as much to the self-hosted bill as to the API bill and the fixed "
            "cost is never recovered"
        )
    with localcontext(_CTX):
        capacity = econ.capacity
        per_request = econ.set_monthly_cost / capacity
    return (
        f"self-hosting never breaks even: one GPU set ({num_gpus} GPUs) costs "
        f"{format_usd(econ.set_monthly_cost)}/month but serves at most {capacity:,.0f} requests/month at "
        f"{_pct(utilization)}% utilization, i.e. {format_usd(per_request)}/request for GPUs plus "
        f"{format_usd(m)} marginal = {format_usd(per_request + m)}/request, not below the API's "
        f"{format_usd(api_price)}/request. More volume only adds GPU sets that each cost more than the API "
        "charges for the traffic they carry, so the fixed overhead is never recovered"
    )


def _point(econ: SelfHostingEconomics, api_price: Decimal, volume: Decimal, num_gpus: int) -> VolumePoint:
    with localcontext(_CTX):
        sets = econ.sets_needed(volume)
        self_hosted = econ.self_hosted_cost(volume)
        api = api_price * volume
        diff = self_hosted - api
        cheaper: Cheaper = "tie" if diff == 0 else ("self-host" if diff < 0 else "api")
        return VolumePoint(
            monthly_requests=volume,
            gpu_sets=sets,
            gpus=sets * num_gpus,
            load_of_provisioned_capacity=volume / (sets * econ.capacity),
            self_hosted_cost=self_hosted,
            api_cost=api,
            cheaper=cheaper,
            self_hosted_minus_api=diff,
            self_hosted_cost_per_request=self_hosted / volume if volume > 0 else None,
        )


def _economics(s: BreakevenScenario, *, utilization: Decimal, avg_output: Decimal) -> SelfHostingEconomics:
    return SelfHostingEconomics.build(
        gpu_hourly_cost=s.gpu_hourly_cost,
        num_gpus=s.num_gpus,
        gpu_utilization=utilization,
        engineering_monthly=s.engineering_monthly,
        infrastructure_monthly=s.infrastructure_monthly,
        output_tokens_per_sec_per_system=s.output_tokens_per_sec_per_system,
        avg_output_tokens_per_request=avg_output,
        marginal_cost_per_request=s.marginal_cost_per_request,
    )


def _sensitivity_row(
    s: BreakevenScenario,
    label: str,
    econ: SelfHostingEconomics,
    api_price: Decimal,
    utilization: Decimal,
    is_scenario: bool,
) -> SensitivityRow:
    sol = solve_breakeven(econ, api_price)
    return SensitivityRow(
        label=label,
        avg_output_tokens_per_request=econ.avg_output_tokens,
        gpu_utilization=utilization,
        requests_per_gpu_month=econ.capacity,
        api_cost_per_request=api_price,
        breakeven_requests=sol.breakeven_requests,
        breakeven_gpus=None if sol.breakeven_sets is None else sol.breakeven_sets * s.num_gpus,
        sustained_breakeven_requests=sol.sustained_requests,
        never_reason=None if sol.never is None else _never_text(sol.never, econ, api_price, s.num_gpus, utilization),
        is_scenario=is_scenario,
    )


def compute(s: BreakevenScenario, ctx: PlanContext) -> BreakevenResult:
    with localcontext(_CTX):
        rate: ModelRate | None = None
        if s.api_model is not None:
            rate = resolve_ref(s.api_model, ctx)
            assert s.avg_input_tokens is not None  # checked by the scenario
            api_price = request_cost(rate, s.avg_input_tokens, s.avg_output_tokens_per_request).effective_usd
            price_source = (
                f"{rate.model}: {s.avg_input_tokens:,} input + "
                f"{s.avg_output_tokens_per_request:,} output tokens "
                f"at ${rate.input_per_mtok}/${rate.output_per_mtok} per 1M"
                + (f", {_pct(rate.discount)}% discount" if rate.discount else "")
            )
            scales = "repriced from api_model's per-token prices at each output length (input tokens unchanged)"
        else:
            assert s.api_cost_per_request is not None
            api_price = s.api_cost_per_request
            price_source = "api_cost_per_request (given)"
            scales = (
                "api_cost_per_request scaled in proportion to output length (the seed's approximation: "
                "the API price is treated as all output tokens); give api_model to reprice input and "
                "output exactly"
            )

        u, length = s.gpu_utilization, s.avg_output_tokens_per_request
        econ = _economics(s, utilization=u, avg_output=length)
        capacity = econ.capacity
        g, m = econ.set_monthly_cost, econ.marginal_cost_per_request
        margin = api_price - m
        sol = solve_breakeven(econ, api_price)
        never_reason = None if sol.never is None else _never_text(sol.never, econ, api_price, s.num_gpus, u)

        fixed = g + econ.overhead_monthly
        naive = _plain(fixed / margin) if margin > 0 else None
        min_util = None
        if margin > 0:
            min_util = g * length / (margin * s.output_tokens_per_sec_per_system * SECONDS_PER_MONTH)

        at_volume = None
        if s.monthly_requests is not None:
            at_volume = _point(econ, api_price, s.monthly_requests, s.num_gpus)

        if s.sweep_volumes is not None:
            volumes, basis = list(s.sweep_volumes), "sweep_volumes (given)"
        else:
            if sol.breakeven_requests is not None and sol.breakeven_requests > 0:
                center, basis = sol.breakeven_requests, "the break-even volume"
            elif s.monthly_requests is not None and s.monthly_requests > 0:
                center, basis = s.monthly_requests, "monthly_requests"
            else:
                center, basis = capacity, "one GPU set's capacity"
            volumes = [center * f for f in SWEEP_FACTORS]
            basis = f"1/10x to 10x of {basis}"
        sweep = [_point(econ, api_price, v, s.num_gpus) for v in volumes]

        output_rows = []
        for factor in OUTPUT_FACTORS:
            out = length * factor
            if rate is not None:
                assert s.avg_input_tokens is not None
                price = request_cost(rate, s.avg_input_tokens, out).effective_usd
            else:
                price = api_price * factor
            output_rows.append(
                _sensitivity_row(
                    s,
                    f"x{factor:g} output",
                    _economics(s, utilization=u, avg_output=out),
                    price,
                    u,
                    factor == 1,
                )
            )
        levels = sorted({*UTILIZATION_LEVELS, u})
        util_rows = [
            _sensitivity_row(
                s,
                f"{_pct(level)}% utilization",
                _economics(s, utilization=level, avg_output=length),
                api_price,
                level,
                level == u,
            )
            for level in levels
        ]

        be_sets = sol.breakeven_sets
        return BreakevenResult(
            api_cost_per_request=api_price,
            api_price_source=price_source,
            gpu_set_monthly_cost=g,
            engineering_monthly=s.engineering_monthly,
            infrastructure_monthly=s.infrastructure_monthly,
            overhead_monthly=econ.overhead_monthly,
            monthly_fixed_cost=fixed,
            marginal_cost_per_request=m,
            num_gpus=s.num_gpus,
            seconds_per_month=SECONDS_PER_MONTH,
            output_tokens_per_gpu_month=econ.output_tokens_per_month,
            requests_per_gpu_month=capacity,
            gpu_cost_per_request_at_capacity=g / capacity,
            gpu_cost_per_million_output_tokens=g / econ.output_tokens_per_month * 1_000_000,
            api_cost_per_million_output_tokens=api_price / length * 1_000_000,
            api_price_floor=g / capacity + m,
            min_utilization_to_break_even=min_util,
            breaks_even=sol.breakeven_requests is not None,
            breakeven_requests=sol.breakeven_requests,
            breakeven_gpu_sets=be_sets,
            breakeven_gpus=None if be_sets is None else be_sets * s.num_gpus,
            breakeven_monthly_cost=(
                None if sol.breakeven_requests is None else econ.self_hosted_cost(sol.breakeven_requests)
            ),
            sustained_breakeven_requests=sol.sustained_requests,
            sustained_breakeven_gpus=None if sol.sustained_sets is None else sol.sustained_sets * s.num_gpus,
            never_reason=never_reason,
            naive_breakeven_requests=naive,
            naive_breakeven_within_capacity=None if naive is None else naive <= capacity,
            at_monthly_requests=at_volume,
            sweep_basis=basis,
            sweep=sweep,
            output_length_sensitivity=output_rows,
            utilization_sensitivity=util_rows,
            api_price_scales_with_output=scales,
        )


# -- report -----------------------------------------------------------------------------------------


def _volume_row(p: VolumePoint) -> tuple[Any, ...]:
    return (
        p.monthly_requests,
        p.gpu_sets,
        p.gpus,
        p.load_of_provisioned_capacity,
        p.self_hosted_cost,
        p.api_cost,
        p.cheaper,
        p.self_hosted_minus_api,
    )


_VOLUME_COLUMNS = (
    Column("Requests/month", "int"),
    Column("GPU sets", "int"),
    Column("GPUs", "int"),
    Column("Load of provisioned capacity", "pct"),
    Column("Self-hosted", "usd", "$/month"),
    Column("API", "usd", "$/month"),
    Column("Cheaper", "text"),
    Column("Self-hosted - API", "usd", "$/month"),
)

_SENSITIVITY_COLUMNS = (
    Column("Case", "text"),
    Column("Avg output", "num", "tokens/request"),
    Column("Utilization", "pct"),
    Column("Capacity per set", "int", "requests/month"),
    Column("API price", "usd", "$/request"),
    Column("Break-even", "int", "requests/month"),
    Column("Break-even GPUs", "int"),
    Column("Cheaper at every volume above", "int", "requests/month"),
    Column("Verdict", "text"),
)


def _sensitivity_table(title: str, rows: list[SensitivityRow]) -> Table:
    return Table(
        title,
        _SENSITIVITY_COLUMNS,
        tuple(
            (
                r.label + (" (scenario)" if r.is_scenario else ""),
                r.avg_output_tokens_per_request,
                r.gpu_utilization,
                r.requests_per_gpu_month,
                r.api_cost_per_request,
                r.breakeven_requests,
                r.breakeven_gpus,
                r.sustained_breakeven_requests,
                "breaks even" if r.never_reason is None else "never breaks even",
            )
            for r in rows
        ),
    )


def report(r: BreakevenResult) -> Report:
    costs = Table(
        "Costs",
        (Column("Item", "text"), Column("Amount", "usd"), Column("Per", "text")),
        (
            (f"GPU set ({r.num_gpus} GPUs x 720 h)", r.gpu_set_monthly_cost, "month"),
            ("Engineering", r.engineering_monthly, "month"),
            ("Infrastructure", r.infrastructure_monthly, "month"),
            ("Fixed cost with one GPU set", r.monthly_fixed_cost, "month"),
            ("API price", r.api_cost_per_request, "request"),
            ("Self-hosting marginal cost", r.marginal_cost_per_request, "request"),
            ("GPU cost at full set capacity", r.gpu_cost_per_request_at_capacity, "request"),
            ("API price needed to ever break even (more than)", r.api_price_floor, "request"),
        ),
    )
    volumes = Table(
        "Capacity and break-even",
        (Column("Figure", "text"), Column("Volume", "int", "requests/month"), Column("GPUs", "int")),
        (
            ("Capacity of one GPU set", r.requests_per_gpu_month, r.num_gpus),
            (
                "Break-even (first volume where self-hosting is no dearer)",
                r.breakeven_requests,
                r.breakeven_gpus,
            ),
            (
                "Self-hosting no dearer at every volume above",
                r.sustained_breakeven_requests,
                r.sustained_breakeven_gpus,
            ),
            (
                "Seed-style break-even: fixed / (API - marginal), capacity ignored",
                r.naive_breakeven_requests,
                None,
            ),
        ),
    )
    tables = [costs, volumes]
    if r.at_monthly_requests is not None:
        tables.append(Table("At your monthly_requests", _VOLUME_COLUMNS, (_volume_row(r.at_monthly_requests),)))
    sweep_index = len(tables)
    tables.append(
        Table(
            f"Monthly cost by volume ({r.sweep_basis})",
            _VOLUME_COLUMNS,
            tuple(_volume_row(p) for p in r.sweep),
        )
    )
    tables.append(_sensitivity_table("Output-length sensitivity", r.output_length_sensitivity))
    tables.append(_sensitivity_table("Utilization sensitivity", r.utilization_sensitivity))

    notes = [
        f"API price: {format_usd(r.api_cost_per_request)}/request from {r.api_price_source}.",
        f"One GPU set serves {r.requests_per_gpu_month:,.0f} requests/month "
        f"({r.output_tokens_per_gpu_month:,.0f} output tokens/month at the given throughput and utilization, "
        "divided by the average output length); more volume needs whole extra sets of "
        f"{r.num_gpus} GPU(s) at {format_usd(r.gpu_set_monthly_cost)}/month each.",
        "Capacity is proportional to utilization and inversely proportional to output length: halving the "
        "average reply doubles the requests a set serves.",
        f"Self-hosting can only win if the API charges more than {format_usd(r.api_price_floor)}/request "
        f"(GPU cost at full capacity {format_usd(r.gpu_cost_per_request_at_capacity)} + marginal "
        f"{format_usd(r.marginal_cost_per_request)}).",
        f"Per 1M output tokens a fully loaded GPU set costs "
        f"{format_usd(r.gpu_cost_per_million_output_tokens)} against the API's "
        f"{format_usd(r.api_cost_per_million_output_tokens)} (API price per request / average "
        "output tokens): when the API is priced per token, this comparison, not the output length, decides "
        "whether self-hosting can ever win.",
        "Month = 30 days (2,592,000 s, 720 GPU-hours).",
    ]
    warnings: list[str] = []
    if r.breakeven_requests is not None and r.breakeven_monthly_cost is not None:
        gpu_part = r.breakeven_gpu_sets * r.gpu_set_monthly_cost if r.breakeven_gpu_sets else ZERO
        share = gpu_part / r.breakeven_monthly_cost if r.breakeven_monthly_cost else ZERO
        notes.append(
            f"Break-even at {r.breakeven_requests:,.0f} requests/month on {r.breakeven_gpus} GPU(s), "
            f"where both options cost {format_usd(r.breakeven_monthly_cost)}/month; GPUs are "
            f"{share * 100:.0f}% of the self-hosted bill there."
        )
        if r.sustained_breakeven_requests is not None and r.sustained_breakeven_requests > r.breakeven_requests:
            warnings.append(
                "Adding a GPU set makes the self-hosted cost jump, so the API is cheaper again just above "
                "some multiples of set capacity; self-hosting is no dearer at every volume only above "
                f"{r.sustained_breakeven_requests:,.0f} requests/month."
            )
    if r.never_reason is not None:
        warnings.append(r.never_reason + ".")
        if r.min_utilization_to_break_even is not None:
            if r.min_utilization_to_break_even >= 1:
                warnings.append(
                    "Even at 100% utilization a GPU set would not beat the API: it needs more throughput per "
                    "dollar, shorter replies, or a dearer API to displace."
                )
            else:
                warnings.append(
                    f"A GPU set would need more than {r.min_utilization_to_break_even * 100:.0f}% "
                    "utilization to ever beat the API at this throughput and output length."
                )
    if r.naive_breakeven_requests is not None and r.naive_breakeven_within_capacity is False:
        warnings.append(
            f"The seed's formula (fixed / (API - marginal)) gives {r.naive_breakeven_requests:,.0f} "
            f"requests/month, more than one GPU set's capacity of {r.requests_per_gpu_month:,.0f}: at that "
            "volume you would be paying for more GPU sets than the formula counts."
        )
    warnings.append(f"Output-length sensitivity: {r.api_price_scales_with_output}.")
    return Report(
        title="Self-hosting vs API break-even",
        tables=tuple(tables),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=sweep_index,
    )


EXAMPLE = """\
# Self-hosting a Llama 3.1 70B-class model on 2x A100 80GB vs a cheap open-weight API
# (seed 002, "The Self-Hosting Breakeven Analysis", long-reply regime).
api_cost_per_request: 0.000425     # $/request: 500 output tokens at $0.85 per 1M output tokens
# ...or price it per token instead of api_cost_per_request (a catalog name works too):
# api_model: {name: llama-4-maverick, input_per_mtok: 0, output_per_mtok: 0.85}
# avg_input_tokens: 0
gpu_hourly_cost: 2.50              # $ per GPU-hour
num_gpus: 2                        # GPUs in one serving set (a 70B model needs 2 x 80GB)
gpu_utilization: 0.50              # share of the set's peak throughput you actually use
engineering_monthly: 1500          # 0.1 FTE for operations
infrastructure_monthly: 500        # networking, monitoring, storage
output_tokens_per_sec_per_system: 2000   # aggregate decode throughput of the set (continuous batching)
avg_output_tokens_per_request: 500       # the key swing factor: capacity = tokens/month / this
marginal_cost_per_request: 0.0001  # electricity and wear per request (the seed's constant)
monthly_requests: 5000000          # your expected volume (optional)
# Short-reply regime: avg_output_tokens_per_request: 100 and api_cost_per_request: 0.000085.
# Premium API ($25 per 1M output): api_cost_per_request: 0.0125 -> breaks even near 452k requests/month.
"""

MODEL = PlannerModel(
    name="breakeven",
    summary="Self-hosting vs API: capacity-aware break-even, GPUs needed, cost sweep and sensitivities",
    scenario_type=BreakevenScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="breakeven",
)
