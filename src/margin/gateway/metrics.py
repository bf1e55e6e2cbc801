"""Prometheus metrics of one gateway process, served at ``GET /metrics`` (text exposition format 0.0.4).

Counters are plain dicts updated once per usage event (a few dictionary increments, no locks: the event
loop owns them) and rendered only when scraped, so metering pays almost nothing for them. Money here is
telemetry (float seconds and dollars, as Prometheus stores them); the exact figures live in the ledger.

Label cardinality is bounded: models are the configured routes, statuses and token types are fixed sets,
and free-form label values (teams, budgets' scope values) are capped at ``max_label_values`` distinct values
per label, later ones reported as ``other``, so a typo'd or attacker-chosen tag cannot explode the series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..usage import UsageEvent

__all__ = ["GatewayMetrics"]

_TOKEN_TYPES = ("input", "cache_read", "cache_write", "output", "reasoning")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


@dataclass
class GatewayMetrics:
    max_label_values: int = 100
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    spend: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    tokens: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    cache: dict[tuple[str], int] = field(default_factory=lambda: defaultdict(int))
    avoided: dict[tuple[str], float] = field(default_factory=lambda: defaultdict(float))
    # (backend, outcome) -> count, kept by the shared backends' health (gateway/backends/health.py): outages,
    # requests refused or served unenforced while Redis was unreachable, state losses.
    backend: dict[tuple[str, str], int] = field(default_factory=dict)
    _seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def _bounded(self, label: str, value: str | None) -> str:
        value = value or "none"
        seen = self._seen[label]
        if value in seen:
            return value
        if len(seen) >= self.max_label_values:
            return "other"
        seen.add(value)
        return value

    def observe(self, event: UsageEvent) -> None:
        """Count one usage event (every attempt, cache hit and rejection is one)."""
        model = self._bounded("model", event.served_model or event.requested_model)
        self.requests[(model, event.status)] += 1
        if event.effective_cost:
            team = self._bounded("team", event.tags.get("team"))
            self.spend[(model, team)] += float(event.effective_cost)
        for kind, count in (
            ("input", event.input_tokens),
            ("cache_read", event.cache_read_tokens),
            ("cache_write", event.cache_write_tokens),
            ("output", event.output_tokens),
            ("reasoning", event.reasoning_tokens),
        ):
            if count and event.status != "cached":
                self.tokens[(model, kind)] += count
        if event.cache:
            self.cache[(event.cache,)] += 1
        if event.avoided_cost:
            self.avoided[(model,)] += float(event.avoided_cost)

    def render(
        self,
        *,
        budgets: Iterable[tuple[str, str, float]] = (),
        gauges: Callable[[], dict[str, float]],
        semantic: dict[tuple[str], float] | None = None,
        synced: dict[tuple[str, str], int] | None = None,
    ) -> str:
        """The exposition text. ``budgets``: (budget name, scope value, utilization 0..) at scrape time;
        ``gauges``: name -> value of process gauges (ledger queue, open reservations, ...); ``semantic``:
        (lever route,) -> entries in this process's semantic cache; ``synced``: (lever route, op) -> changes
        of other instances applied here (with Redis)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, label_names: tuple[str, ...], values: dict) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for key, value in sorted(values.items()):
                out.append(f"{name}{_labels(label_names, key)} {value}")

        family(
            "margin_requests_total",
            "counter",
            "Usage events (attempts) by served model and status.",
            ("model", "status"),
            self.requests,
        )
        family(
            "margin_spend_usd_total",
            "counter",
            "Effective spend in USD by served model and team.",
            ("model", "team"),
            self.spend,
        )
        family(
            "margin_tokens_total",
            "counter",
            "Tokens billed upstream by model and type.",
            ("model", "type"),
            self.tokens,
        )
        family(
            "margin_cache_decisions_total",
            "counter",
            "Cache decisions (hit, semantic-hit, miss, bypass).",
            ("decision",),
            self.cache,
        )
        family(
            "margin_cache_avoided_usd_total",
            "counter",
            "Upstream spend avoided by cache hits, in USD.",
            ("model",),
            self.avoided,
        )
        if self.backend:
            family(
                "margin_backend_unavailable_total",
                "counter",
                "Shared-backend outages and the requests they affected (refused, unenforced, ...).",
                ("backend", "outcome"),
                self.backend,
            )
        if semantic:
            family(
                "margin_semantic_cache_entries",
                "gauge",
                "Entries in this process's semantic cache, by lever route.",
                ("route",),
                semantic,
            )
        if synced:
            family(
                "margin_semantic_cache_synced_total",
                "counter",
                "Semantic-cache changes of other instances applied here (store, feedback, drop, clear), via Redis.",
                ("route", "op"),
                synced,
            )
        bounded = {(b, self._bounded("budget_scope", s)): u for b, s, u in budgets}
        family(
            "margin_budget_utilization_ratio",
            "gauge",
            "Spent / cap of each budget counter in its period.",
            ("budget", "scope"),
            bounded,
        )
        for name, value in sorted(gauges().items()):
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"
