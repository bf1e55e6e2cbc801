"""The planner's shared frame: scenario parsing, the result report, and the model registry entry.

Each planner model is one module in ``margin.plan`` exposing ``MODEL: PlannerModel``. A model is pure:
``compute(scenario, ctx)`` takes a validated pydantic scenario and a :class:`PlanContext` and returns a
pydantic result (every computed figure, Decimal money); ``report(result)`` turns it into a neutral
:class:`Report` (tables with typed columns, notes) that the CLI renders as Rich tables or CSV.
No module here does I/O: the CLI reads the scenario file and passes a dict to :func:`parse_scenario`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ScenarioError
from ..pricing.rates import ModelRate
from ..tokens import DEFAULT_WORDS_PER_TOKEN, words_to_tokens

__all__ = [
    "Column",
    "Fraction",
    "NonNegDecimal",
    "NonNegInt",
    "PlanContext",
    "PlannerModel",
    "PosDecimal",
    "PosInt",
    "Report",
    "Result",
    "Scenario",
    "Table",
    "ceil_div",
    "parse_scenario",
    "percent",
]

# Field types shared by scenarios. Decimal fields accept YAML ints, floats (converted through their
# shortest repr, so 0.85 stays 0.85) and strings.
NonNegDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PosDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
# A share or rate in [0, 1]: utilization, hit rate, discount.
Fraction = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]


class Scenario(BaseModel):
    """Base of every scenario: unknown fields are errors (a typo must not silently become a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Result(BaseModel):
    """Base of every result; ``model_dump(mode="json")`` is the ``--json`` document (Decimals as strings)."""

    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class PlanContext:
    """What a planner model may ask of the outside world, injected so the model stays pure.

    ``resolve_rate`` turns a model name into catalog prices (raising ``UnknownModelError``);
    ``words_per_token`` is the configurable words/tokens ratio (seeds: 750 words per 1,000 tokens).
    """

    resolve_rate: Callable[[str], ModelRate]
    words_per_token: Decimal = DEFAULT_WORDS_PER_TOKEN

    def tokens_from_words(self, words: Decimal | int) -> int:
        return words_to_tokens(words, self.words_per_token)


ColumnKind = Literal["text", "usd", "int", "num", "pct", "bool"]


@dataclass(frozen=True)
class Column:
    """A table column. ``kind`` drives display: ``usd`` money, ``pct`` a fraction shown as percent,
    ``int`` a count with thousands separators, ``num`` any other number. CSV gets the raw value."""

    header: str
    kind: ColumnKind = "text"
    unit: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {row!r} has {len(row)} cells, expected {len(self.columns)}"
                )


@dataclass(frozen=True)
class Report:
    """What a person sees: tables, then notes that explain the driving terms, then warnings."""

    title: str
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # Index of the table written by --csv.
    csv_table: int = 0


@dataclass(frozen=True)
class PlannerModel:
    name: str
    summary: str
    scenario_type: type[Scenario]
    compute: Callable[[Any, PlanContext], Result]
    report: Callable[[Any], Report]
    example: str
    doc_anchor: str = field(default="")


def parse_scenario(scenario_type: type[Scenario], data: Any) -> Scenario:
    """Validate raw scenario data, turning pydantic's errors into one :class:`ScenarioError`
    that names the field and the problem."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"a scenario must be a mapping of field names to values, got {type(data).__name__}")
    try:
        return scenario_type.model_validate(dict(data))
    except ValidationError as exc:
        raise _scenario_error(scenario_type, exc) from None


def _scenario_error(scenario_type: type[Scenario], exc: ValidationError) -> ScenarioError:
    problems: list[str] = []
    first_field: str | None = None
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        first_field = first_field or path or None
        # Model-level checks have no location; their messages start with the field names themselves.
        problems.append(f"{path}: {_describe(err, scenario_type)}" if path else _describe(err, scenario_type))
    message = problems[0] if len(problems) == 1 else "; ".join(problems)
    # The message already carries the field; keep `field` for callers that want it alone.
    error = ScenarioError(message)
    error.field = first_field
    return error


def _describe(err: Any, scenario_type: type[Scenario]) -> str:
    kind = err["type"]
    given = err.get("input")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        known = ", ".join(sorted(scenario_type.model_fields))
        return f"is not a known field (known fields: {known})"
    ctx = err.get("ctx") or {}
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        words = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {words} {bound}, got {given!r}"
    msg = str(err.get("msg", "is invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = f"{msg[0].lower()}{msg[1:]}" if msg else "is invalid"
    # Echo scalar inputs only: a whole mapping (from a model-level check) would drown the message.
    if given is None or isinstance(given, Mapping | list):
        return msg
    return f"{msg} (got {given!r})"


def percent(fraction: Decimal | None, *, places: int | None = 1, sign: bool = True) -> str:
    """A fraction for notes: 0.256 -> "25.6%" (``places`` decimals, or all significant digits with None);
    None -> "n/a". Display only."""
    if fraction is None:
        return "n/a"
    value = fraction * 100
    text = format(value.normalize(), "f") if places is None else f"{value:.{places}f}"
    return text + ("%" if sign else "")


def ceil_div(numerator: Decimal, denominator: Decimal) -> int:
    """Smallest integer n with n * denominator >= numerator (denominator > 0)."""
    return math.ceil(numerator / denominator)
