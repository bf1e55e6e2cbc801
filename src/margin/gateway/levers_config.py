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

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CachePolicy", "LeverRoute", "RouteMatch"]


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


class CachePolicy(_Strict):
    """The exact cache. Only deterministic requests (temperature 0, one choice) are cached unless
    ``cache_nondeterministic``; entries live ``ttl_seconds`` in the ``scope`` partition (``team`` by default:
    no team ever gets another team's answers; a request without the tag falls back to its key)."""

    enabled: bool = True
    ttl_seconds: float = Field(default=3600, gt=0)
    scope: Literal["key", "team", "project", "global"] = "team"
    cache_nondeterministic: bool = False


class LeverRoute(_Strict):
    name: str = Field(min_length=1)
    match: RouteMatch = Field(default_factory=RouteMatch)
    cache: CachePolicy | None = None
