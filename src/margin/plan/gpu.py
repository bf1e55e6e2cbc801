"""GPU choice: a price/performance catalogue and the cheapest GPU that meets a workload's requirements.

Seed 002 ("The GPU Selection Decision") gives the catalogue (cloud prices, late 2024) and Exercise 2 the
requirement check. Formulas, per GPU:

    $/TFLOP-hour           = hourly_cost / fp16_tflops
    monthly cost           = hourly_cost * hours_per_month          (720 h = 30 days, overridable)
    effective cost / hour  = hourly_cost / utilization              (idle time is paid for too)

With a ``workload`` (peak_rps, p95_latency_ms, optional monthly_budget and model_memory_gb) and each
candidate's measured ``latency_ms`` and ``max_rps`` for that model:

    instances     = ceil(peak_rps / (max_rps * max_load_fraction))
    monthly cost  = instances * monthly cost per GPU
    qualifies     = latency_ms <= p95_latency_ms and model_memory_gb <= vram_gb and monthly cost <= budget

The recommendation is the qualifying GPU with the lowest monthly cost, ties broken by lower latency, then
fewer instances, then name. Pure: no I/O. ``GPU_CATALOGUE`` and :func:`find_gpu` are shared with ``memory``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from functools import partial
from typing import Annotated, Any

from pydantic import Field, model_validator

from ..errors import ScenarioError
from ..money import MONEY_CONTEXT, format_usd
from ._base import (
    Column,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosDecimal,
    Report,
    Result,
    Scenario,
    Table,
    ceil_div,
    percent,
)

__all__ = [
    "DEFAULT_HOURS_PER_MONTH",
    "GPU_CATALOGUE",
    "MODEL",
    "GpuEntry",
    "GpuResult",
    "GpuScenario",
    "GpuSpec",
    "Workload",
    "find_gpu",
    "normalize_gpu_name",
]

DEFAULT_HOURS_PER_MONTH = Decimal(720)  # 24 h x 30 days
DEFAULT_UTILIZATION = Decimal("0.5")  # the seed's planning target; production runs 30-50% (Patterson et al.)


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type: nominal VRAM (as marketed, read as decimal GB), FP16 TFLOPS, on-demand $/hour."""

    name: str
    vram_gb: Decimal
    fp16_tflops: Decimal | None
    hourly_cost: Decimal
    best_for: str = ""


# Seed 002, "Key GPU comparisons (cloud pricing, late 2024)". The TFLOPS are the seed's figures: the H100's
# 1,979 is NVIDIA's FP16 number *with* 2:4 sparsity (dense is about half), the others are dense.
GPU_CATALOGUE: tuple[GpuSpec, ...] = (
    GpuSpec("H100 SXM", Decimal(80), Decimal(1979), Decimal("4.50"), "Large training"),
    GpuSpec("A100 80GB", Decimal(80), Decimal(312), Decimal("2.50"), "Training, large inference"),
    GpuSpec("A100 40GB", Decimal(40), Decimal(312), Decimal("1.75"), "Medium training/inference"),
    GpuSpec("L4", Decimal(24), Decimal(121), Decimal("0.50"), "Cost-efficient inference"),
    GpuSpec("A10G", Decimal(24), Decimal(125), Decimal("0.75"), "Balanced inference"),
    GpuSpec("T4", Decimal(16), Decimal(65), Decimal("0.35"), "Budget inference"),
)


def normalize_gpu_name(name: str) -> str:
    """Case, spaces, dashes and underscores do not matter: 'a100-80gb' is 'A100 80GB'."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def find_gpu(name: str, catalogue: tuple[GpuSpec, ...] = GPU_CATALOGUE) -> GpuSpec | None:
    key = normalize_gpu_name(name)
    return next((g for g in catalogue if normalize_gpu_name(g.name) == key), None)


# -- scenario ---------------------------------------------------------------------------------------

Utilization = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


class GpuEntry(Scenario):
    """A GPU to add, or overrides for a catalogue GPU of the same name, plus optional measurements."""

    name: Annotated[str, Field(min_length=1)]
    vram_gb: PosDecimal | None = None
    fp16_tflops: PosDecimal | None = None
    hourly_cost: NonNegDecimal | None = None
    # A flat monthly price (reserved/committed) instead of hourly_cost; hourly = monthly / hours_per_month.
    monthly_cost: NonNegDecimal | None = None
    best_for: str | None = None
    # Measured for the workload's model on one instance of this GPU (requirement mode).
    latency_ms: PosDecimal | None = None
    max_rps: PosDecimal | None = None


class Workload(Scenario):
    peak_rps: PosDecimal
    p95_latency_ms: PosDecimal  # a maximum: a GPU qualifies when its measured latency is at most this
    monthly_budget: NonNegDecimal | None = None
    model_memory_gb: PosDecimal | None = None  # must fit on one GPU (each instance holds the whole model)
    # Plan each instance to run at most this share of its measured max_rps (1 = no headroom, as Exercise 2).
    max_load_fraction: Utilization = Decimal(1)


class GpuScenario(Scenario):
    gpus: list[GpuEntry] = Field(default_factory=list)
    utilization: Utilization = DEFAULT_UTILIZATION
    hours_per_month: Annotated[Decimal, Field(gt=0, le=744, allow_inf_nan=False)] = DEFAULT_HOURS_PER_MONTH
    workload: Workload | None = None

    @model_validator(mode="after")
    def _check_entries(self) -> GpuScenario:
        # Cross-field problems raise ScenarioError (not ValueError) so the error names the field itself.
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.gpus):
            where = f"gpus.{i}"
            key = normalize_gpu_name(entry.name)
            if key in seen:
                raise ScenarioError(
                    f"GPU {entry.name!r} is listed twice (also gpus.{seen[key]}); merge the two entries",
                    field=f"{where}.name",
                )
            seen[key] = i
            if entry.hourly_cost is not None and entry.monthly_cost is not None:
                raise ScenarioError("give hourly_cost or monthly_cost, not both", field=f"{where}.monthly_cost")
            if (entry.latency_ms is None) != (entry.max_rps is None):
                missing = "latency_ms" if entry.latency_ms is None else "max_rps"
                raise ScenarioError(
                    f"a measured GPU needs both latency_ms and max_rps ({missing} is missing)",
                    field=f"{where}.{missing}",
                )
            if find_gpu(entry.name) is None:
                if entry.vram_gb is None:
                    raise ScenarioError(
                        f"{entry.name!r} is not in the built-in catalogue ({_catalogue_names()}), so it needs vram_gb",
                        field=f"{where}.vram_gb",
                    )
                if entry.hourly_cost is None and entry.monthly_cost is None:
                    raise ScenarioError(
                        f"{entry.name!r} is not in the built-in catalogue, so it needs hourly_cost or monthly_cost",
                        field=f"{where}.hourly_cost",
                    )
        if self.workload is not None and not any(e.max_rps is not None for e in self.gpus):
            raise ScenarioError(
                "a workload needs at least one GPU with measured latency_ms and max_rps, e.g. "
                "gpus: [{name: L4, latency_ms: 80, max_rps: 40}]",
                field="gpus",
            )
        return self


def _catalogue_names() -> str:
    return ", ".join(g.name for g in GPU_CATALOGUE)


# -- result -----------------------------------------------------------------------------------------


class GpuCost(Result):
    name: str
    source: str  # "catalogue", "catalogue, overridden: ...", or "scenario"
    vram_gb: Decimal
    fp16_tflops: Decimal | None
    hourly_cost: Decimal
    usd_per_tflop_hour: Decimal | None
    monthly_cost: Decimal
    effective_hourly_cost: Decimal  # hourly / utilization
    effective_usd_per_tflop_hour: Decimal | None
    best_for: str


class GpuOption(Result):
    """One measured GPU against the workload."""

    name: str
    latency_ms: Decimal
    max_rps: Decimal
    planned_rps_per_instance: Decimal  # max_rps * max_load_fraction
    instances: int
    capacity_rps: Decimal  # instances * max_rps
    load_at_peak: Decimal  # peak_rps / capacity_rps
    monthly_cost_per_instance: Decimal
    monthly_cost: Decimal
    monthly_cost_per_rps: Decimal  # per instance: monthly cost / max_rps (cost of throughput, before rounding)
    vram_gb: Decimal
    meets_latency: bool
    fits_memory: bool | None  # None when model_memory_gb is not given
    within_budget: bool | None  # None when monthly_budget is not given
    qualifies: bool
    failures: list[str]


class GpuResult(Result):
    utilization: Decimal
    hours_per_month: Decimal
    gpus: list[GpuCost]
    cheapest_per_tflop_hour: str | None
    # Requirement mode
    workload: Workload | None
    options: list[GpuOption]  # ranked: qualifying first, cheapest first
    recommended: str | None
    recommendation: str | None  # why, including any tie-break
    no_option_reason: str | None


# -- compute ----------------------------------------------------------------------------------------


def _merged_catalogue(s: GpuScenario) -> tuple[list[tuple[GpuSpec, Decimal, str]], dict[str, GpuEntry]]:
    """Catalogue GPUs with the scenario's overrides, then new GPUs: (spec, monthly cost, source)."""
    entries = {normalize_gpu_name(e.name): e for e in s.gpus}
    specs: list[tuple[GpuSpec, Decimal, str]] = []

    def apply(base: GpuSpec | None, entry: GpuEntry | None) -> tuple[GpuSpec, Decimal, str]:
        if entry is None:
            assert base is not None
            return base, base.hourly_cost * s.hours_per_month, "catalogue"
        changed = [
            f
            for f in ("vram_gb", "fp16_tflops", "hourly_cost", "monthly_cost", "best_for")
            if getattr(entry, f) is not None
        ]
        spec = base or GpuSpec(entry.name, Decimal(0), None, Decimal(0))
        updates: dict[str, Any] = {
            f: getattr(entry, f)
            for f in ("vram_gb", "fp16_tflops", "hourly_cost", "best_for")
            if getattr(entry, f) is not None
        }
        if entry.monthly_cost is not None:
            updates["hourly_cost"] = entry.monthly_cost / s.hours_per_month
        spec = replace(spec, **updates)
        monthly = entry.monthly_cost if entry.monthly_cost is not None else spec.hourly_cost * s.hours_per_month
        if base is None:
            source = "scenario"
        elif changed:
            source = "catalogue, overridden: " + ", ".join(changed)
        else:
            source = "catalogue"
        return spec, monthly, source

    for base in GPU_CATALOGUE:
        specs.append(apply(base, entries.get(normalize_gpu_name(base.name))))
    for entry in s.gpus:
        if find_gpu(entry.name) is None:
            specs.append(apply(None, entry))
    return specs, entries


def _gpu_cost(spec: GpuSpec, monthly: Decimal, source: str, utilization: Decimal) -> GpuCost:
    per_tflop = spec.hourly_cost / spec.fp16_tflops if spec.fp16_tflops else None
    return GpuCost(
        name=spec.name,
        source=source,
        vram_gb=spec.vram_gb,
        fp16_tflops=spec.fp16_tflops,
        hourly_cost=spec.hourly_cost,
        usd_per_tflop_hour=per_tflop,
        monthly_cost=monthly,
        effective_hourly_cost=spec.hourly_cost / utilization,
        effective_usd_per_tflop_hour=None if per_tflop is None else per_tflop / utilization,
        best_for=spec.best_for,
    )


def _option(cost: GpuCost, entry: GpuEntry, w: Workload) -> GpuOption:
    assert entry.latency_ms is not None and entry.max_rps is not None
    planned = entry.max_rps * w.max_load_fraction
    instances = ceil_div(w.peak_rps, planned)
    capacity = instances * entry.max_rps
    monthly = instances * cost.monthly_cost
    meets_latency = entry.latency_ms <= w.p95_latency_ms
    fits = None if w.model_memory_gb is None else w.model_memory_gb <= cost.vram_gb
    within = None if w.monthly_budget is None else monthly <= w.monthly_budget
    failures = []
    if not meets_latency:
        failures.append(f"latency {entry.latency_ms:,} ms exceeds the {w.p95_latency_ms:,} ms p95 target")
    if fits is False:
        failures.append(f"the model needs {w.model_memory_gb:,} GB but the GPU has {cost.vram_gb:,} GB")
    if within is False:
        assert w.monthly_budget is not None
        failures.append(
            f"{instances} instance(s) cost {format_usd(monthly)}/month, over the "
            f"{format_usd(w.monthly_budget)} budget by {format_usd(monthly - w.monthly_budget)}"
        )
    return GpuOption(
        name=cost.name,
        latency_ms=entry.latency_ms,
        max_rps=entry.max_rps,
        planned_rps_per_instance=planned,
        instances=instances,
        capacity_rps=capacity,
        load_at_peak=w.peak_rps / capacity,
        monthly_cost_per_instance=cost.monthly_cost,
        monthly_cost=monthly,
        monthly_cost_per_rps=cost.monthly_cost / entry.max_rps,
        vram_gb=cost.vram_gb,
        meets_latency=meets_latency,
        fits_memory=fits,
        within_budget=within,
        qualifies=not failures,
        failures=failures,
    )


def _rank_key(o: GpuOption) -> tuple[Any, ...]:
    return (not o.qualifies, o.monthly_cost, o.latency_ms, o.instances, normalize_gpu_name(o.name))


def _recommendation(ranked: list[GpuOption]) -> str:
    best = ranked[0]
    text = (
        f"{best.name}: {best.instances} instance(s) at {format_usd(best.monthly_cost)}/month, "
        f"{best.latency_ms:,} ms latency, cheapest option that meets every requirement"
    )
    tied = [o for o in ranked[1:] if o.qualifies and o.monthly_cost == best.monthly_cost]
    if tied:
        names = ", ".join(o.name for o in tied)
        if all(o.latency_ms > best.latency_ms for o in tied):
            why = "lower latency"
        elif all(o.latency_ms >= best.latency_ms and o.instances > best.instances for o in tied):
            why = "equal latency and fewer instances"
        else:
            why = "the tie-break order (cost, latency, instances, name)"
        text += f"; ties with {names} on cost and wins on {why}"
    return text


def _no_option_reason(options: list[GpuOption]) -> str:
    parts = [f"{o.name}: {'; '.join(o.failures)}" for o in options]
    return "no GPU meets every requirement. " + ". ".join(parts)


def compute(s: GpuScenario, ctx: PlanContext) -> GpuResult:
    with localcontext(MONEY_CONTEXT):
        merged, entries = _merged_catalogue(s)
        costs = [_gpu_cost(spec, monthly, source, s.utilization) for spec, monthly, source in merged]
        priced = [c for c in costs if c.usd_per_tflop_hour is not None]
        cheapest_tflop = min(priced, key=lambda c: (c.usd_per_tflop_hour, c.name)).name if priced else None

        options: list[GpuOption] = []
        recommended = recommendation = no_option = None
        if s.workload is not None:
            for cost in costs:
                entry = entries.get(normalize_gpu_name(cost.name))
                if entry is not None and entry.max_rps is not None:
                    options.append(_option(cost, entry, s.workload))
            options.sort(key=_rank_key)
            if options[0].qualifies:
                recommended = options[0].name
                recommendation = _recommendation(options)
            else:
                no_option = _no_option_reason(options)

        return GpuResult(
            utilization=s.utilization,
            hours_per_month=s.hours_per_month,
            gpus=costs,
            cheapest_per_tflop_hour=cheapest_tflop,
            workload=s.workload,
            options=options,
            recommended=recommended,
            recommendation=recommendation,
            no_option_reason=no_option,
        )


# -- report -----------------------------------------------------------------------------------------


_H100_SPARSE_TFLOPS = Decimal(1979)


_pct = partial(percent, places=None, sign=False)


def report(r: GpuResult) -> Report:
    util = _pct(r.utilization)
    hours = format(r.hours_per_month.normalize(), "f")
    catalogue = Table(
        "GPU price/performance",
        (
            Column("GPU", "text"),
            Column("VRAM", "num", "GB"),
            Column("FP16", "num", "TFLOPS"),
            Column("Hourly", "usd", "$/h"),
            Column("Per TFLOP-hour", "usd", "$/TFLOP-h"),
            Column(f"Monthly ({hours} h)", "usd", "$/month"),
            Column(f"Effective hourly at {util}% util.", "usd", "$/h"),
            Column(f"Effective per TFLOP-hour at {util}%", "usd", "$/TFLOP-h"),
            Column("Best for", "text"),
            Column("Source", "text"),
        ),
        tuple(
            (
                g.name,
                g.vram_gb,
                g.fp16_tflops,
                g.hourly_cost,
                g.usd_per_tflop_hour,
                g.monthly_cost,
                g.effective_hourly_cost,
                g.effective_usd_per_tflop_hour,
                g.best_for,
                g.source,
            )
            for g in r.gpus
        ),
    )
    tables = [catalogue]
    notes = [
        f"Effective cost per hour = hourly cost / utilization: at {util}% utilization every GPU-hour of "
        f"useful work costs {format(Decimal(1) / r.utilization, '.3g')}x the list price, because idle hours "
        "are paid for too.",
        "$/TFLOP-hour compares raw FP16 compute per dollar; inference at small batch is limited by memory "
        "bandwidth, so compare cost per request on your workload before choosing.",
        f"Month = {hours} GPU-hours (30 days x 24 h unless hours_per_month says otherwise).",
    ]
    if any(g.name == "H100 SXM" and g.fp16_tflops == _H100_SPARSE_TFLOPS for g in r.gpus):
        notes.insert(
            2,
            "The H100's 1,979 TFLOPS (the seed's figure) is NVIDIA's FP16 number with sparsity; dense FP16 "
            "is about half, so next to the other GPUs' dense figures its real $/TFLOP-hour is about twice "
            "the table's.",
        )
    if r.cheapest_per_tflop_hour:
        notes.insert(0, f"Cheapest FP16 compute per dollar: {r.cheapest_per_tflop_hour}.")
    warnings: list[str] = []
    csv_index = 0
    w = r.workload
    if w is not None:
        budget = "none" if w.monthly_budget is None else format_usd(w.monthly_budget)
        tables.append(
            Table(
                f"Workload: {w.peak_rps:,} req/s peak, p95 <= {w.p95_latency_ms:,} ms, budget {budget}/month",
                (
                    Column("GPU", "text"),
                    Column("Latency", "num", "ms"),
                    Column("Max throughput", "num", "req/s"),
                    Column("Instances", "int"),
                    Column("Load at peak", "pct"),
                    Column("Per instance", "usd", "$/month"),
                    Column("Total", "usd", "$/month"),
                    Column("Per req/s of capacity", "usd", "$/month"),
                    Column("Meets latency", "bool"),
                    Column("Fits memory", "bool"),
                    Column("Within budget", "bool"),
                    Column("Qualifies", "bool"),
                    Column("Why not", "text"),
                ),
                tuple(
                    (
                        o.name,
                        o.latency_ms,
                        o.max_rps,
                        o.instances,
                        o.load_at_peak,
                        o.monthly_cost_per_instance,
                        o.monthly_cost,
                        o.monthly_cost_per_rps,
                        o.meets_latency,
                        o.fits_memory,
                        o.within_budget,
                        o.qualifies,
                        "; ".join(o.failures),
                    )
                    for o in r.options
                ),
            )
        )
        csv_index = 1
        notes.append(
            "Instances = ceil(peak req/s / (max req/s per instance x max_load_fraction)); ranked by monthly "
            "cost, ties broken by lower latency, then fewer instances."
        )
        cheapest_rate = min(r.options, key=lambda o: (o.monthly_cost_per_rps, o.name))
        if r.recommended is not None and cheapest_rate.name != r.recommended:
            notes.append(
                f"{cheapest_rate.name} has the cheapest throughput per dollar "
                f"({format_usd(cheapest_rate.monthly_cost_per_rps)}/month per req/s) but whole instances "
                "round its total up."
            )
        if r.recommendation is not None:
            notes.insert(0, f"Recommendation: {r.recommendation}.")
            best = next(o for o in r.options if o.name == r.recommended)
            if best.load_at_peak == 1:
                warnings.append(
                    f"{best.name} runs at 100% of its measured max throughput at peak: no headroom for "
                    "spikes or a failed instance; set workload.max_load_fraction (e.g. 0.8) or add an "
                    "instance."
                )
        if r.no_option_reason is not None:
            warnings.append(r.no_option_reason[0].upper() + r.no_option_reason[1:] + ".")
        unmeasured = [g.name for g in r.gpus if g.name not in {o.name for o in r.options}]
        if unmeasured:
            notes.append(
                "Not evaluated against the workload (no latency_ms/max_rps measured): " + ", ".join(unmeasured) + "."
            )
    return Report(
        title="GPU selection",
        tables=tuple(tables),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=csv_index,
    )


EXAMPLE = """\
# Seed 002, Exercise 2: serve a 7B model at 100 req/s peak, p95 < 200 ms, under $10,000/month.
# The built-in catalogue (H100 SXM, A100 80GB, A100 40GB, L4, A10G, T4) is always listed; entries under
# gpus: override catalogue fields by name or add new GPUs (new ones need vram_gb and hourly_cost).
utilization: 0.5          # expected utilization, for the effective cost per hour (hourly / utilization)
hours_per_month: 720      # 30 days x 24 h
workload:
  peak_rps: 100           # requests/second at peak
  p95_latency_ms: 200     # maximum acceptable p95 latency
  monthly_budget: 10000   # $/month (optional)
  model_memory_gb: 16     # 7B in FP16 is ~14 GB of weights + KV cache (optional; must fit one GPU)
  max_load_fraction: 1    # plan instances at this share of max_rps (1 = no headroom, as the exercise)
gpus:                     # measured on this model: p95 latency and max throughput of ONE instance
  - {name: L4, latency_ms: 80, max_rps: 40}            # $0.50/h -> $360/month
  - {name: A10G, latency_ms: 65, max_rps: 50}          # $0.75/h -> $540/month
  - {name: A100 40GB, latency_ms: 40, max_rps: 100}    # $1.75/h -> $1,260/month
  # - {name: MI300X, vram_gb: 192, fp16_tflops: 1307, hourly_cost: 4.00}   # add a GPU
"""

MODEL = PlannerModel(
    name="gpu",
    summary="GPU choice: $/TFLOP-hour, monthly and effective cost, and the cheapest GPU meeting a workload",
    scenario_type=GpuScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="gpu",
)
