from __future__ import annotations

import re
import time

from margin.ids import new_id


def test_ids_are_hex_unique_and_sort_by_creation_time():
    ids = []
    for _ in range(2000):
        ids.append(new_id())
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    earlier = new_id()
    time.sleep(0.002)
    later = new_id()
    assert earlier < later
    # the first 14 hex digits are microseconds since the epoch
    assert abs(int(later[:14], 16) / 1e6 - time.time()) < 5
