"""The exact cache's core: what the key ignores and keeps, the determinism rule, scope partitions without a
shared fallback, TTL, the output-cap check, LRU bounds by count and bytes, and invalidation filters."""

from __future__ import annotations

import orjson
import pytest

from margin.cache._exact import ExactCache, cache_scope_value, exact_key, is_deterministic

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def test_the_key_ignores_transport_and_caps_but_keeps_everything_else():
    base = exact_key("m", "chat.completions", BODY)
    same = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u", "max_tokens": 9}
    assert exact_key("m", "chat.completions", same) == base
    assert exact_key("m", "chat.completions", dict(reversed(list(BODY.items())))) == base  # order-free
    for changed in (
        {**BODY, "messages": [{"role": "user", "content": "hi "}]},
        {**BODY, "temperature": 0.0001},
        {**BODY, "seed": 1},
        {**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**BODY, "response_format": {"type": "json_object"}},
        {**BODY, "some_future_parameter": True},  # unknown fields can only cause misses
    ):
        assert exact_key("m", "chat.completions", changed) != base
    assert exact_key("other", "chat.completions", BODY) != base
    assert exact_key("m", "messages", BODY) != base


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({}, False),  # provider default is 1.0
        ({"temperature": 0.2}, False),
        ({"temperature": 0, "n": 2}, False),
        ({"temperature": False}, False),
    ],
)
def test_only_deterministic_requests_qualify(body, expected):
    assert is_deterministic(body) is expected


def test_scopes_never_fall_back_to_a_shared_partition():
    assert cache_scope_value("team", key_id="k1", tags={"team": "ml"}) == "team:ml"
    assert cache_scope_value("team", key_id="k1", tags={}) == "key:k1"
    assert cache_scope_value("project", key_id="k1", tags={"project": "p"}) == "project:p"
    assert cache_scope_value("key", key_id="k1", tags={"team": "ml"}) == "key:k1"
    assert cache_scope_value("global", key_id="k1", tags={}) == "global"


def test_ttl_cap_check_lru_and_invalidation():
    now = [0.0]
    answer = {"choices": [{"message": {"content": "x" * 100}}]}
    size = len(orjson.dumps(answer))
    cache = ExactCache(max_entries=3, max_bytes=10 * size, clock=lambda: now[0])
    for i in range(3):
        cache.put("team:a", f"k{i}", answer, output_tokens=50, route="r1", served_model="m", ttl_seconds=10)
    assert cache.get("team:a", "k0", max_output_tokens=49) is None  # answer longer than the new cap
    assert cache.get("team:a", "k0", max_output_tokens=50) is not None  # touch: k1 is now the oldest
    assert cache.get("team:b", "k0") is None  # another partition
    cache.put("team:a", "k3", answer, output_tokens=5, route="r2", served_model="m", ttl_seconds=10)
    assert cache.get("team:a", "k1") is None and cache.evictions == 1
    assert len(cache) == 3 and cache.size_bytes == 3 * size
    now[0] = 10.0
    assert cache.get("team:a", "k0") is None  # expired exactly at its TTL
    assert cache.clear(route="r2") == 1 and len(cache) == 1
    cache.put("team:z", "abc", answer, output_tokens=1, route="r1", served_model="m", ttl_seconds=10)
    assert cache.clear(key_prefix="ab") == 1
    assert cache.clear() == 1 and len(cache) == 0 and cache.size_bytes == 0


def test_byte_bound_evicts_and_oversized_bodies_are_refused():
    answer = {"content": "y" * 1000}
    size = len(orjson.dumps(answer))
    cache = ExactCache(max_entries=100, max_bytes=2 * size + 10)
    for i in range(3):
        cache.put("p", f"k{i}", answer, output_tokens=1, route="r", served_model="m", ttl_seconds=10)
    assert len(cache) == 2 and cache.size_bytes <= 2 * size + 10
    assert (
        cache.put(
            "p", "big", {"content": "z" * 10 * size}, output_tokens=1, route="r", served_model="m", ttl_seconds=10
        )
        is None
    )
