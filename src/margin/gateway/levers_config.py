"""Configuration of the cost-reduction levers (``gateway.levers`` in margin.yaml), per lever route.

A lever route is a set of public model names and/or tags; the first route whose ``match`` fits a request
applies, and a request no route matches gets no lever. Every lever is off unless its section is present, and
``enabled: false`` turns a configured one off. See docs/savings.md for what each does and its risks.

```yaml
gateway:
  levers:
    - name: support-bot
      match: {models: [gpt-4o], tags: {team: support}}
      cache: {ttl_seconds: 3600, scope: team}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CachePolicy",
    "CompressionPolicy",
    "ContextPolicy",
    "LeverRoute",
    "RouteMatch",
    "RoutingPolicy",
    "SemanticPolicy",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteMatch(_Strict):
    """Which requests a lever route covers: any of ``models`` (public names; empty = every model) AND all of
    ``tags`` (name -> value)."""

    models: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    def covers(self, model: str, tags: dict[str, str]) -> bool:
        if self.models and model not in self.models:
            return False
        return all(tags.get(name) == value for name, value in self.tags.items())


class SemanticPolicy(_Strict):
    """The semantic cache, after an exact miss: the last user turn is embedded (all-MiniLM-L6-v2 int8, CPU)
    and compared with answered ones under the same context fingerprint (model, system prompt, tools,
    parameters, earlier turns) and scope; a candidate above ``threshold`` must also pass the ``verifier``
    (the rules: numbers, dates, names, negation, scope, order, tense words, and a minimal edit must reach the
    cache's ``edit_threshold``; or the learned pair model). Measured wrong-hit rates at the defaults are in
    docs/savings.md: opt in where a near-miss answer is acceptable."""

    enabled: bool = True
    # None: 0.94 with the rules, the learned model's own similarity floor with ``verifier: learned``.
    threshold: float | None = Field(default=None, ge=-1, le=1)
    # ``rules``: the hand-written gate (0.0% wrong hits on the held-out pairs, 27% of paraphrases served);
    # ``learned``: the learned pair verifier (serves more paraphrases, 36.5%, but 1.7% wrong hits on the
    # held-out pairs: above the 1% goal). bench/cache/README.md has both measurements.
    verifier: Literal["rules", "learned"] = "rules"
    max_entries: int = Field(default=100_000, gt=0)


class CachePolicy(_Strict):
    """The exact cache. Only deterministic requests (temperature 0, one choice) are cached unless
    ``cache_nondeterministic``; entries live ``ttl_seconds`` in the ``scope`` partition (``team`` by default:
    no team ever gets another team's answers; a request without the tag falls back to its key)."""

    enabled: bool = True
    ttl_seconds: float = Field(default=3600, gt=0)
    scope: Literal["key", "team", "project", "global"] = "team"
    cache_nondeterministic: bool = False
    semantic: SemanticPolicy | None = None


class RoutingPolicy(_Strict):
    """Model choice for the route's requests: ``pin`` sends every request to one model; otherwise the
    complexity scorer picks a tier and ``tiers`` maps it to a public model name. With ``cascade`` a
    non-streaming request starts at the chosen tier and escalates to the next tier up when the answer fails
    validation (empty, refusal, invalid JSON or schema when JSON was asked for, truncated, or a custom
    validator from ``validators``). With ``downgrade_to_fit`` a request whose chosen model's worst case does
    not fit the remaining budget goes to a cheaper tier that fits instead of being refused."""

    enabled: bool = True
    pin: str | None = None
    tiers: dict[Literal["simple", "standard", "complex"], str] = Field(default_factory=dict)
    cascade: bool = False
    validators: list[str] = Field(default_factory=list)
    downgrade_to_fit: bool = False
    # A router trained by `margin router train` (its file carries the offline evaluation report; a file
    # without one is refused at start-up). It decides simple vs. not; the heuristic still picks the tier
    # above simple. See docs/router.md.
    learned: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> RoutingPolicy:
        if self.pin is None and set(self.tiers) != {"simple", "standard", "complex"}:
            raise ValueError("routing needs either 'pin' or 'tiers' naming a model for simple, standard and complex")
        return self


class CompressionPolicy(_Strict):
    """Prompt compression (whitespace folding, filler phrases; code, JSON, quotes and tool schemas never
    touched) of system, developer and user messages."""

    enabled: bool = True


class ContextPolicy(_Strict):
    """Context management: a conversation above ``max_input_tokens`` keeps its system prompt and its last
    ``keep_recent`` turns and drops the oldest middle turns (a note marks the gap). This is also the
    gateway's answer to oversized input on this route: trimmed instead of refused with 413."""

    enabled: bool = True
    max_input_tokens: int = Field(gt=0)
    keep_recent: int = Field(default=2, ge=1)
    # summarize: the dropped middle is summarized by ``summary_model`` (a configured, cheap model; metered as
    # its own attempt of the request; summaries of the same middle are cached) instead of only a note.
    method: Literal["drop_middle", "summarize"] = "drop_middle"
    summary_model: str | None = None
    summary_max_tokens: int = Field(default=256, gt=0)

    @model_validator(mode="after")
    def _summary_model(self) -> ContextPolicy:
        if self.method == "summarize" and not self.summary_model:
            raise ValueError("context.method summarize needs context.summary_model (a configured model name)")
        return self


class LeverRoute(_Strict):
    name: str = Field(min_length=1)
    match: RouteMatch = Field(default_factory=RouteMatch)
    cache: CachePolicy | None = None
    routing: RoutingPolicy | None = None
    compression: CompressionPolicy | None = None
    context: ContextPolicy | None = None
