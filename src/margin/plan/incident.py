"""The uncapped-output incident: what a batch job costs when max_tokens is removed, and the cap that holds
a cost ceiling.

Seed 002 tells of a nightly batch job (50,000 transactions, ~500 output tokens each, ~$500 a night) whose
max_tokens was removed; outputs grew to ~15,000 tokens each. Its fix: "Every API call needs a cost ceiling."
This model prices the job three ways and derives the cap from the ceiling.

Formulas (prices in USD per 1M tokens; ceiling arithmetic uses effective = list * (1 - discount)):

    capped output tokens  = min(max_tokens, uncapped_output_tokens)   (a cap above the worst case won't bind)
    job cost (case)       = requests * (input_tokens * in + output tokens of the case * out) / 1e6
    multiplier            = uncapped job cost / typical job cost
    max_tokens for ceiling = floor((ceiling - requests * input_tokens * in / 1e6) / (requests * out / 1e6))
    max input for ceiling  = floor(ceiling / (requests * in / 1e6))     (zero output)

Pure: no I/O. Money is Decimal throughout; the CLI rounds for display.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from pydantic import model_validator

from ..errors import ScenarioError
from ..money import MICROS_PER_USD, MONEY_CONTEXT, format_usd, per_million
from ._base import (
    Column,
    NonNegDecimal,
    NonNegInt,
    PlanContext,
    PlannerModel,
    PosDecimal,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
)
from ._prices import ListEffective, ModelPrice, ModelRef, resolve_ref

__all__ = ["MODEL", "IncidentResult", "IncidentScenario", "JobCase", "ListEffective", "ModelPrice"]


# -- scenario ---------------------------------------------------------------------------------------


class IncidentScenario(Scenario):
    model: ModelRef
    # Requests in one run of the job (seed 002: 50,000 transactions a night).
    requests: PosInt
    input_tokens: NonNegInt
    typical_output_tokens: NonNegInt
    # Output per request without max_tokens: the runaway length, or the model's maximum output.
    uncapped_output_tokens: PosInt
    # The cap sent as max_tokens.
    max_tokens: PosInt
    # USD the whole job may cost (e.g. 120% of the expected spend, as in the seed's fix).
    cost_ceiling: PosDecimal | None = None
    # How often the job runs (a nightly job: 30).
    runs_per_month: NonNegDecimal | None = None

    @model_validator(mode="after")
    def _check(self) -> IncidentScenario:
        if self.uncapped_output_tokens < self.typical_output_tokens:
            raise ScenarioError(
                f"the uncapped worst case ({self.uncapped_output_tokens}) is below the typical output "
                f"({self.typical_output_tokens}); it must be at least the typical output",
                field="uncapped_output_tokens",
            )
        return self


# -- result -----------------------------------------------------------------------------------------


class JobCase(Result):
    case: str
    output_tokens_per_request: int
    output_tokens_per_job: int
    input_cost_per_job: ListEffective
    output_cost_per_job: ListEffective
    cost_per_request: ListEffective
    cost_per_job: ListEffective
    # Effective job cost / typical job cost; None when the typical job is free.
    multiple_of_typical: Decimal | None
    # None when no cost_ceiling is given.
    fits_ceiling: bool | None
    # Job cost x runs_per_month; None when runs_per_month is not given.
    cost_per_month: ListEffective | None


class IncidentResult(Result):
    model: str
    resolved_model: str
    price_source: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    discount: Decimal
    requests: int
    input_tokens: int
    input_tokens_per_job: int
    max_tokens: int
    typical: JobCase
    capped: JobCase
    uncapped: JobCase
    # uncapped / typical job cost (effective); None (see multiplier_note) when the typical job is free.
    uncapped_multiplier: Decimal | None
    multiplier_note: str | None
    # What the cap saves against the uncapped worst case, per job (effective).
    cap_saves_per_job: Decimal
    cap_binds: bool
    cap_truncates_typical: bool
    runs_per_month: Decimal | None
    cost_ceiling: Decimal | None
    # Effective input cost of the whole job, compared with the ceiling.
    job_input_cost: Decimal
    input_exceeds_ceiling: bool | None
    # Largest max_tokens whose worst-case job cost <= cost_ceiling; None when the input alone exceeds the
    # ceiling, output is free, or there is no ceiling (see ceiling_message).
    max_tokens_for_ceiling: int | None
    # Largest input per request that fits the ceiling with zero output; None when input is free or no ceiling.
    max_input_tokens_for_ceiling: int | None
    ceiling_message: str | None


# -- compute ----------------------------------------------------------------------------------------


def compute(scenario: IncidentScenario, ctx: PlanContext) -> IncidentResult:
    with localcontext(MONEY_CONTEXT):
        rate = resolve_ref(scenario.model, ctx)
        n = scenario.requests
        input_per_request = per_million(scenario.input_tokens, rate.input_per_mtok)
        capped_tokens = min(scenario.max_tokens, scenario.uncapped_output_tokens)
        ceiling = scenario.cost_ceiling

        def case(name: str, out_tokens: int, typical_cost: Decimal | None) -> JobCase:
            output_per_request = per_million(out_tokens, rate.output_per_mtok)
            per_request = input_per_request + output_per_request
            job = ListEffective.of(per_request * n, rate)
            if typical_cost is None:
                multiple: Decimal | None = Decimal(1) if job.effective_usd > 0 else None
            else:
                multiple = job.effective_usd / typical_cost if typical_cost > 0 else None
            return JobCase(
                case=name,
                output_tokens_per_request=out_tokens,
                output_tokens_per_job=out_tokens * n,
                input_cost_per_job=ListEffective.of(input_per_request * n, rate),
                output_cost_per_job=ListEffective.of(output_per_request * n, rate),
                cost_per_request=ListEffective.of(per_request, rate),
                cost_per_job=job,
                multiple_of_typical=multiple,
                fits_ceiling=None if ceiling is None else job.effective_usd <= ceiling,
                cost_per_month=(
                    None
                    if scenario.runs_per_month is None
                    else ListEffective.of(per_request * n * scenario.runs_per_month, rate)
                ),
            )

        typical = case("typical", scenario.typical_output_tokens, None)
        base = typical.cost_per_job.effective_usd
        capped = case(f"capped worst case (max_tokens = {scenario.max_tokens:,})", capped_tokens, base)
        uncapped = case("uncapped worst case (no max_tokens)", scenario.uncapped_output_tokens, base)

        note = None
        if base == 0:
            note = "the typical job costs nothing at these prices, so a multiplier is undefined"

        eff_in = rate.effective(rate.input_per_mtok)
        eff_out = rate.effective(rate.output_per_mtok)
        job_input_cost = per_million(scenario.input_tokens * n, eff_in)
        exceeds = None
        fit: int | None = None
        max_input_fit: int | None = None
        message = None
        if ceiling is not None:
            remaining = ceiling - job_input_cost
            exceeds = remaining < 0
            if eff_in > 0:
                max_input_fit = int((ceiling * MICROS_PER_USD) // (eff_in * n))
            if exceeds:
                message = (
                    f"The input alone ({scenario.input_tokens:,} tokens x {n:,} requests = "
                    f"{format_usd(job_input_cost)}) costs more than the ceiling ({format_usd(ceiling)}): no "
                    f"max_tokens can hold it. Cut the input to at most {max_input_fit:,} tokens per request "
                    "(that leaves nothing for output), split the job, or raise the ceiling."
                )
            elif eff_out == 0:
                message = "Output is free at this price, so any max_tokens keeps the job under the ceiling."
            else:
                fit = int((remaining * MICROS_PER_USD) // (eff_out * n))
                if fit == 0:
                    message = (
                        f"The input uses the whole ceiling ({format_usd(ceiling)}); not one output token per "
                        "request fits."
                    )
                elif fit >= scenario.uncapped_output_tokens:
                    message = (
                        f"Even the uncapped worst case fits the ceiling ({format_usd(ceiling)}); "
                        f"max_tokens up to {fit:,} would."
                    )
                elif fit < scenario.typical_output_tokens:
                    message = (
                        f"At most {fit:,} output tokens per request keep the job under "
                        f"{format_usd(ceiling)}, "
                        f"below the typical output ({scenario.typical_output_tokens:,}): the ceiling is too "
                        "tight for a normal run."
                    )
                else:
                    message = f"Set max_tokens <= {fit:,} to keep the worst-case job under {format_usd(ceiling)}" + (
                        f" (the current {scenario.max_tokens:,} is too high)."
                        if scenario.max_tokens > fit
                        else f" (the current {scenario.max_tokens:,} fits)."
                    )

        return IncidentResult(
            model=scenario.model if isinstance(scenario.model, str) else scenario.model.name,
            resolved_model=rate.model,
            price_source=rate.source,
            input_per_mtok=rate.input_per_mtok,
            output_per_mtok=rate.output_per_mtok,
            discount=rate.discount,
            requests=n,
            input_tokens=scenario.input_tokens,
            input_tokens_per_job=scenario.input_tokens * n,
            max_tokens=scenario.max_tokens,
            typical=typical,
            capped=capped,
            uncapped=uncapped,
            uncapped_multiplier=uncapped.multiple_of_typical,
            multiplier_note=note,
            cap_saves_per_job=uncapped.cost_per_job.effective_usd - capped.cost_per_job.effective_usd,
            cap_binds=scenario.max_tokens < scenario.uncapped_output_tokens,
            cap_truncates_typical=scenario.max_tokens < scenario.typical_output_tokens,
            runs_per_month=scenario.runs_per_month,
            cost_ceiling=ceiling,
            job_input_cost=job_input_cost,
            input_exceeds_ceiling=exceeds,
            max_tokens_for_ceiling=fit,
            max_input_tokens_for_ceiling=max_input_fit,
            ceiling_message=message,
        )


# -- report -----------------------------------------------------------------------------------------


def report(result: IncidentResult) -> Report:
    cases = (result.typical, result.capped, result.uncapped)
    columns = [
        Column("Case"),
        Column("Output / request", "int", "tokens"),
        Column("Output / job", "int", "tokens"),
        Column("Input / job", "usd", "USD"),
        Column("Output / job", "usd", "USD"),
        Column("Job cost", "usd", "USD"),
        Column("vs typical", "num", "x"),
    ]
    if result.cost_ceiling is not None:
        columns.append(Column("Fits ceiling", "bool"))
    if result.runs_per_month is not None:
        columns.append(Column(f"Per month ({result.runs_per_month} runs)", "usd", "USD"))
    rows = []
    for c in cases:
        row: list[Any] = [
            c.case,
            c.output_tokens_per_request,
            c.output_tokens_per_job,
            c.input_cost_per_job.effective_usd,
            c.output_cost_per_job.effective_usd,
            c.cost_per_job.effective_usd,
            c.multiple_of_typical,
        ]
        if result.cost_ceiling is not None:
            row.append(c.fits_ceiling)
        if result.runs_per_month is not None:
            assert c.cost_per_month is not None
            row.append(c.cost_per_month.effective_usd)
        rows.append(tuple(row))
    tables = [
        Table(
            title=f"Job cost: {result.requests:,} requests x {result.input_tokens:,} input tokens "
            f"on {result.model} (effective USD)",
            columns=tuple(columns),
            rows=tuple(rows),
        )
    ]
    if result.cost_ceiling is not None:
        tables.append(
            Table(
                title="Cap that holds the job's cost ceiling",
                columns=(
                    Column("Ceiling", "usd", "USD / job"),
                    Column("Input cost / job", "usd", "USD"),
                    Column("Input exceeds ceiling", "bool"),
                    Column("max_tokens now", "int", "tokens"),
                    Column("Largest max_tokens that fits", "int", "tokens"),
                    Column("Max input / request (no output)", "int", "tokens"),
                ),
                rows=(
                    (
                        result.cost_ceiling,
                        result.job_input_cost,
                        result.input_exceeds_ceiling,
                        result.max_tokens,
                        result.max_tokens_for_ceiling,
                        result.max_input_tokens_for_ceiling,
                    ),
                ),
            )
        )

    notes: list[str] = []
    if result.uncapped_multiplier is not None:
        notes.append(
            "Without max_tokens the worst-case job costs "
            f"{result.uncapped_multiplier.quantize(Decimal('0.01'))}x "
            f"the typical one ({format_usd(result.uncapped.cost_per_job.effective_usd, places=2)} vs "
            f"{format_usd(result.typical.cost_per_job.effective_usd, places=2)}): output length, not input, "
            "drives it."
        )
    else:
        notes.append(f"Multiplier: {result.multiplier_note}.")
    if result.cap_binds:
        notes.append(
            f"max_tokens = {result.max_tokens:,} bounds the worst case at "
            f"{format_usd(result.capped.cost_per_job.effective_usd, places=2)} per job, saving "
            f"{format_usd(result.cap_saves_per_job, places=2)} against the uncapped run."
        )
    if result.ceiling_message:
        notes.append(result.ceiling_message)
    if result.runs_per_month is not None and result.uncapped.cost_per_month is not None:
        notes.append(
            f"Left uncapped for a month ({result.runs_per_month} runs) the job would cost "
            f"{format_usd(result.uncapped.cost_per_month.effective_usd, places=2)}."
        )
    warnings: list[str] = []
    if not result.cap_binds:
        warnings.append(
            f"max_tokens ({result.max_tokens:,}) is at or above the uncapped output "
            f"({result.uncapped.output_tokens_per_request:,}): the cap does not limit anything."
        )
    if result.cap_truncates_typical:
        warnings.append(
            f"max_tokens ({result.max_tokens:,}) is below the typical output "
            f"({result.typical.output_tokens_per_request:,}): typical answers would be cut off."
        )
    if result.input_exceeds_ceiling:
        warnings.append("The job's input alone exceeds the cost ceiling.")
    if result.price_source == "scenario":
        warnings.append(f"Prices for {result.model} are given in the scenario (not from the catalog).")
    return Report(
        title="Uncapped-output incident",
        tables=tuple(tables),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=0,
    )


EXAMPLE = """\
# Seed 002's incident: a nightly batch job whose max_tokens was removed.
model:                       # the seed's GPT-5.4 prices, USD per 1M tokens (or a catalog name)
  name: gpt-5.4-seed-price
  input_per_mtok: 2.50
  output_per_mtok: 15.00
requests: 50000              # transactions per night
input_tokens: 1000           # per request; with 500 output tokens this gives the seed's ~$500 night
typical_output_tokens: 500   # the usual analysis length
uncapped_output_tokens: 15000  # what the model wrote once max_tokens was removed
max_tokens: 800              # the cap the wrapper now enforces
cost_ceiling: 600            # USD per job: 120% of the expected $500, the seed's automatic shutoff
runs_per_month: 30           # nightly
"""

MODEL = PlannerModel(
    name="incident",
    summary="Uncapped-output incident: typical, capped and uncapped job cost; the cap that holds a ceiling.",
    scenario_type=IncidentScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="incident",
)
