"""Turn the hand-written ``*.txt`` pair lists in ``bench/cache/data/written/`` into ``written_pairs.jsonl``.

Each line is ``kind|style|a|b``. Kinds ``paraphrase`` and ``near_repeat`` should hit; every other kind is a
trap. A pair goes to the validation split when a hash of its text says so (about 40%), otherwise to tuning:
the split is fixed by the text alone, so adding pairs never moves old ones.

    .venv/bin/python bench/cache/data/build_written_pairs.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
HITS = {"paraphrase", "near_repeat"}


def split_of(a: str, b: str) -> str:
    return "valid" if int(hashlib.sha256(f"{a}\n{b}".encode()).hexdigest(), 16) % 5 < 2 else "tune"


def main() -> None:
    rows, seen = [], set()
    for path in sorted((HERE / "written").glob("*.txt")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            kind, style, a, b = (part.strip() for part in line.split("|"))
            if (a, b) in seen:
                raise SystemExit(f"{path.name}:{n}: duplicate pair")
            seen.add((a, b))
            rows.append(
                {
                    "id": f"{path.stem}-{n:03d}",
                    "category": kind,
                    "style": style,
                    "a": a,
                    "b": b,
                    "same_answer": kind in HITS,
                    "split": split_of(a, b),
                }
            )
    out = HERE / "written_pairs.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} pairs -> {out}")


if __name__ == "__main__":
    main()
