"""Token counts: exact for OpenAI models (tiktoken, verified offline vocabularies), labelled estimates else.

* OpenAI models map to ``o200k_base`` or ``cl100k_base`` by name (exact names and prefixes, provider prefixes
  such as ``openai/`` stripped) and are counted exactly.
* Every other model is estimated: the ``o200k_base`` count times a per-family factor, rounded up. Estimates
  are always labelled (``exact=False``, ``method`` says ``estimate: o200k_base x 1.20 (anthropic family)``).
* Chat messages add the per-message overhead of OpenAI's chat format (OpenAI cookbook, "How to count tokens
  with tiktoken", checked there against the API's ``usage.prompt_tokens``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, MarginError
from ._vocab import get_encoding

__all__ = [
    "DEFAULT_FAMILY_FACTORS",
    "TokenCount",
    "TokenInputError",
    "count_messages",
    "count_text",
    "encoding_for_model",
    "model_family",
    "token_upper_bound",
]

ESTIMATE_BASE = "o200k_base"


class TokenInputError(MarginError):
    """Text or messages handed to the counter are malformed (not a string, not a list of messages, ...)."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


@dataclass(frozen=True)
class TokenCount:
    """A token count and how it was obtained.

    ``exact`` is True only when the model's own tokenizer produced the count. ``factor`` is the family factor
    an estimate was scaled by (None for exact counts); ``encoding`` is the tokenizer that did the counting
    (for estimates, the base encoding the factor was applied to).
    """

    tokens: int
    model: str
    encoding: str
    exact: bool
    method: str
    factor: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``factor`` as a decimal string, or None)."""
        return {
            "tokens": self.tokens,
            "model": self.model,
            "encoding": self.encoding,
            "exact": self.exact,
            "method": self.method,
            "factor": None if self.factor is None else str(self.factor),
        }


# --- model -> encoding -------------------------------------------------------------------------------------
# Mirrors tiktoken.model (MODEL_TO_ENCODING / MODEL_PREFIX_TO_ENCODING) for the two encodings margin ships.
# Exact names first, then the longest matching prefix. Prefixes end in "-" (or "." for gpt-5.x) so that
# "gpt-4-" never swallows "gpt-4o" or "gpt-4.1".
_O200K = "o200k_base"
_CL100K = "cl100k_base"

_MODEL_TO_ENCODING: Mapping[str, str] = MappingProxyType(
    {
        "gpt-5": _O200K,
        "gpt-4.5": _O200K,
        "gpt-4.1": _O200K,
        "gpt-4o": _O200K,
        "chatgpt-4o": _O200K,
        "o1": _O200K,
        "o3": _O200K,
        "o4-mini": _O200K,
        "gpt-4": _CL100K,
        "gpt-3.5-turbo": _CL100K,
        "gpt-3.5": _CL100K,
        "gpt-35-turbo": _CL100K,  # Azure spelling
        "davinci-002": _CL100K,
        "babbage-002": _CL100K,
        "text-embedding-ada-002": _CL100K,
        "text-embedding-3-small": _CL100K,
        "text-embedding-3-large": _CL100K,
    }
)

_PREFIX_TO_ENCODING: Mapping[str, str] = MappingProxyType(
    {
        "gpt-5-": _O200K,  # gpt-5-mini, gpt-5-nano, gpt-5-codex, ...
        "gpt-5.": _O200K,  # gpt-5.1, gpt-5.2-pro, ...
        "gpt-4.5-": _O200K,
        "gpt-4.1-": _O200K,
        "gpt-4o-": _O200K,  # gpt-4o-mini, gpt-4o-2024-08-06, gpt-4o-audio-preview, ...
        "chatgpt-4o-": _O200K,
        "o1-": _O200K,
        "o3-": _O200K,
        "o4-": _O200K,
        "gpt-4-": _CL100K,  # gpt-4-0613, gpt-4-turbo, gpt-4-32k, ...
        "gpt-3.5-turbo-": _CL100K,
        "gpt-35-turbo-": _CL100K,
        "text-embedding-3-": _CL100K,
    }
)
_PREFIXES_LONGEST_FIRST = tuple(sorted(_PREFIX_TO_ENCODING, key=len, reverse=True))


def _normalize(model: str) -> str:
    """``"openrouter/openai/GPT-4o"`` -> ``"gpt-4o"``; ``"ft:gpt-4o-mini-2024-07-18:org::id"`` -> base."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    return name.split(":", 1)[0]


def encoding_for_model(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model (``"o200k_base"``/``"cl100k_base"``), or None if unknown.

    Provider prefixes (``openai/``, ``azure/``, ``openrouter/openai/``), case and fine-tune names are ignored.
    """
    name = _normalize(model)
    if name in _MODEL_TO_ENCODING:
        return _MODEL_TO_ENCODING[name]
    for prefix in _PREFIXES_LONGEST_FIRST:
        if name.startswith(prefix):
            return _PREFIX_TO_ENCODING[prefix]
    return None


# --- estimates for models without a public tokenizer ------------------------------------------------------
# Factor = (tokens the family's tokenizer produces) / (o200k_base tokens), for typical English prose. These
# are rough rules of thumb, not measurements of every model in a family; code, maths and non-English text vary
# more. Overridable per family (``family_factors=``, later from config).
DEFAULT_FAMILY_FACTORS: Mapping[str, Decimal] = MappingProxyType(
    {
        # Claude: Anthropic's tokenizer is not public. A published comparison of Claude 3.5 Sonnet against
        # GPT-4o (o200k_base) on identical inputs found ~16% more tokens for English articles, ~21% for maths
        # and ~30% for Python code (L. Gupta, VentureBeat, "Hidden costs in AI deployment ...", May 2025).
        # 1.20 sits in that range.
        "anthropic": Decimal("1.20"),
        # Gemini/Gemma: SentencePiece, ~256k vocabulary. Google's docs give ~4 characters per token and
        # 100 tokens ≈ 60-80 English words (OpenAI: ≈ 75 words): roughly the same as o200k, a little more.
        "google": Decimal("1.05"),
        # Llama 3/4: 128k-token tiktoken BPE whose first 100k tokens are cl100k_base's, so English counts are
        # close to cl100k, a few percent above o200k. Llama 2's 32k SentencePiece vocabulary produces
        # noticeably more (Meta: Llama 3's tokenizer uses up to 15% fewer tokens); override for Llama 2.
        "meta": Decimal("1.05"),
        # Mistral: Tekken (NeMo and later, ~131k tiktoken BPE) is close to cl100k; the older 32k SentencePiece
        # vocabulary (Mistral 7B, Mixtral) produces more. 1.10 is a rule-of-thumb blend of both.
        "mistral": Decimal("1.10"),
        # DeepSeek V2/V3/R1: 128k byte-level BPE. DeepSeek's docs say 1 English character ≈ 0.3 tokens, a
        # deliberately rough (pessimistic) rule; in practice English is within ~10% of o200k. Rule of thumb.
        "deepseek": Decimal("1.10"),
        # Qwen 2/2.5/3: ~151k byte-level BPE built from cl100k_base's vocabulary; English close to cl100k.
        "qwen": Decimal("1.05"),
        # OpenAI models margin has no encoding mapping for (a new name, gpt-oss): assume o200k (gpt-oss uses
        # o200k_harmony, the same vocabulary); still an estimate because the mapping is a guess.
        "openai": Decimal("1.00"),
        # Anything else: no basis for a factor, so none is applied; the result is still labelled an estimate.
        "unknown": Decimal("1.00"),
    }
)

# (family, substrings of the lower-cased model name). Order matters: distilled models such as
# "deepseek-r1-distill-llama-70b" use their base model's tokenizer, so Qwen/Llama are checked before DeepSeek.
_FAMILY_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("anthropic", ("claude", "anthropic")),
    ("google", ("gemini", "gemma")),
    ("qwen", ("qwen", "qwq")),
    ("meta", ("llama",)),
    ("mistral", ("mistral", "mixtral", "codestral", "ministral", "pixtral", "magistral", "devstral")),
    ("deepseek", ("deepseek",)),
)
_OPENAI_NAME = re.compile(r"^(?:gpt-|chatgpt-|o\d(?:$|-)|text-embedding-|davinci|babbage)")


def model_family(model: str) -> str:
    """The tokenizer family used for estimates: one of the keys of :data:`DEFAULT_FAMILY_FACTORS`."""
    full = model.strip().lower()
    for family, markers in _FAMILY_MARKERS:
        if any(marker in full for marker in markers):
            return family
    if "openai" in full or _OPENAI_NAME.match(_normalize(model)):
        return "openai"
    return "unknown"


def _factors(overrides: Mapping[str, Decimal] | None) -> Mapping[str, Decimal]:
    if not overrides:
        return DEFAULT_FAMILY_FACTORS
    merged = dict(DEFAULT_FAMILY_FACTORS)
    for family, value in overrides.items():
        if family not in DEFAULT_FAMILY_FACTORS:
            known = ", ".join(DEFAULT_FAMILY_FACTORS)
            raise ConfigError(f"unknown token estimate family {family!r}; known families: {known}.")
        try:
            if isinstance(value, bool):
                raise TypeError
            factor = value if isinstance(value, Decimal) else Decimal(str(value))
            valid = factor.is_finite() and factor > 0
        except (TypeError, ValueError, InvalidOperation):
            valid = False
        if not valid:
            raise ConfigError(
                f"token estimate factor for family {family!r} must be a positive number like 1.2, got {value!r}."
            )
        merged[family] = factor
    return merged


def _fmt_factor(factor: Decimal) -> str:
    """At least two decimals (``1.2`` -> ``1.20``), more if the factor has them (``1.125``)."""
    exponent = factor.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -2:
        return str(factor.quantize(Decimal("0.01")))
    return str(factor.normalize())


@dataclass(frozen=True)
class _Plan:
    """How to count for one model: exact with ``encoding``, or an estimate scaled by ``factor``."""

    encoding: str
    exact: bool
    family: str | None = None
    factor: Decimal | None = None


def _plan(model: str, family_factors: Mapping[str, Decimal] | None) -> _Plan:
    if not isinstance(model, str) or not model.strip():
        raise TokenInputError("a model name is required to count tokens, e.g. --model gpt-4o.")
    factors = _factors(family_factors)  # validate overrides even when the model is exact
    encoding = encoding_for_model(model)
    if encoding is not None:
        return _Plan(encoding=encoding, exact=True)
    family = model_family(model)
    return _Plan(encoding=ESTIMATE_BASE, exact=False, family=family, factor=factors[family])


def _estimate_label(plan: _Plan, model: str) -> str:
    assert plan.factor is not None
    label = f"estimate: {ESTIMATE_BASE} x {_fmt_factor(plan.factor)} ({plan.family} family"
    if plan.family == "unknown":
        label += f": no tokenizer or factor known for {model.strip()!r}, factor 1.00 applied"
    return label + ")"


def _scaled(count: int, plan: _Plan) -> int:
    assert plan.factor is not None
    return math.ceil(Decimal(count) * plan.factor)


def token_upper_bound(byte_length: int, model: str, *, family_factors: Mapping[str, Decimal] | None = None) -> int:
    """A cheap upper bound of what :func:`count_text` / :func:`count_messages` return for an input whose UTF-8
    (or JSON) text is ``byte_length`` bytes long, without tokenizing it.

    Every token of the byte-level BPE encodings (``o200k_base``, ``cl100k_base``) covers at least one byte, so
    a text never has more tokens than bytes; a chat request's JSON also carries more syntax bytes per message
    (braces, quotes, key names) than the chat format's overhead tokens. Estimates scale the bound by the same
    family factor as the count. The gateway reserves budgets against this bound and tokenizes only when the
    bound would matter (see docs/gateway.md, "Pricing a request before the call").
    """
    if byte_length < 0:
        raise TokenInputError(f"byte_length must be >= 0, got {byte_length}.")
    plan = _plan(model, family_factors)
    return byte_length if plan.exact else _scaled(byte_length, plan)


def count_text(text: str, model: str, *, family_factors: Mapping[str, Decimal] | None = None) -> TokenCount:
    """Tokens in ``text`` for ``model``.

    Exact (tiktoken, special-token strings treated as plain text) for OpenAI models; for others an estimate:
    ``ceil(o200k_base count x family factor)``, labelled as such. ``family_factors`` overrides factors by
    family name (see :data:`DEFAULT_FAMILY_FACTORS`).
    """
    if not isinstance(text, str):
        raise TokenInputError(f"text to count must be a string, got {type(text).__name__}.")
    plan = _plan(model, family_factors)
    n = len(get_encoding(plan.encoding).encode_ordinary(text))
    if plan.exact:
        return TokenCount(n, model, plan.encoding, True, f"exact: {plan.encoding} (tiktoken)")
    label = _estimate_label(plan, model)
    return TokenCount(_scaled(n, plan), model, plan.encoding, False, label, plan.factor)


# --- chat messages ------------------------------------------------------------------------------------------
# OpenAI cookbook ("How to count tokens with tiktoken", num_tokens_from_messages): every message costs
# 3 tokens (<|start|>{role}\n ... <|end|>) plus the tokens of each of its values (role, content, name, ...),
# a name costs 1 more, and 3 tokens prime the reply (<|start|>assistant<|message|>). The cookbook's example
# conversation gives 129 prompt tokens on gpt-3.5-turbo/gpt-4 and 124 on gpt-4o/gpt-4o-mini, matching the API.
# gpt-3.5-turbo-0301 used 4 tokens per message and -1 for a name (the name replaced the role): 127 there.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_LEGACY_0301 = ("gpt-3.5-turbo-0301", "gpt-35-turbo-0301")
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _overhead(model: str) -> tuple[int, int]:
    if _normalize(model) in _LEGACY_0301:
        return 4, -1
    return _TOKENS_PER_MESSAGE, _TOKENS_PER_NAME


def _json_text(value: object, where: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TokenInputError(f"{where}: cannot count a value that is not JSON-serializable: {exc}") from None


class _Counter:
    """Counts message values with one encoding and remembers whether any value had to be approximated."""

    def __init__(self, encoding: str) -> None:
        self._enc = get_encoding(encoding)
        self.approximated = False

    def text(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))

    def json(self, value: object, where: str) -> int:
        self.approximated = True
        return self.text(_json_text(value, where))

    def value(self, key: str, value: object, where: str) -> int:
        if value is None:  # e.g. "content": null next to tool_calls
            return 0
        if isinstance(value, str):
            return self.text(value)
        if key == "content" and isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            return sum(self.part(part, f"{where}[{j}]") for j, part in enumerate(value))
        return self.json(value, where)  # tool_calls, function_call, audio, ...: their JSON text

    def part(self, part: object, where: str) -> int:
        if isinstance(part, str):
            return self.text(part)
        if isinstance(part, Mapping) and part.get("type") in _TEXT_PART_TYPES:
            text = part.get("text")
            if isinstance(text, str):
                return self.text(text)
        return self.json(part, where)  # image_url, input_audio, file, ...: their JSON text


def count_messages(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    *,
    family_factors: Mapping[str, Decimal] | None = None,
) -> TokenCount:
    """Prompt tokens of a chat conversation (OpenAI message format), including the chat-format overhead.

    Each message adds 3 tokens plus the tokens of every value (role, content, name, ...); a ``name`` adds 1;
    3 tokens prime the reply (gpt-3.5-turbo-0301: 4 per message, -1 per name). ``content`` may be a string or
    a list of parts: text parts (``{"type": "text", "text": ...}``) count their text; any other part, and any
    non-string value such as ``tool_calls``, counts its compact JSON text, which makes the result approximate
    (``exact=False``). For models without a public tokenizer the whole o200k_base count is scaled by the
    family factor and rounded up, like :func:`count_text`.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise TokenInputError(
            "messages must be a list of message objects like "
            '[{"role": "user", "content": "Hello"}], '
            f"got {type(messages).__name__}."
        )
    plan = _plan(model, family_factors)
    per_message, per_name = _overhead(model)
    counter = _Counter(plan.encoding)
    total = _REPLY_PRIMING
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TokenInputError(
                f"messages[{i}] must be an object with 'role' and 'content', got {type(message).__name__}."
            )
        total += per_message
        for key, value in message.items():
            total += counter.value(str(key), value, f"messages[{i}].{key}")
            if key == "name" and value is not None:
                total += per_name

    overhead = f"{per_message}/message, {per_name:+d}/name, +{_REPLY_PRIMING} reply priming"
    if plan.exact:
        if counter.approximated:
            method = (
                f"approximate: {plan.encoding} (tiktoken) + chat overhead ({overhead}); "
                "non-text parts and tool calls counted as their JSON text"
            )
            return TokenCount(total, model, plan.encoding, False, method)
        method = f"exact: {plan.encoding} (tiktoken) + chat overhead ({overhead})"
        return TokenCount(total, model, plan.encoding, True, method)
    method = f"{_estimate_label(plan, model)} + OpenAI-style chat overhead ({overhead})"
    if counter.approximated:
        method += "; non-text parts and tool calls counted as their JSON text"
    return TokenCount(_scaled(total, plan), model, plan.encoding, False, method, plan.factor)
