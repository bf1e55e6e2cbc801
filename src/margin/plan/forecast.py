"""Bottom-up AI budget: product usage x unit cost + new projects + contingency - efficiency gains.

Seed 002, Spot the Problem 3 ("AI costs last year: $1.2M. Budget for next year: $1.5M (25% growth
buffer)" is the naive budget; the better approach forecasts usage by product, applies unit costs, adds
planned projects, sets an efficiency target and adds 10-15% contingency).

Definitions (month m = 1..N, N = ``months``; a year is 12 months, this model is monthly by nature):

* usage[p, m]    = monthly_requests[p] * (1 + monthly_growth[p]) ** (m - 1)  (month 1 = current run-rate)
* gross[p, m]    = usage[p, m] * unit_cost[p]                                (today's unit cost)
* factor[m]      = (1 - efficiency_target) ** ((m - 1) / (N - 1))            (1 in month 1, 1 - E in month N)
  i.e. the unit cost falls by the same monthly rate r = 1 - (1 - E) ** (1 / (N - 1)) every month;
* efficiency[m]  = -(sum_p gross[p, m]) * (1 - factor[m])                    (reported negative)
* projects[m]    = sum of monthly_cost of the new projects with start_month_index <= m
* contingency[m] = contingency * (sum_p gross[p, m] * factor[m] + projects[m])
* total[m]       = sum_p gross[p, m] + efficiency[m] + projects[m] + contingency[m]

Efficiency applies to product unit costs only (a new project's monthly cost is already an estimate);
contingency applies to the product cost after efficiency plus the new projects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import partial
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..money import MONEY_CONTEXT, ZERO, format_usd
from ._base import (
    Column,
    Fraction,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    percent,
)
from ._prices import ModelPrice, ModelRef, PriceUsed, prices_note, request_cost, resolve_ref

__all__ = [
    "MODEL",
    "ForecastResult",
    "ForecastScenario",
    "ModelPrice",
    "MonthRow",
    "NewProject",
    "Product",
    "compute",
    "efficiency_factor",
    "report",
]

MONTHS_PER_YEAR = 12
# A monthly growth rate: -1 (usage gone) or more; 0.08 = +8% a month, compounding.
Growth = Annotated[Decimal, Field(ge=-1, allow_inf_nan=False)]
# A unit-cost reduction reached by the end of the horizon: 1 (free) is not a target.
Reduction = Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)]
_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
SEED_CONTINGENCY_LOW = Decimal("0.10")
SEED_CONTINGENCY_HIGH = Decimal("0.15")


# --------------------------------------------------------------------------------------------- scenario


class Product(Scenario):
    """A product or feature with its current monthly usage and cost per request."""

    name: str = Field(min_length=1)
    monthly_requests: NonNegDecimal
    unit_cost: NonNegDecimal | None = None
    model: ModelRef | None = None
    input_tokens: NonNegDecimal | None = None
    output_tokens: NonNegDecimal | None = None
    monthly_growth: Growth = Decimal(0)

    @model_validator(mode="after")
    def _one_price(self) -> Product:
        if self.unit_cost is not None and self.model is not None:
            raise ValueError("unit_cost: give either unit_cost or model with input_tokens and output_tokens, not both")
        if self.unit_cost is None and self.model is None:
            raise ValueError(
                "unit_cost: missing; give unit_cost (USD per request) or model with input_tokens and output_tokens"
            )
        if self.model is None and (self.input_tokens is not None or self.output_tokens is not None):
            raise ValueError("input_tokens: token counts are only used with model; remove them or use model")
        if self.model is not None:
            for name in ("input_tokens", "output_tokens"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: is required when the product is priced by model")
        return self


class NewProject(Scenario):
    """A planned project: a flat monthly cost from its start month to the end of the horizon."""

    name: str = Field(min_length=1)
    start_month_index: PosInt = 1
    monthly_cost: NonNegDecimal


class ForecastScenario(Scenario):
    months: Annotated[int, Field(gt=0, le=120)] = 12
    start_month: str | None = None
    products: tuple[Product, ...] = ()
    new_projects: tuple[NewProject, ...] = ()
    contingency: Fraction = SEED_CONTINGENCY_LOW
    efficiency_target: Reduction = Decimal(0)
    last_year_spend: NonNegDecimal | None = None
    naive_growth_buffer: NonNegDecimal | None = None

    @field_validator("start_month")
    @classmethod
    def _check_start(cls, value: str | None) -> str | None:
        if value is not None and not _MONTH_RE.match(value):
            raise ValueError("must be YYYY-MM, e.g. 2026-01")
        return value

    @field_validator("products")
    @classmethod
    def _unique_products(cls, products: tuple[Product, ...]) -> tuple[Product, ...]:
        names = [p.name for p in products]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"name {', '.join(duplicates)} is used twice; product names must differ")
        return products

    @field_validator("new_projects")
    @classmethod
    def _check_projects(cls, projects: tuple[NewProject, ...], info: ValidationInfo) -> tuple[NewProject, ...]:
        names = [p.name for p in projects] + [p.name for p in info.data.get("products", ())]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"name {', '.join(duplicates)} is used twice; project and product names must differ")
        months = info.data.get("months")
        if months is not None:
            late = [p for p in projects if p.start_month_index > months]
            if late:
                first = late[0]
                raise ValueError(
                    f"{first.name!r} starts in month {first.start_month_index}, after the "
                    f"{months}-month horizon; lower start_month_index or raise months"
                )
        return projects

    @field_validator("efficiency_target")
    @classmethod
    def _check_efficiency(cls, target: Decimal, info: ValidationInfo) -> Decimal:
        if target > 0 and info.data.get("months") == 1:
            raise ValueError(
                "needs months >= 2; month 1 runs at today's unit cost and the target is reached in the last month"
            )
        return target

    @field_validator("naive_growth_buffer")
    @classmethod
    def _check_buffer(cls, buffer: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if buffer is not None and info.data.get("last_year_spend") is None and "last_year_spend" in info.data:
            raise ValueError("only meaningful with last_year_spend; add last_year_spend")
        return buffer

    @model_validator(mode="after")
    def _not_empty(self) -> ForecastScenario:
        if not self.products and not self.new_projects:
            raise ValueError("products: the forecast is empty; add at least one product or new project")
        return self


# --------------------------------------------------------------------------------------------- result


class ProductMonth(Result):
    name: str
    requests: Decimal
    unit_cost: Decimal  # after the month's efficiency factor
    gross_cost: Decimal  # at today's unit cost
    net_cost: Decimal  # after efficiency


class MonthRow(Result):
    month: int
    label: str
    products: tuple[ProductMonth, ...]
    efficiency_factor: Decimal
    gross_product_cost: Decimal
    efficiency_gain: Decimal  # negative (or zero)
    net_product_cost: Decimal
    new_projects_cost: Decimal
    contingency: Decimal
    total: Decimal
    cumulative_total: Decimal


class YearRow(Result):
    year: int
    label: str
    months: int
    requests: Decimal
    gross_product_cost: Decimal
    efficiency_gain: Decimal
    new_projects_cost: Decimal
    contingency: Decimal
    total: Decimal


class LineShare(Result):
    """A product's or project's part of the horizon, with its contingency loading."""

    name: str
    kind: str  # "product" or "new project"
    current_unit_cost: Decimal | None
    final_unit_cost: Decimal | None
    requests: Decimal | None
    first_month_requests: Decimal | None
    last_month_requests: Decimal | None
    gross_cost: Decimal
    efficiency_gain: Decimal
    net_cost: Decimal
    with_contingency: Decimal
    share_of_total: Decimal | None


class ForecastResult(Result):
    prices_used: tuple[PriceUsed, ...]
    months: int
    months_per_year: int = MONTHS_PER_YEAR
    start_month: str | None
    contingency_rate: Decimal
    efficiency_target: Decimal
    monthly_efficiency_rate: Decimal
    current_monthly_cost: Decimal
    rows: tuple[MonthRow, ...]
    years: tuple[YearRow, ...]
    lines: tuple[LineShare, ...]
    gross_product_cost: Decimal
    efficiency_gain: Decimal
    net_product_cost: Decimal
    new_projects_cost: Decimal
    contingency: Decimal
    total: Decimal
    flat_total: Decimal  # months x current monthly cost: no growth, no efficiency, no projects, no contingency
    last_year_spend: Decimal | None
    naive_growth_buffer: Decimal | None
    naive_budget_annual: Decimal | None
    naive_budget_for_horizon: Decimal | None
    difference_vs_naive: Decimal | None  # bottom-up minus naive: positive = the naive budget is short
    difference_vs_naive_pct: Decimal | None
    naive_budget_exhausted_month: int | None
    naive_note: str | None


# --------------------------------------------------------------------------------------------- the model


def efficiency_factor(month: int, months: int, target: Decimal) -> Decimal:
    """Unit-cost multiplier in ``month`` (1-based): 1 in month 1, ``1 - target`` in month ``months``,
    falling by the same rate every month in between."""
    if target == 0 or month == 1:
        return Decimal(1)
    return (1 - target) ** (Decimal(month - 1) / Decimal(months - 1))


def _grown(requests: Decimal, growth: Decimal, month: int) -> Decimal:
    """Usage in ``month``: month 1 is today's; then compounding (growth -1 means gone from month 2)."""
    if month == 1:
        return requests
    return requests * (1 + growth) ** (month - 1)


def _unit_cost(product: Product, ctx: PlanContext) -> tuple[Decimal, PriceUsed | None]:
    """Effective cost per request, and the price it came from when the product names a model."""
    if product.unit_cost is not None:
        return product.unit_cost, None
    model = product.model
    assert model is not None and product.input_tokens is not None and product.output_tokens is not None
    rate = resolve_ref(model, ctx)
    return request_cost(rate, product.input_tokens, product.output_tokens).effective_usd, PriceUsed.of(rate)


def _label(start: str | None, month: int) -> str:
    if start is None:
        return f"M{month}"
    match = _MONTH_RE.match(start)
    assert match is not None
    index = int(match.group(1)) * 12 + int(match.group(2)) - 1 + month - 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass
class _Line:
    gross: Decimal = ZERO
    net: Decimal = ZERO
    requests: Decimal = ZERO


def compute(scenario: ForecastScenario, ctx: PlanContext) -> ForecastResult:
    with localcontext(MONEY_CONTEXT):
        return _compute(scenario, ctx)


def _compute(scenario: ForecastScenario, ctx: PlanContext) -> ForecastResult:
    n = scenario.months
    k = scenario.contingency
    target = scenario.efficiency_target
    priced = {p.name: _unit_cost(p, ctx) for p in scenario.products}
    unit = {name: cost for name, (cost, _) in priced.items()}
    prices_used = tuple(used for _, used in priced.values() if used is not None)
    lines = {p.name: _Line() for p in scenario.products}
    project_totals = {p.name: ZERO for p in scenario.new_projects}

    rows: list[MonthRow] = []
    cumulative = ZERO
    for m in range(1, n + 1):
        factor = efficiency_factor(m, n, target)
        product_months = []
        for p in scenario.products:
            requests = _grown(p.monthly_requests, p.monthly_growth, m)
            gross = requests * unit[p.name]
            net = gross * factor
            product_months.append(
                ProductMonth(
                    name=p.name,
                    requests=requests,
                    unit_cost=unit[p.name] * factor,
                    gross_cost=gross,
                    net_cost=net,
                )
            )
            line = lines[p.name]
            line.gross += gross
            line.net += net
            line.requests += requests
        projects = ZERO
        for project in scenario.new_projects:
            if project.start_month_index <= m:
                projects += project.monthly_cost
                project_totals[project.name] += project.monthly_cost
        gross_total = sum((pm.gross_cost for pm in product_months), ZERO)
        net_total = sum((pm.net_cost for pm in product_months), ZERO)
        contingency = k * (net_total + projects)
        total = net_total + projects + contingency
        cumulative += total
        rows.append(
            MonthRow(
                month=m,
                label=_label(scenario.start_month, m),
                products=tuple(product_months),
                efficiency_factor=factor,
                gross_product_cost=gross_total,
                efficiency_gain=net_total - gross_total,
                net_product_cost=net_total,
                new_projects_cost=projects,
                contingency=contingency,
                total=total,
                cumulative_total=cumulative,
            )
        )

    years = tuple(_year(i + 1, rows[i * 12 : i * 12 + 12]) for i in range((n + 11) // 12))
    gross = sum((r.gross_product_cost for r in rows), ZERO)
    net = sum((r.net_product_cost for r in rows), ZERO)
    projects_total = sum((r.new_projects_cost for r in rows), ZERO)
    contingency_total = sum((r.contingency for r in rows), ZERO)
    total = sum((r.total for r in rows), ZERO)
    current = sum((p.monthly_requests * unit[p.name] for p in scenario.products), ZERO)

    shares: list[LineShare] = []
    for index, p in enumerate(scenario.products):
        line = lines[p.name]
        shares.append(
            LineShare(
                name=p.name,
                kind="product",
                current_unit_cost=unit[p.name],
                final_unit_cost=unit[p.name] * efficiency_factor(n, n, target),
                requests=line.requests,
                first_month_requests=rows[0].products[index].requests,
                last_month_requests=rows[-1].products[index].requests,
                gross_cost=line.gross,
                efficiency_gain=line.net - line.gross,
                net_cost=line.net,
                with_contingency=line.net * (1 + k),
                share_of_total=_share(line.net * (1 + k), total),
            )
        )
    for project in scenario.new_projects:
        cost = project_totals[project.name]
        shares.append(
            LineShare(
                name=project.name,
                kind="new project",
                current_unit_cost=None,
                final_unit_cost=None,
                requests=None,
                first_month_requests=None,
                last_month_requests=None,
                gross_cost=cost,
                efficiency_gain=ZERO,
                net_cost=cost,
                with_contingency=cost * (1 + k),
                share_of_total=_share(cost * (1 + k), total),
            )
        )

    naive_annual = naive_horizon = difference = difference_pct = None
    exhausted: int | None = None
    buffer: Decimal | None = None
    naive_note: str | None = None
    if scenario.last_year_spend is not None:
        buffer = scenario.naive_growth_buffer if scenario.naive_growth_buffer is not None else Decimal("0.25")
        naive_annual = scenario.last_year_spend * (1 + buffer)
        naive_horizon = naive_annual * Decimal(n) / MONTHS_PER_YEAR
        difference = total - naive_horizon
        difference_pct = _share(difference, naive_horizon)
        exhausted = next((r.month for r in rows if r.cumulative_total > naive_horizon), None)
        if n != MONTHS_PER_YEAR:
            naive_note = f"the naive annual budget is prorated to the {n}-month horizon ({n}/12 of last year + buffer)"
    return ForecastResult(
        prices_used=prices_used,
        months=n,
        start_month=scenario.start_month,
        contingency_rate=k,
        efficiency_target=target,
        monthly_efficiency_rate=(1 - efficiency_factor(2, n, target)) if n > 1 else ZERO,
        current_monthly_cost=current,
        rows=tuple(rows),
        years=years,
        lines=tuple(shares),
        gross_product_cost=gross,
        efficiency_gain=net - gross,
        net_product_cost=net,
        new_projects_cost=projects_total,
        contingency=contingency_total,
        total=total,
        flat_total=current * n,
        last_year_spend=scenario.last_year_spend,
        naive_growth_buffer=buffer,
        naive_budget_annual=naive_annual,
        naive_budget_for_horizon=naive_horizon,
        difference_vs_naive=difference,
        difference_vs_naive_pct=difference_pct,
        naive_budget_exhausted_month=exhausted,
        naive_note=naive_note,
    )


def _year(year: int, rows: list[MonthRow]) -> YearRow:
    first, last = rows[0], rows[-1]
    label = f"Year {year} ({first.label}–{last.label})"
    return YearRow(
        year=year,
        label=label,
        months=len(rows),
        requests=sum((pm.requests for r in rows for pm in r.products), ZERO),
        gross_product_cost=sum((r.gross_product_cost for r in rows), ZERO),
        efficiency_gain=sum((r.efficiency_gain for r in rows), ZERO),
        new_projects_cost=sum((r.new_projects_cost for r in rows), ZERO),
        contingency=sum((r.contingency for r in rows), ZERO),
        total=sum((r.total for r in rows), ZERO),
    )


def _share(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole == 0 else part / whole


# --------------------------------------------------------------------------------------------- report


_pct = partial(percent, places=1)


def report(result: ForecastResult) -> Report:
    with localcontext(MONEY_CONTEXT):
        return _report(result)


def _report(result: ForecastResult) -> Report:
    product_names = [pm.name for pm in result.rows[0].products]
    monthly = Table(
        title="Month by month",
        columns=(
            Column("month", "int"),
            Column("label"),
            *(Column(f"usage: {name}", "int", "requests") for name in product_names),
            Column("gross product cost", "usd", "USD"),
            Column("new projects", "usd", "USD"),
            Column("efficiency gains", "usd", "USD"),
            Column("contingency", "usd", "USD"),
            Column("total", "usd", "USD"),
            Column("cumulative", "usd", "USD"),
        ),
        rows=tuple(
            (
                r.month,
                r.label,
                *(pm.requests for pm in r.products),
                r.gross_product_cost,
                r.new_projects_cost,
                r.efficiency_gain,
                r.contingency,
                r.total,
                r.cumulative_total,
            )
            for r in result.rows
        ),
    )
    yearly = Table(
        title="Totals per year (12 months; the last year may be partial)",
        columns=(
            Column("year"),
            Column("months", "int"),
            Column("requests", "int"),
            Column("gross product cost", "usd", "USD"),
            Column("new projects", "usd", "USD"),
            Column("efficiency gains", "usd", "USD"),
            Column("contingency", "usd", "USD"),
            Column("total", "usd", "USD"),
        ),
        rows=(
            *(
                (
                    y.label,
                    y.months,
                    y.requests,
                    y.gross_product_cost,
                    y.new_projects_cost,
                    y.efficiency_gain,
                    y.contingency,
                    y.total,
                )
                for y in result.years
            ),
            (
                "whole horizon",
                result.months,
                sum((y.requests for y in result.years), ZERO),
                result.gross_product_cost,
                result.new_projects_cost,
                result.efficiency_gain,
                result.contingency,
                result.total,
            ),
        ),
    )
    shares = Table(
        title="Where the budget goes (each line with its share of contingency)",
        columns=(
            Column("line"),
            Column("kind"),
            Column("unit cost now", "usd", "USD/request"),
            Column("unit cost last month", "usd", "USD/request"),
            Column("gross", "usd", "USD"),
            Column("efficiency gains", "usd", "USD"),
            Column("with contingency", "usd", "USD"),
            Column("share", "pct", "% of total"),
        ),
        rows=tuple(
            (
                line.name,
                line.kind,
                line.current_unit_cost,
                line.final_unit_cost,
                line.gross_cost,
                line.efficiency_gain,
                line.with_contingency,
                line.share_of_total,
            )
            for line in result.lines
        ),
    )
    tables = [monthly, yearly, shares]
    if result.naive_budget_for_horizon is not None:
        tables.append(
            Table(
                title="Naive budget (last year + buffer) vs. bottom-up forecast",
                columns=(
                    Column("figure"),
                    Column("amount", "usd", "USD"),
                    Column("share", "pct", "% of naive budget"),
                ),
                rows=(
                    ("last year's spend", result.last_year_spend, None),
                    ("naive annual budget", result.naive_budget_annual, None),
                    (f"naive budget for {result.months} months", result.naive_budget_for_horizon, None),
                    ("bottom-up forecast", result.total, _plus_one(result.difference_vs_naive_pct)),
                    (
                        "difference (bottom-up - naive)",
                        result.difference_vs_naive,
                        result.difference_vs_naive_pct,
                    ),
                ),
            )
        )
    title = f"Bottom-up AI budget over {result.months} months" + (
        f" from {result.start_month}" if result.start_month else ""
    )
    return Report(
        title=title,
        tables=tuple(tables),
        notes=tuple(_notes(result)),
        warnings=tuple(_warnings(result)),
        csv_table=0,
    )


def _plus_one(value: Decimal | None) -> Decimal | None:
    return None if value is None else 1 + value


def _notes(result: ForecastResult) -> list[str]:
    notes = [
        "Month 1 is today's run-rate (usage as given, today's unit cost); usage then compounds by each "
        "product's monthly_growth. A year is 12 months here.",
        f"Bottom-up total {format_usd(result.total)} = product cost {format_usd(result.gross_product_cost)} "
        f"+ new projects {format_usd(result.new_projects_cost)} - efficiency gains "
        f"{format_usd(-result.efficiency_gain)} + contingency {format_usd(result.contingency)} "
        f"({_pct(result.contingency_rate)} of product cost after efficiency plus new projects).",
        f"Flat at today's cost the {result.months} months would cost {format_usd(result.flat_total)}; "
        "growth, new projects, efficiency and contingency move it to the total above.",
    ]
    if result.efficiency_target > 0:
        notes.append(
            f"Efficiency target: unit costs fall {_pct(result.efficiency_target)} by month {result.months}, "
            f"i.e. {result.monthly_efficiency_rate * 100:.2f}% a month compounding from month 2, saving "
            f"{format_usd(-result.efficiency_gain)}. A target needs named levers behind it "
            "(see `margin plan savings`)."
        )
    products = [line for line in result.lines if line.kind == "product" and line.share_of_total is not None]
    if products:
        top = max(products, key=lambda line: line.with_contingency)
        growth = ""
        if top.first_month_requests and top.last_month_requests is not None:
            ratio = top.last_month_requests / top.first_month_requests
            growth = f"; its usage in the last month is {ratio:.2f}x month 1"
        notes.append(f"Largest line: {top.name}, {_pct(top.share_of_total)} of the budget{growth}.")
    if result.difference_vs_naive is not None and result.naive_budget_for_horizon is not None:
        buffer = _pct(result.naive_growth_buffer)
        if result.difference_vs_naive > 0:
            notes.append(
                f"The naive 'last year + {buffer}' budget ({format_usd(result.naive_budget_for_horizon)}) is "
                f"{format_usd(result.difference_vs_naive)} short of the bottom-up forecast "
                f"({_pct(result.difference_vs_naive_pct)} more needed): it ignores usage growth and new "
                "projects."
            )
        else:
            notes.append(
                f"The naive 'last year + {buffer}' budget ({format_usd(result.naive_budget_for_horizon)}) "
                f"exceeds the bottom-up forecast by {format_usd(-result.difference_vs_naive)}: the padding "
                "is not backed by planned usage."
            )
        if result.naive_note:
            notes.append(f"Note: {result.naive_note}.")
    if result.prices_used:
        notes.append(prices_note(result.prices_used))
    return notes


def _warnings(result: ForecastResult) -> list[str]:
    warnings: list[str] = []
    if result.naive_budget_exhausted_month is not None:
        row = result.rows[result.naive_budget_exhausted_month - 1]
        warnings.append(f"The naive budget runs out in month {row.month} ({row.label}) at the bottom-up spending rate.")
    if result.contingency_rate < SEED_CONTINGENCY_LOW:
        warnings.append(
            f"Contingency {_pct(result.contingency_rate)} is below the 10-15% recommended for unknowns "
            "(price changes, new models, usage surprises)."
        )
    return warnings


EXAMPLE = """\
# Seed 002, Spot the Problem 3: a bottom-up budget next to "last year $1.2M + 25% buffer".
months: 12                 # forecast horizon in months
start_month: 2026-01       # optional, labels the months (YYYY-MM)
products:                  # month 1 = today's usage and unit cost; usage compounds monthly
  - name: support-chat
    monthly_requests: 3000000
    # priced from tokens: a catalog model name (e.g. gpt-4o) or explicit USD prices per 1M tokens
    model: {name: gpt-5.5 (seed price), input_per_mtok: 5, output_per_mtok: 30}
    input_tokens: 2000
    output_tokens: 400
    monthly_growth: 0.06   # +6% a month
  - name: doc-summaries
    monthly_requests: 6000000
    unit_cost: 0.004       # USD per request, measured
    monthly_growth: 0.03
  - name: code-review
    monthly_requests: 300000
    unit_cost: 0.05
    monthly_growth: 0.10
new_projects:              # flat monthly cost from start_month_index (1-based) to the end
  - {name: voice-agent, start_month_index: 4, monthly_cost: 20000}
  - {name: agentic-search, start_month_index: 7, monthly_cost: 15000}
contingency: 0.12          # on product cost after efficiency + new projects (seed: 10-15%)
efficiency_target: 0.20    # unit costs 20% lower by the last month (constant monthly rate)
last_year_spend: 1200000   # optional: show the naive budget next to the bottom-up one
naive_growth_buffer: 0.25  # naive budget = last year x (1 + buffer)
"""

MODEL = PlannerModel(
    name="forecast",
    summary="Bottom-up AI budget: usage x unit cost + new projects + contingency - efficiency gains",
    scenario_type=ForecastScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
)
