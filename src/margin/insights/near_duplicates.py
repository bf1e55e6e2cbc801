"""Near-duplicate prompts among the retained ones (``gateway.prompt_retention``), grouped by the semantic
cache's own decision: each prompt, oldest first, is looked up in a fresh :class:`~margin.cache.SemanticCache`
with the gateway's context fingerprint (model, system prompt, tools, earlier turns and sampling parameters
must match exactly) and its final user turn; a hit joins the group of the prompt it matched, a miss starts a
group. So a group is exactly what the semantic cache would have served from one answer, verification gate
included. Pure apart from the embedding model the cache is given.

The groups feed :func:`margin.insights.recommend.cache_candidates` as its grouping key (request id -> group),
which then counts the requests a semantic cache would have served and what they cost."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ..cache import semantic_key
from ..cache._exact import cache_scope_value
from .recommend import Recommendation, cache_candidates

__all__ = ["near_duplicate_groups", "semantic_cache_candidates"]


def near_duplicate_groups(
    prompts: Iterable[Mapping[str, Any]], cache: Any, *, scopes: Mapping[str, str] | None = None
) -> dict[str, str]:
    """request_id -> the request id that opened its group, for retained prompts (dicts with ``request_id``,
    ``created_at`` and ``body`` as :meth:`retained_prompts` returns them) that have a final user turn.
    ``scopes`` (request_id -> partition, e.g. ``team:ml``) keeps groups inside the cache's partitions, as the
    gateway's cache scope does; requests without one share the ``global`` partition."""
    scopes = scopes or {}
    groups: dict[str, str] = {}
    for prompt in sorted(prompts, key=lambda p: p["created_at"]):
        key = semantic_key(prompt["body"])
        if key is None:
            continue
        fingerprint, text = key
        scope = scopes.get(prompt["request_id"], "global")
        hit = cache.lookup(scope, fingerprint, text)
        if hit is not None:
            groups[prompt["request_id"]] = hit.payload
        else:
            cache.store(scope, fingerprint, text, prompt["request_id"])
            groups[prompt["request_id"]] = prompt["request_id"]
    return groups


def semantic_cache_candidates(
    events: Iterable[Any], prompts: Iterable[Mapping[str, Any]], cache: Any, *, period_days: Decimal | int
) -> list[Recommendation]:
    """Requests a semantic cache would have served, per route: the retained prompts grouped by
    :func:`near_duplicate_groups`, then counted by :func:`~margin.insights.recommend.cache_candidates` (a repeat
    is a later request of the same group; its recorded cost is the saving). Exact repeats are part of the
    groups too, so compare with the exact-cache recommendation rather than adding the two."""
    events = list(events)
    # Partitioned by team, the gateway's default cache scope (a key's requests without a team stay apart).
    scopes = {e.request_id: cache_scope_value("team", key_id=e.key_id, tags=e.tags) for e in events}
    by_request = near_duplicate_groups(prompts, cache, scopes=scopes)
    groups = {e.event_id: by_request[e.request_id] for e in events if e.request_id in by_request}
    found = []
    for rec in cache_candidates(events, period_days=period_days, prompt_hashes=groups):
        route = rec.evidence.get("route")
        found.append(
            replace(
                rec,
                kind="semantic_cache_repeats",
                title=f"Semantic cache on {route}: {rec.evidence.get('repeat_requests')} near-duplicate requests",
                evidence={**rec.evidence, "grouped_by": "semantic cache (retained prompts)"},
                confidence="medium",
                action=f"Enable the semantic cache (cache.semantic.enabled) on the lever serving {route}.",
            )
        )
    return found
