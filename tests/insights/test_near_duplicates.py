"""Near-duplicate prompts grouped by the semantic cache's own matching (real MiniLM embedder): repeats join
the group of the first, a different number or another team's request does not, and the recommendation counts
the repeats' recorded cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.insights.near_duplicates import near_duplicate_groups, semantic_cache_candidates
from margin.usage import UsageEvent

T0 = datetime(2026, 11, 3, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def cache():
    from margin.cache import MiniLMEmbedder, SemanticCache

    embedder = MiniLMEmbedder()

    def fresh():
        return SemanticCache(embedder, max_entries=1000)

    return fresh


def prompt(rid, minutes, text, system="You are the support bot of Acme."):
    body = {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
    }
    return {"request_id": rid, "created_at": T0 + timedelta(minutes=minutes), "body": body}


def event(rid, minutes, team="support", cost="0.01"):
    when = T0 + timedelta(minutes=minutes)
    return UsageEvent(
        event_id=f"e-{rid}",
        request_id=rid,
        attempt=0,
        started_at=when,
        finished_at=when,
        status="ok",
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini",
        route="gpt-4o-mini",
        tags={"team": team},
        input_tokens=30,
        output_tokens=80,
        effective_cost=Decimal(cost),
        list_cost=Decimal(cost),
    )


def test_groups_follow_the_semantic_cache(cache):
    prompts = [
        prompt("a", 0, "How do I reset my password?"),
        prompt("b", 1, "How do I reset my password?"),
        prompt("c", 2, "How do I reset my password"),  # the same question, punctuation aside
        prompt("d", 3, "How do I reset my password?", system="You are a pirate."),  # another context
        prompt("e", 4, "Can I get a refund after 30 days?"),
        prompt("f", 5, "Can I get a refund after 90 days?"),  # a different number: never the same answer
        prompt("g", 6, "How do I reset my password?"),
    ]
    groups = near_duplicate_groups(prompts, cache(), scopes={"g": "team:other"})
    assert groups["b"] == "a" and groups["c"] == "a"
    assert groups["d"] == "d"  # its own group: the system prompt differs
    assert groups["e"] == "e" and groups["f"] == "f"
    assert groups["g"] == "g"  # another team's partition


def test_semantic_cache_recommendation_counts_the_repeats(cache):
    texts = ["How do I reset my password?"] * 6 + ["How do I reset my password"] * 2 + ["Where is my invoice?"]
    prompts = [prompt(f"r{i}", i, t) for i, t in enumerate(texts)]
    events = [event(f"r{i}", i) for i in range(len(texts))]
    (rec,) = semantic_cache_candidates(events, prompts, cache(), period_days=30)
    assert rec.kind == "semantic_cache_repeats"
    assert rec.evidence["repeat_requests"] == 7  # 8 password questions: the first fills, 7 would be served
    assert rec.estimated_monthly_saving == Decimal("0.07")  # their recorded cost, per 30 days
