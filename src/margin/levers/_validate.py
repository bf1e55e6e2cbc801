"""Cascade validators: is a cheap model's answer good enough to return, or should the cascade escalate?

Each validator takes ``(answer_text, finish_reason, request_body)`` and returns a :class:`Validation`. The
built-ins, in the order :func:`validate_answer` runs them:

* ``non_empty``: the answer has visible text (an answer that only calls tools passes);
* ``not_truncated``: ``finish_reason`` is not ``length`` (OpenAI) / ``max_tokens`` (Anthropic);
* ``no_refusal``: the opening of the answer is not a refusal (English, French, German, Spanish, Portuguese,
  Chinese, Japanese phrasings; only the first 300 characters are read, so a long answer that mentions
  "I can't" in passing is not a refusal);
* ``json``: when ``response_format`` asks for ``json_object`` or ``json_schema``, the answer parses as JSON
  (an object for ``json_object``);
* ``json_schema``: for ``json_schema`` response formats, the parsed answer matches the schema.

The schema check implements the subset OpenAI structured outputs use: ``type`` (one or a list, ``null``
included), ``nullable``, ``properties``, ``required``, ``additionalProperties`` (bool or schema), ``items``,
``enum``, ``const``, ``anyOf``, ``$ref`` to ``#``, ``#/$defs/...`` or ``#/definitions/...`` (recursion
allowed), and the bounds ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``, ``minLength``/
``maxLength``, ``minItems``/``maxItems``, ``pattern``. Other keywords (``format``, ``allOf``, ``oneOf``,
``not``, ...) are ignored, i.e. accepted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_CHECKS",
    "REGISTRY",
    "Validation",
    "Validator",
    "ValidatorRegistry",
    "check_json",
    "check_json_schema",
    "check_no_refusal",
    "check_non_empty",
    "check_not_truncated",
    "register_validator",
    "schema_error",
    "validate_answer",
]


@dataclass(frozen=True)
class Validation:
    """``ok``, and when not ok, a readable ``reason`` and the name of the ``check`` that failed."""

    ok: bool
    reason: str | None = None
    check: str | None = None

    @classmethod
    def passed(cls) -> Validation:
        return _PASSED

    @classmethod
    def failed(cls, reason: str, check: str | None = None) -> Validation:
        return cls(False, reason, check)


_PASSED = Validation(True)

Validator = Callable[[str, str | None, Mapping[str, Any]], Validation]

# --- the built-in checks -----------------------------------------------------------------------------------
_TOOL_FINISH = frozenset({"tool_calls", "function_call", "tool_use"})
_TRUNCATED_FINISH = frozenset({"length", "max_tokens"})


def check_non_empty(answer_text: str, finish_reason: str | None, request_body: Mapping[str, Any]) -> Validation:
    if finish_reason in _TOOL_FINISH or (answer_text or "").strip():
        return _PASSED
    return Validation.failed("empty answer", "non_empty")


def check_not_truncated(answer_text: str, finish_reason: str | None, request_body: Mapping[str, Any]) -> Validation:
    if finish_reason in _TRUNCATED_FINISH:
        return Validation.failed(
            f"answer cut off by the output limit (finish_reason {finish_reason!r})", "not_truncated"
        )
    return _PASSED


_APOLOGY_EN = r"(?:(?:i['’]m|i\s+am)\s+(?:very\s+|really\s+|so\s+)?sorry|sorry|unfortunately|i\s+apologi[sz]e)"
_CANNOT_EN = (
    r"i\s+(?:can['’]?t|cannot|can\s+not|won['’]t|will\s+not|am\s+(?:not\s+able|unable)|['’]m\s+(?:not\s+able|unable)"
    r"|am\s+not\s+allowed|['’]m\s+not\s+allowed)"
)
_REFUSALS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # English: an apology followed by inability; or inability to help/assist/comply/...; or a decline.
        rf"{_APOLOGY_EN}[,.!]?\s*(?:but\s*,?\s*)?{_CANNOT_EN}\b",
        rf"(?:as\s+an\s+ai(?:\s+language\s+model|\s+model|\s+assistant)?,?\s*)?{_CANNOT_EN}(?:\s+to)?\s+"
        r"(?:help|assist|comply|provide|do\s+that|fulfil+|answer|complete|engage|support|share|create|generate)\b",
        r"i\s+(?:must|have\s+to|need\s+to)\s+(?:respectfully\s+|politely\s+)?decline\b",
        r"as\s+an\s+ai(?:\s+language\s+model|\s+model|\s+assistant)?,\s*i\s+(?:can['’]?t|cannot|am\s+unable|don['’]t)\b",
        # French
        r"(?:(?:je\s+suis\s+(?:vraiment\s+)?désolée?|désolée?|malheureusement)[,.!]?\s*(?:mais\s+)?)"
        r"je\s+ne\s+(?:peux|pourrai|suis\s+pas\s+en\s+mesure)\b",
        r"je\s+ne\s+(?:peux|pourrai)\s+pas\s+(?:\w+\s+){0,2}?(?:aider|répondre|fournir|faire|satisfaire|accéder)",
        # German
        r"(?:(?:es\s+tut\s+mir\s+(?:sehr\s+)?leid|entschuldigung)[,.!]?\s*(?:aber\s+)?)?(?:leider\s+)?"
        r"(?:ich\s+kann|kann\s+ich)\b[^.\n]{0,40}?\bnicht\b[^.\n]{0,30}?"
        r"\b(?:helfen|unterstützen|beantworten|erfüllen|nachkommen|erstellen|bereitstellen)",
        # Spanish
        r"(?:(?:lo\s+siento(?:\s+mucho)?|disculpa|perdón|lamentablemente|desafortunadamente)[,.!]?\s*(?:pero\s+)?)"
        r"no\s+(?:puedo|podré)\b",
        r"no\s+(?:puedo|podré)\s+(?:\w+\s+){0,2}?(?:ayudar|ayudarte|responder|proporcionar|hacer|cumplir|asistir)",
        # Portuguese
        r"(?:(?:desculpe|lamento|sinto\s+muito|infelizmente)[,.!]?\s*(?:mas\s+)?)(?:eu\s+)?não\s+(?:posso|consigo)\b",
        r"(?:eu\s+)?não\s+(?:posso|consigo)\s+(?:\w+\s+){0,2}?(?:ajudar|responder|fornecer|fazer|atender|cumprir)",
        # Chinese
        r"(?:很抱歉|非常抱歉|抱歉|对不起)[，,。！!]?\s*(?:但是?)?我(?:无法|不能|没办法)",
        r"我(?:无法|不能)(?:帮助|协助|提供|回答|完成|满足)",
        # Japanese
        r"(?:申し訳(?:ありません|ございません)が?|すみませんが?)[、,。]?.{0,40}?(?:できません|いたしかねます)",
    )
)
_OPENING_CHARS = 300
_LEADING_NOISE = re.compile(r"^[\s#>\"'“‘`]+")
_EMPHASIS = re.compile(r"\*+|(?<!\w)_+|_+(?!\w)")  # markdown bold/italic markers


def check_no_refusal(answer_text: str, finish_reason: str | None, request_body: Mapping[str, Any]) -> Validation:
    opening = _LEADING_NOISE.sub("", _EMPHASIS.sub("", (answer_text or "")[:_OPENING_CHARS]))
    for pattern in _REFUSALS:
        if pattern.match(opening):
            excerpt = opening[:80].split("\n", 1)[0]
            return Validation.failed(f"the answer is a refusal ({excerpt!r})", "no_refusal")
    return _PASSED


def _response_format(request_body: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None]:
    """(``json_object`` | ``json_schema`` | None, the schema if one was given)."""
    fmt = request_body.get("response_format") if isinstance(request_body, Mapping) else None
    if not isinstance(fmt, Mapping):
        return None, None
    kind = fmt.get("type")
    if kind == "json_object":
        return kind, None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return kind, schema if isinstance(schema, Mapping) else None
    return None, None


def _parse(answer_text: str) -> tuple[bool, Any, str]:
    try:
        return True, json.loads(answer_text or ""), ""
    except ValueError as exc:
        return False, None, str(exc)


def check_json(answer_text: str, finish_reason: str | None, request_body: Mapping[str, Any]) -> Validation:
    kind, _ = _response_format(request_body)
    if kind is None:
        return _PASSED
    ok, value, error = _parse(answer_text)
    if not ok:
        return Validation.failed(f"JSON was requested ({kind}) but the answer is not valid JSON: {error}", "json")
    if kind == "json_object" and not isinstance(value, dict):
        return Validation.failed(f"json_object was requested but the answer is a JSON {_type_name(value)}", "json")
    return _PASSED


def check_json_schema(answer_text: str, finish_reason: str | None, request_body: Mapping[str, Any]) -> Validation:
    kind, schema = _response_format(request_body)
    if kind != "json_schema" or schema is None:
        return _PASSED
    ok, value, _ = _parse(answer_text)
    if not ok:
        return _PASSED  # the json check reports unparseable answers
    error = schema_error(value, schema)
    if error is not None:
        return Validation.failed(f"the answer does not match the requested JSON schema: {error}", "json_schema")
    return _PASSED


# --- a small JSON-Schema validator (the structured-outputs subset) -----------------------------------------
_MAX_REF_DEPTH = 64


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    return False


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``; ``1`` equals ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, Mapping) else None


def schema_error(instance: Any, schema: Mapping[str, Any]) -> str | None:
    """The first place where ``instance`` (parsed JSON) breaks ``schema``, as ``"$.path: problem"``; None if it
    matches. See the module docstring for the supported keywords."""
    return _check(instance, schema, schema, "$", 0)


def _check(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> str | None:
    if schema is True or schema is None:
        return None
    if schema is False:
        return f"{path}: no value is allowed here"
    if not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        if depth >= _MAX_REF_DEPTH:
            return f"{path}: $ref nesting deeper than {_MAX_REF_DEPTH}"
        target = _resolve(str(schema["$ref"]), root)
        if target is None:
            return f"{path}: cannot resolve $ref {schema['$ref']!r}"
        error = _check(value, target, root, path, depth + 1)
        if error is not None:
            return error

    if "anyOf" in schema and isinstance(schema["anyOf"], Sequence):
        branches = list(schema["anyOf"])
        if branches and not any(_check(value, b, root, path, depth + 1) is None for b in branches):
            return f"{path}: matches none of the {len(branches)} anyOf alternatives"

    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if schema.get("nullable") is True:
            allowed.append("null")
        if not any(_is_type(value, t) for t in allowed):
            return f"{path}: expected {' or '.join(map(str, allowed))}, got {_type_name(value)}"
    elif schema.get("nullable") is True and value is None:
        return None

    if "enum" in schema and isinstance(schema["enum"], Sequence):
        if not any(_json_equal(value, option) for option in schema["enum"]):
            return f"{path}: {json.dumps(value)[:60]} is not one of {json.dumps(list(schema['enum']))[:120]}"
    if "const" in schema and not _json_equal(value, schema["const"]):
        return f"{path}: expected {json.dumps(schema['const'])[:60]}"

    if isinstance(value, dict):
        return _check_object(value, schema, root, path, depth)
    if isinstance(value, list):
        return _check_array(value, schema, root, path, depth)
    if isinstance(value, str):
        return _check_string(value, schema, path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _check_number(value, schema, path)
    return None


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str, depth: int):
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    for name in schema.get("required") or ():
        if name not in value:
            return f"{path}: missing required property {name!r}"
    extra_schema = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = f"{path}.{name}" if re.fullmatch(r"[A-Za-z_]\w*", name) else f"{path}[{json.dumps(name)}]"
        if name in properties:
            error = _check(item, properties[name], root, where, depth + 1)
        elif extra_schema is False:
            return f"{path}: unexpected property {name!r}"
        else:
            error = _check(item, extra_schema, root, where, depth + 1)
        if error is not None:
            return error
    return None


def _check_array(value: list[Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str, depth: int):
    if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
        return f"{path}: {len(value)} items, at least {schema['minItems']} required"
    if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
        return f"{path}: {len(value)} items, at most {schema['maxItems']} allowed"
    items = schema.get("items")
    if isinstance(items, Mapping | bool):
        for i, item in enumerate(value):
            error = _check(item, items, root, f"{path}[{i}]", depth + 1)
            if error is not None:
                return error
    return None


def _check_string(value: str, schema: Mapping[str, Any], path: str) -> str | None:
    if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
        return f"{path}: shorter than {schema['minLength']} characters"
    if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
        return f"{path}: longer than {schema['maxLength']} characters"
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            return None  # a pattern Python cannot compile is not held against the answer
        if not matched:
            return f"{path}: does not match pattern {pattern!r}"
    return None


def _check_number(value: float, schema: Mapping[str, Any], path: str) -> str | None:
    def bound(key: str) -> float | None:
        limit = schema.get(key)
        return limit if isinstance(limit, int | float) and not isinstance(limit, bool) else None

    if (limit := bound("minimum")) is not None and value < limit:
        return f"{path}: {value} is below the minimum {limit}"
    if (limit := bound("maximum")) is not None and value > limit:
        return f"{path}: {value} is above the maximum {limit}"
    if (limit := bound("exclusiveMinimum")) is not None and value <= limit:
        return f"{path}: {value} must be greater than {limit}"
    if (limit := bound("exclusiveMaximum")) is not None and value >= limit:
        return f"{path}: {value} must be less than {limit}"
    return None


# --- registry and the combined check -----------------------------------------------------------------------
DEFAULT_CHECKS: tuple[str, ...] = ("non_empty", "not_truncated", "no_refusal", "json", "json_schema")


class ValidatorRegistry:
    """Validators by name. The built-ins are registered on creation; add your own with :meth:`register`."""

    def __init__(self) -> None:
        self._validators: dict[str, Validator] = {
            "non_empty": check_non_empty,
            "not_truncated": check_not_truncated,
            "no_refusal": check_no_refusal,
            "json": check_json,
            "json_schema": check_json_schema,
        }

    def register(self, name: str, validator: Validator, *, replace: bool = False) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a validator needs a non-empty name.")
        if not callable(validator):
            raise TypeError(f"validator {name!r} must be callable.")
        if name in self._validators and not replace:
            raise ValueError(f"a validator named {name!r} is already registered (pass replace=True).")
        self._validators[name] = validator

    def get(self, name: str) -> Validator:
        try:
            return self._validators[name]
        except KeyError:
            raise KeyError(f"no validator named {name!r}; registered: {', '.join(sorted(self._validators))}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._validators)

    def __contains__(self, name: object) -> bool:
        return name in self._validators


# The process-wide registry :func:`validate_answer` uses unless given another.
REGISTRY = ValidatorRegistry()


def register_validator(name: str, *, replace: bool = False) -> Callable[[Validator], Validator]:
    """Decorator: register a validator in :data:`REGISTRY` under ``name``."""

    def decorate(validator: Validator) -> Validator:
        REGISTRY.register(name, validator, replace=replace)
        return validator

    return decorate


def validate_answer(
    answer_text: str | None,
    finish_reason: str | None,
    request_body: Mapping[str, Any],
    *,
    extra: Iterable[str | Validator] = (),
    checks: Sequence[str] = DEFAULT_CHECKS,
    registry: ValidatorRegistry | None = None,
) -> Validation:
    """Run ``checks`` (the built-ins by default; each decides whether it applies), then ``extra`` (registered
    names or callables), and return the first failure, or a pass. A failure's ``check`` names the validator
    (a callable's ``__name__``)."""
    reg = REGISTRY if registry is None else registry
    text = answer_text or ""
    for item in [*checks, *extra]:
        validator = reg.get(item) if isinstance(item, str) else item
        name = item if isinstance(item, str) else getattr(item, "__name__", "custom")
        result = validator(text, finish_reason, request_body)
        if not isinstance(result, Validation):
            raise TypeError(f"validator {name!r} returned {type(result).__name__}, expected Validation.")
        if not result.ok:
            return result if result.check else Validation(False, result.reason or f"{name} failed", name)
    return _PASSED
