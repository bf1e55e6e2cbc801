"""The exact cache: answers keyed by a normalized hash of everything that determines them.

Pure and synchronous (no I/O): the gateway decides when to look up and store; this module says what the key
is, whether a request may use the cache at all, and keeps the entries (TTL, LRU bound by count and bytes).

What goes into the key: the public model name and the whole request body EXCEPT fields that cannot change
the answer (``stream``, ``stream_options``, ``metadata``, ``user``, ``store``, ``service_tier`` and the
output caps ``max_tokens`` / ``max_completion_tokens``), serialized canonically (sorted keys, no
whitespace). Keeping every other field, including ones margin does not know yet, means an unknown new
parameter can only cause a miss, never a wrong hit. The output cap is left out on purpose: an answer that
finished (``finish_reason`` stop / ``end_turn``, never ``length``) does not depend on it, and a hit is served
only when the cached answer fits the new request's cap (see :meth:`ExactCache.get`).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ._context import TRANSPORT_FIELDS

__all__ = [
    "CacheEntry",
    "CacheScope",
    "ExactCache",
    "cache_scope_value",
    "exact_key",
    "is_deterministic",
]

CacheScope = Literal["key", "team", "project", "global"]

# Body fields that cannot change the answer, and the output caps (which the hit check handles).
_IGNORED_FIELDS = TRANSPORT_FIELDS | {"max_tokens", "max_completion_tokens"}


def exact_key(model: str, endpoint: str, body: Mapping[str, Any]) -> str:
    """The cache key (sha256 hex) of a request to public model ``model`` on ``endpoint``."""
    material = {k: v for k, v in body.items() if k not in _IGNORED_FIELDS}
    material["model"] = model
    canonical = orjson.dumps({"endpoint": endpoint, "request": material}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def is_deterministic(body: Mapping[str, Any]) -> bool:
    """Whether the request asks for a repeatable answer: temperature 0 (absent means the provider default,
    1.0 for OpenAI and Anthropic) and a single choice."""
    temperature = body.get("temperature")
    n = body.get("n", 1)
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0 and n == 1


def cache_scope_value(scope: CacheScope, *, key_id: str | None, tags: Mapping[str, str]) -> str:
    """The partition a request's entries live in. A team or project scope without that tag falls back to
    the key, never to a shared partition: no request can read another team's answers by omitting a tag."""
    if scope == "global":
        return "global"
    if scope in ("team", "project") and tags.get(scope):
        return f"{scope}:{tags[scope]}"
    return f"key:{key_id or '-'}"


@dataclass(frozen=True)
class CacheEntry:
    """One cached answer: the upstream's JSON body, its usage (to price the avoided cost at current
    prices), and where it came from."""

    body: dict[str, Any]
    output_tokens: int
    route: str  # the lever route (policy) that stored it, for invalidation by route
    served_model: str
    created_at: float
    expires_at: float
    size: int
    # The request's cache key (prompt hash). Set on semantic-cache entries, which are found by meaning, not by
    # key, so that clearing by key prefix reaches them too.
    key: str = ""


@dataclass
class ExactCache:
    """Entries by (scope partition, key), with a TTL each and LRU eviction past ``max_entries`` or
    ``max_bytes`` (the JSON size of the bodies). Not thread-safe: the gateway's event loop owns it."""

    max_entries: int = 10_000
    max_bytes: int = 256 * 1024 * 1024
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[tuple[str, str], CacheEntry] = field(default_factory=OrderedDict)
    _bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, partition: str, key: str, *, max_output_tokens: int | None = None) -> CacheEntry | None:
        """The live entry, or None. An entry whose answer is longer than ``max_output_tokens`` (the new
        request's cap) is not served: the client asked for less than it holds."""
        entry = self._entries.get((partition, key))
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= self.clock():
            self._remove((partition, key))
            self.misses += 1
            return None
        if max_output_tokens is not None and entry.output_tokens > max_output_tokens:
            self.misses += 1
            return None
        self._entries.move_to_end((partition, key))
        self.hits += 1
        return entry

    def put(
        self,
        partition: str,
        key: str,
        body: dict[str, Any],
        *,
        output_tokens: int,
        route: str,
        served_model: str,
        ttl_seconds: float,
    ) -> CacheEntry | None:
        """Store an answer (the caller has checked it is cacheable). Returns the entry, or None when it is
        larger than the whole cache."""
        size = len(orjson.dumps(body))
        if size > self.max_bytes or ttl_seconds <= 0:
            return None
        now = self.clock()
        entry = CacheEntry(body, output_tokens, route, served_model, now, now + ttl_seconds, size)
        if (partition, key) in self._entries:
            self._remove((partition, key))
        self._entries[(partition, key)] = entry
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
        return entry

    def clear(self, *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None) -> int:
        """Drop entries matching every given filter (all entries when none is given). Returns how many."""
        doomed = [
            k
            for k, e in self._entries.items()
            if (route is None or e.route == route)
            and (partition is None or k[0] == partition)
            and (key_prefix is None or k[1].startswith(key_prefix))
        ]
        for k in doomed:
            self._remove(k)
        return len(doomed)

    def _remove(self, k: tuple[str, str]) -> None:
        entry = self._entries.pop(k)
        self._bytes -= entry.size
