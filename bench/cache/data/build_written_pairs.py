"""Turn the hand-written ``*.txt`` pair lists in ``bench/cache/data/written/`` into ``written_pairs.jsonl``,
and those in ``bench/cache/data/verifier/`` into ``verifier_pairs.jsonl``.

Each line is ``kind|style|a|b``. Kinds ``paraphrase`` and ``near_repeat`` should hit; every other kind is a
trap. A pair of ``written/`` goes to the validation split when a hash of its text says so (about 40%),
otherwise to tuning: the split is fixed by the text alone, so adding pairs never moves old ones. Every pair
of ``verifier/`` (written later, to give the learned verifier more training pairs) is a tuning pair.

    .venv/bin/python bench/cache/data/build_written_pairs.py
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
HITS = {"paraphrase", "near_repeat"}


def split_of(a: str, b: str) -> str:
    return "valid" if int(hashlib.sha256(f"{a}\n{b}".encode()).hexdigest(), 16) % 5 < 2 else "tune"


def build(folder: str, out_name: str, split: str | None, seen: set[tuple[str, str]]) -> None:
    rows = []
    for path in sorted((HERE / folder).glob("*.txt")):
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
                    "split": split or split_of(a, b),
                }
            )
    out = HERE / out_name
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} pairs -> {out}")


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def check_verifier_pairs() -> None:
    """No pair of ``verifier/`` may share a text with a validation pair or a held-out pair (fow-cache's
    ``pairs.jsonl``, when installed): names only the offending own pairs, never a held-out text."""
    own = [json.loads(line) for line in (HERE / "verifier_pairs.jsonl").read_text().splitlines()]
    written = [json.loads(line) for line in (HERE / "written_pairs.jsonl").read_text().splitlines()]
    other = {_norm(t) for r in written if r["split"] == "valid" for t in (r["a"], r["b"])}
    try:
        from fow_cache.data import load_questions

        other |= {_norm(t) for r in load_questions() for t in (r["a"], r["b"])}
    except ImportError:
        print("fow-cache is not installed: verifier pairs checked against the validation split only")
    bad = [r["id"] for r in own if _norm(r["a"]) in other or _norm(r["b"]) in other]
    if bad:
        raise SystemExit(f"verifier pairs sharing a text with validation or held-out pairs: {', '.join(bad)}")


def main() -> None:
    seen: set[tuple[str, str]] = set()
    build("written", "written_pairs.jsonl", None, seen)
    build("verifier", "verifier_pairs.jsonl", "tune", seen)
    check_verifier_pairs()


if __name__ == "__main__":
    main()
