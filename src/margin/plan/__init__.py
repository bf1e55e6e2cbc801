"""The planner: every cost model of the seeds as a pure function over a scenario.

Each model lives in its own module exposing ``MODEL``; :func:`get_model` imports it on demand so the CLI
starts fast and one broken model cannot take the others down.
"""

from __future__ import annotations

import importlib

from ._base import Column, PlanContext, PlannerModel, Report, Result, Scenario, Table, parse_scenario

__all__ = [
    "MODEL_NAMES",
    "Column",
    "PlanContext",
    "PlannerModel",
    "Report",
    "Result",
    "Scenario",
    "Table",
    "get_model",
    "parse_scenario",
]

# CLI name -> module in this package, in the order the docs present them.
_MODULES: dict[str, str] = {
    "envelope": "envelope",
    "request-budget": "request_budget",
    "incident": "incident",
    "tco": "tco",
    "unit-economics": "unit_economics",
    "breakeven": "breakeven",
    "gpu": "gpu",
    "memory": "memory",
    "build-vs-buy": "build_vs_buy",
    "savings": "savings",
    "forecast": "forecast",
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODULES)


def get_model(name: str) -> PlannerModel:
    """The planner model called ``name`` (as typed on the command line)."""
    try:
        module_name = _MODULES[name]
    except KeyError:
        raise KeyError(name) from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return module.MODEL
