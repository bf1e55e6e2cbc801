"""Total cost of ownership: the seed's ``TCOAnalysis`` (direct + indirect + hidden monthly costs).

Direct costs are the cloud bill (compute, storage, external APIs, data processing); indirect costs are
engineering time; hidden costs are the often-forgotten compliance/security, monitoring and disaster
recovery. Hidden costs may be given as amounts or as fractions of the direct cost, engineering as FTE
allocations. Shares of the total are exact: they sum to exactly 1 (largest-remainder rounding at 20
decimal places). The model is monthly by nature, so a year is 12 months (annual = 12 x monthly).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction as Rational
from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..money import MONEY_CONTEXT, ZERO, format_usd
from ._base import (
    Column,
    Fraction,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosDecimal,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    percent,
)

__all__ = [
    "MODEL",
    "EngineeringFTE",
    "ScalePoint",
    "TCOItem",
    "TCOResult",
    "TCOScenario",
    "compute",
    "report",
]

MONTHS_PER_YEAR = 12
SHARE_PLACES = 20

DirectItem = Literal["compute_training", "compute_inference", "storage", "external_apis", "data_processing"]
DIRECT_ITEMS: tuple[str, ...] = (
    "compute_training",
    "compute_inference",
    "storage",
    "external_apis",
    "data_processing",
)
INDIRECT_ITEMS: tuple[str, ...] = (
    "engineering_development",
    "engineering_operations",
    "engineering_maintenance",
)
HIDDEN_ITEMS: tuple[str, ...] = ("compliance_security", "monitoring_observability", "disaster_recovery")
COMPUTE_ITEMS: tuple[str, ...] = ("compute_training", "compute_inference")

LABELS: dict[str, str] = {
    "compute_training": "Training compute",
    "compute_inference": "Inference compute",
    "storage": "Storage",
    "external_apis": "External APIs",
    "data_processing": "Data processing",
    "engineering_development": "Engineering: development",
    "engineering_operations": "Engineering: operations",
    "engineering_maintenance": "Engineering: maintenance",
    "compliance_security": "Compliance & security",
    "monitoring_observability": "Monitoring & observability",
    "disaster_recovery": "Disaster recovery",
    "hidden_pct_of_direct": "Hidden costs (compliance, monitoring, DR)",
}

# The seed's rules of thumb for hidden costs, as fractions of the direct cost.
HIDDEN_RANGES: dict[str, tuple[Decimal, Decimal]] = {
    "compliance_security": (Decimal("0.05"), Decimal("0.10")),
    "monitoring_observability": (Decimal("0.03"), Decimal("0.05")),
    "disaster_recovery": (Decimal("0.02"), Decimal("0.05")),
    "hidden_pct_of_direct": (Decimal("0.10"), Decimal("0.20")),
}


class EngineeringFTE(BaseModel):
    """An engineering allocation: ``fte`` people x ``annual_cost`` fully loaded per person-year."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(min_length=1)
    fte: PosDecimal
    annual_cost: PosDecimal


class TCOScenario(Scenario):
    # Direct costs (USD per month)
    compute_training: NonNegDecimal = ZERO
    compute_inference: NonNegDecimal = ZERO
    storage: NonNegDecimal = ZERO
    external_apis: NonNegDecimal = ZERO
    data_processing: NonNegDecimal = ZERO
    # Indirect costs (USD per month)
    engineering_development: NonNegDecimal = ZERO
    engineering_operations: NonNegDecimal = ZERO
    engineering_maintenance: NonNegDecimal = ZERO
    engineering_fte: list[EngineeringFTE] = Field(default_factory=list)
    # Hidden costs: an amount (USD per month) or a fraction of the direct cost, per item or in total
    compliance_security: NonNegDecimal | None = None
    monitoring_observability: NonNegDecimal | None = None
    disaster_recovery: NonNegDecimal | None = None
    compliance_security_pct: Fraction | None = None
    monitoring_observability_pct: Fraction | None = None
    disaster_recovery_pct: Fraction | None = None
    hidden_pct_of_direct: Fraction | None = None
    # Cost per unit and scaling
    monthly_units: PosInt | None = None
    unit_name: str = Field(default="request", min_length=1)
    scale_units: list[PosInt] = Field(default_factory=list)
    variable_items: list[DirectItem] = Field(default_factory=lambda: ["external_apis"])

    @field_validator("variable_items")
    @classmethod
    def _no_duplicate_items(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("variable_items lists an item twice")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> TCOScenario:
        for item in HIDDEN_ITEMS:
            if getattr(self, item) is not None and getattr(self, f"{item}_pct") is not None:
                raise ValueError(
                    f"{item} and {item}_pct are both given: give the hidden cost either as a monthly amount "
                    f"({item}) or as a fraction of the direct cost ({item}_pct), not both"
                )
        if self.hidden_pct_of_direct is not None:
            given = [f for f in HIDDEN_ITEMS if getattr(self, f) is not None]
            given += [f"{f}_pct" for f in HIDDEN_ITEMS if getattr(self, f"{f}_pct") is not None]
            if given:
                raise ValueError(
                    f"hidden_pct_of_direct and {', '.join(given)} are both given: hidden_pct_of_direct is "
                    "the "
                    "total of all hidden costs; either give that one fraction or the per-item fields"
                )
        amounts = [getattr(self, f) for f in (*DIRECT_ITEMS, *INDIRECT_ITEMS, *HIDDEN_ITEMS)]
        if not self.engineering_fte and not any(amounts):
            raise ValueError(
                "every cost is zero: give at least one non-zero monthly cost (compute_training, "
                "compute_inference, storage, external_apis, data_processing, engineering_development, "
                "engineering_operations, engineering_maintenance, engineering_fte or a hidden-cost amount)"
            )
        if self.scale_units and self.monthly_units is None:
            raise ValueError("scale_units needs monthly_units (the current volume the costs correspond to)")
        return self


class TCOItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    label: str
    category: Literal["direct", "indirect", "hidden"]
    basis: str
    monthly: Decimal
    share: Decimal


class ScalePoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    units: int
    volume_factor: Decimal
    monthly_direct: Decimal
    monthly_indirect: Decimal
    monthly_hidden: Decimal
    monthly_tco: Decimal
    cost_per_unit: Decimal
    change_in_cost_per_unit: Decimal


class TCOResult(Result):
    items: list[TCOItem]
    monthly_direct: Decimal
    monthly_indirect: Decimal
    monthly_hidden: Decimal
    monthly_tco: Decimal
    annual_tco: Decimal
    months_per_year: int
    direct_share: Decimal
    indirect_share: Decimal
    hidden_share: Decimal
    engineering_monthly: Decimal
    engineering_share: Decimal
    compute_monthly: Decimal
    compute_share: Decimal
    hidden_pct_of_direct: Decimal | None
    unit_name: str
    monthly_units: int | None
    cost_per_unit: Decimal | None
    variable_items: list[str]
    variable_monthly: Decimal
    scale: list[ScalePoint]
    hidden_warnings: list[str]


_pct_text = partial(percent, places=None)


def _hidden_amounts(s: TCOScenario, direct: Decimal) -> list[tuple[str, str, Decimal]]:
    """(key, basis, monthly amount) of every hidden-cost line, given the direct cost."""
    if s.hidden_pct_of_direct is not None:
        return [
            (
                "hidden_pct_of_direct",
                f"{_pct_text(s.hidden_pct_of_direct)} of direct",
                direct * s.hidden_pct_of_direct,
            )
        ]
    lines = []
    for item in HIDDEN_ITEMS:
        amount = getattr(s, item)
        pct = getattr(s, f"{item}_pct")
        if pct is not None:
            lines.append((item, f"{_pct_text(pct)} of direct", direct * pct))
        else:
            lines.append((item, "given" if amount is not None else "not given", amount or ZERO))
    return lines


def _shares(amounts: list[Decimal], total: Decimal) -> list[Decimal]:
    """amount/total for each amount, rounded to SHARE_PLACES decimals so that they sum to exactly 1.

    Largest-remainder (Hamilton) rounding on exact rationals: floor every share, then hand the missing
    units of the last place to the shares with the largest remainders (first listed wins a tie).
    """
    scale = 10**SHARE_PLACES
    exact = [Rational(a) / Rational(total) * scale for a in amounts]
    floors = [math.floor(x) for x in exact]
    missing = scale - sum(floors)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in by_remainder[:missing]:
        floors[i] += 1
    return [Decimal(n).scaleb(-SHARE_PLACES) for n in floors]


def _totals(s: TCOScenario, factor: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Direct, indirect and hidden monthly cost with the variable items scaled by ``factor``."""
    direct = sum((getattr(s, item) * (factor if item in s.variable_items else 1) for item in DIRECT_ITEMS), ZERO)
    indirect = sum((getattr(s, item) for item in INDIRECT_ITEMS), ZERO) + sum(
        (fte.fte * fte.annual_cost / MONTHS_PER_YEAR for fte in s.engineering_fte), ZERO
    )
    hidden = sum((amount for _, _, amount in _hidden_amounts(s, direct)), ZERO)
    return direct, indirect, hidden


def compute(s: TCOScenario, ctx: PlanContext) -> TCOResult:
    with localcontext(MONEY_CONTEXT):
        rows: list[tuple[str, str, str, str, Decimal]] = []  # key, label, category, basis, amount
        for item in DIRECT_ITEMS:
            rows.append((item, LABELS[item], "direct", "given", getattr(s, item)))
        for item in INDIRECT_ITEMS:
            rows.append((item, LABELS[item], "indirect", "given", getattr(s, item)))
        for i, fte in enumerate(s.engineering_fte):
            amount = fte.fte * fte.annual_cost / MONTHS_PER_YEAR
            basis = f"{fte.fte.normalize():f} FTE x {format_usd(fte.annual_cost, places=0)}/yr / 12"
            rows.append((f"engineering_fte[{i}]", fte.role, "indirect", basis, amount))
        direct, indirect, hidden = _totals(s, Decimal(1))
        for key, basis, amount in _hidden_amounts(s, direct):
            rows.append((key, LABELS[key], "hidden", basis, amount))
        total = direct + indirect + hidden
        shares = _shares([r[4] for r in rows], total)
        items = [
            TCOItem(key=k, label=lab, category=cat, basis=basis, monthly=amount, share=share)  # type: ignore[arg-type]
            for (k, lab, cat, basis, amount), share in zip(rows, shares, strict=True)
        ]

        def share_of(keys: tuple[str, ...] | None = None, category: str | None = None) -> Decimal:
            return sum(
                (it.share for it in items if (keys is not None and it.key in keys) or it.category == category),
                ZERO,
            )

        compute_monthly = sum((getattr(s, item) for item in COMPUTE_ITEMS), ZERO)
        variable_monthly = sum((getattr(s, item) for item in s.variable_items), ZERO)
        cost_per_unit = total / s.monthly_units if s.monthly_units else None

        scale: list[ScalePoint] = []
        if s.monthly_units and cost_per_unit is not None:
            for units in s.scale_units:
                factor = Decimal(units) / Decimal(s.monthly_units)
                d, i_, h = _totals(s, factor)
                tco = d + i_ + h
                per_unit = tco / units
                scale.append(
                    ScalePoint(
                        units=units,
                        volume_factor=factor,
                        monthly_direct=d,
                        monthly_indirect=i_,
                        monthly_hidden=h,
                        monthly_tco=tco,
                        cost_per_unit=per_unit,
                        change_in_cost_per_unit=per_unit / cost_per_unit - 1,
                    )
                )

        return TCOResult(
            items=items,
            monthly_direct=direct,
            monthly_indirect=indirect,
            monthly_hidden=hidden,
            monthly_tco=total,
            annual_tco=total * MONTHS_PER_YEAR,
            months_per_year=MONTHS_PER_YEAR,
            direct_share=share_of(category="direct"),
            indirect_share=share_of(category="indirect"),
            hidden_share=share_of(category="hidden"),
            engineering_monthly=indirect,
            engineering_share=share_of(category="indirect"),
            compute_monthly=compute_monthly,
            compute_share=share_of(keys=COMPUTE_ITEMS),
            hidden_pct_of_direct=hidden / direct if direct else None,
            unit_name=s.unit_name,
            monthly_units=s.monthly_units,
            cost_per_unit=cost_per_unit,
            variable_items=list(s.variable_items),
            variable_monthly=variable_monthly,
            scale=scale,
            hidden_warnings=_hidden_warnings(s, direct, hidden),
        )


def _hidden_warnings(s: TCOScenario, direct: Decimal, hidden: Decimal) -> list[str]:
    warnings: list[str] = []
    if hidden == 0:
        warnings.append(
            "No hidden costs given: the seed's rule of thumb is 10-20% of direct cost (compliance & security "
            "5-10%, monitoring 3-5%, disaster recovery 2-5%); set hidden_pct_of_direct or the per-item "
            "fields."
        )
        return warnings
    fractions = {"hidden_pct_of_direct": s.hidden_pct_of_direct}
    fractions.update({item: getattr(s, f"{item}_pct") for item in HIDDEN_ITEMS})
    for key, pct in fractions.items():
        if pct is None:
            continue
        low, high = HIDDEN_RANGES[key]
        if not low <= pct <= high:
            field = key if key == "hidden_pct_of_direct" else f"{key}_pct"
            warnings.append(
                f"{field} = {_pct_text(pct)} is outside the seed's typical "
                f"{_pct_text(low)}-{_pct_text(high)} "
                "of direct cost; check the figure."
            )
    if direct and hidden / direct < HIDDEN_RANGES["hidden_pct_of_direct"][0]:
        warnings.append(
            f"Hidden costs are only {hidden / direct * 100:.1f}% of direct cost, below the seed's 10-20% "
            "rule "
            "of thumb: compliance, monitoring and disaster recovery are often under-counted."
        )
    return warnings


def report(r: TCOResult) -> Report:
    unit = r.unit_name
    item_rows: list[tuple[object, ...]] = []
    for category, subtotal, share in (
        ("direct", r.monthly_direct, r.direct_share),
        ("indirect", r.monthly_indirect, r.indirect_share),
        ("hidden", r.monthly_hidden, r.hidden_share),
    ):
        for it in r.items:
            if it.category == category and it.monthly != 0:
                item_rows.append((category, it.label, it.basis, it.monthly, it.share))
        item_rows.append((category, f"{category.capitalize()} subtotal", "", subtotal, share))
    item_rows.append(("total", "Total monthly TCO", "", r.monthly_tco, Decimal(1)))
    item_rows.append(("total", "Annual TCO", "12 x monthly", r.annual_tco, None))
    items_table = Table(
        title="Monthly total cost of ownership",
        columns=(
            Column("Category"),
            Column("Item"),
            Column("Basis"),
            Column("Monthly", "usd", "USD/month"),
            Column("Share of TCO", "pct"),
        ),
        rows=tuple(item_rows),
    )
    summary_rows: list[tuple[object, ...]] = [
        ("Direct (infrastructure and APIs)", r.monthly_direct, r.direct_share),
        ("Indirect (engineering)", r.monthly_indirect, r.indirect_share),
        ("Hidden (compliance, monitoring, DR)", r.monthly_hidden, r.hidden_share),
        ("Compute (training + inference)", r.compute_monthly, r.compute_share),
        ("Monthly TCO", r.monthly_tco, Decimal(1)),
        ("Annual TCO (12 months)", r.annual_tco, None),
    ]
    if r.cost_per_unit is not None:
        summary_rows.append((f"Cost per {unit} ({r.monthly_units:,} {unit}s/month)", r.cost_per_unit, None))
    tables = [
        items_table,
        Table(
            title="Summary",
            columns=(Column("Figure"), Column("Amount", "usd", "USD"), Column("Share of TCO", "pct")),
            rows=tuple(summary_rows),
        ),
    ]
    if r.scale and r.cost_per_unit is not None and r.monthly_units is not None:
        scaling = ", ".join(r.variable_items) or "nothing"
        scale_rows: list[tuple[object, ...]] = [
            (
                r.monthly_units,
                Decimal(1),
                r.monthly_direct,
                r.monthly_indirect + r.monthly_hidden,
                r.monthly_tco,
                r.cost_per_unit,
                Decimal(0),
            )
        ]
        scale_rows += [
            (
                p.units,
                p.volume_factor,
                p.monthly_direct,
                p.monthly_indirect + p.monthly_hidden,
                p.monthly_tco,
                p.cost_per_unit,
                p.change_in_cost_per_unit,
            )
            for p in r.scale
        ]
        tables.append(
            Table(
                title=f"Cost per {unit} at other volumes (scaling: {scaling})",
                columns=(
                    Column("Volume", "int", f"{unit}s/month"),
                    Column("x current", "num"),
                    Column("Direct", "usd", "USD/month"),
                    Column("Indirect + hidden", "usd", "USD/month"),
                    Column("Monthly TCO", "usd", "USD/month"),
                    Column(f"Cost per {unit}", "usd", "USD"),
                    Column("Change per unit", "pct"),
                ),
                rows=tuple(scale_rows),
            )
        )
    return Report(
        title="Total cost of ownership",
        tables=tuple(tables),
        notes=tuple(_notes(r)),
        warnings=tuple(_warnings(r)),
        csv_table=0,
    )


def _p(share: Decimal) -> str:
    return f"{share * 100:.1f}%"


def _notes(r: TCOResult) -> list[str]:
    notes: list[str] = []
    largest = max(r.items, key=lambda it: it.monthly)
    notes.append(
        f"The largest item is {largest.label} at {format_usd(largest.monthly)}/month ({_p(largest.share)} "
        "of TCO): start there."
    )
    notes.append(
        f"Engineering time is {_p(r.engineering_share)} of TCO and compute {_p(r.compute_share)}: "
        + (
            "optimizing only the cloud bill misses the larger part of the cost."
            if r.engineering_share >= r.compute_share
            else "engineering rivals compute: optimizing only the cloud bill misses a large part of the cost."
            if r.engineering_share * 2 >= r.compute_share
            else "compute dominates; utilization and model choice are the main levers."
        )
    )
    notes.append(
        f"Direct infrastructure is {_p(r.direct_share)} of the true TCO (the seed: often only 60-70%); "
        f"indirect and hidden costs add {format_usd(r.monthly_indirect + r.monthly_hidden)}/month."
    )
    if r.hidden_pct_of_direct is not None and r.monthly_hidden:
        notes.append(f"Hidden costs are {_p(r.hidden_pct_of_direct)} of direct cost.")
    notes.append(
        f"Annual TCO is 12 x monthly = {format_usd(r.annual_tco)} (the model is monthly; a year is 12 months)."
    )
    if r.cost_per_unit is not None:
        notes.append(f"Cost per {r.unit_name}: {format_usd(r.cost_per_unit)} at {r.monthly_units:,} per month.")
    fixed_items = [LABELS[k] for k in DIRECT_ITEMS if k not in r.variable_items and _amount(r, k)]
    for p in r.scale:
        direction = "falls" if p.change_in_cost_per_unit < 0 else "rises" if p.change_in_cost_per_unit > 0 else "stays"
        hint = (
            f" If fixed capacity ({', '.join(fixed_items)}) cannot carry {p.volume_factor.normalize():f}x "
            "the "
            "volume, add it to variable_items."
            if fixed_items
            else ""
        )
        notes.append(
            f"At {p.units:,} {r.unit_name}s/month cost per {r.unit_name} {direction} to "
            f"{format_usd(p.cost_per_unit)} "
            f"({p.change_in_cost_per_unit * 100:+.1f}%): only {', '.join(r.variable_items) or 'nothing'} "
            "scale "
            "linearly with volume; engineering and the other costs stay fixed (hidden costs given as a "
            "fraction "
            f"of direct follow the direct cost).{hint}"
        )
    return notes


def _amount(r: TCOResult, key: str) -> Decimal:
    return next((it.monthly for it in r.items if it.key == key), ZERO)


def _warnings(r: TCOResult) -> list[str]:
    warnings = list(r.hidden_warnings)
    if r.monthly_indirect == 0:
        warnings.append(
            "No engineering cost given: the seed cites engineering time at 40-60% of the total cost of "
            "enterprise AI systems; add engineering_fte or the engineering_* fields."
        )
    return warnings


EXAMPLE = """\
# Total cost of ownership of a recommendation system serving 10M requests/day (the seed's table).
# All amounts are USD per month.
# Direct costs
compute_inference: 28000      # 4x A100 instances
compute_training: 8000        # periodic retraining
storage: 3000                 # feature store (1 TB)
external_apis: 5000           # embedding API calls
data_processing: 4000         # data pipeline
# Indirect costs: engineering FTE x fully loaded annual cost / 12
engineering_fte:
  - {role: ML engineer, fte: 0.5, annual_cost: 300000}
  - {role: Platform engineer, fte: 0.3, annual_cost: 300000}
  - {role: Data engineer, fte: 0.2, annual_cost: 300000}
# Hidden costs: monthly amounts here; or e.g. compliance_security_pct: 0.05 (fraction of direct),
# or one total hidden_pct_of_direct: 0.15
monitoring_observability: 3000
compliance_security: 2500
disaster_recovery: 1500
# Optional: cost per unit, and how it moves at other volumes
monthly_units: 300000000      # 10M requests/day x 30 days
unit_name: request
scale_units: [600000000]
variable_items: [external_apis, compute_inference]   # items that scale linearly with volume
"""

MODEL = PlannerModel(
    name="tco",
    summary="Total cost of ownership: direct, engineering and hidden monthly costs, shares and cost per unit",
    scenario_type=TCOScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
)
