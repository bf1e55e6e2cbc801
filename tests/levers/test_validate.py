"""Cascade validators: emptiness, truncation, refusals, JSON, the JSON-Schema subset, the registry."""

from __future__ import annotations

import json

import pytest

from margin.levers import REGISTRY, Validation, ValidatorRegistry, register_validator, schema_error, validate_answer

PLAIN: dict = {"messages": [{"role": "user", "content": "hi"}]}
JSON_OBJECT = {"response_format": {"type": "json_object"}}


def json_schema_body(schema: dict) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}}


def test_a_plain_good_answer_passes():
    assert validate_answer("Paris.", "stop", PLAIN) == Validation(True)


@pytest.mark.parametrize("answer", ["", "   \n\t", None])
def test_empty_answers_fail(answer):
    result = validate_answer(answer, "stop", PLAIN)
    assert (result.ok, result.check) == (False, "non_empty")


def test_an_answer_that_only_calls_tools_is_not_empty():
    assert validate_answer("", "tool_calls", PLAIN).ok
    assert validate_answer("", "tool_use", PLAIN).ok


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
def test_truncated_answers_fail(finish):
    result = validate_answer("The answer is", finish, PLAIN)
    assert (result.ok, result.check) == (False, "not_truncated")
    assert finish in (result.reason or "")


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, I cannot do that.",
        "Sorry, I can't assist with that request.",
        "I can't help with that.",
        "I am unable to comply with this request.",
        "As an AI language model, I cannot browse the internet.",
        "I must respectfully decline.",
        "**I'm sorry**, but I won't provide that.",
        "Je suis désolé, mais je ne peux pas vous aider avec cela.",
        "Je ne peux pas vous aider avec cette demande.",
        "Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.",
        "Leider kann ich diese Anfrage nicht erfüllen.",
        "Lo siento, pero no puedo ayudarte con eso.",
        "No puedo ayudar con esa solicitud.",
        "Desculpe, mas não posso ajudar com isso.",
        "抱歉，我无法帮助你完成这个请求。",
        "我不能提供这方面的信息。",
        "申し訳ありませんが、そのご依頼にはお応えできません。",
    ],
)
def test_refusals_are_detected(answer):
    result = validate_answer(answer, "stop", PLAIN)
    assert (result.ok, result.check) == (False, "no_refusal"), answer


@pytest.mark.parametrize(
    "answer",
    [
        "I can't believe how simple this is: use a dict.",
        "Sorry for the delay! Here is the summary you asked for.",
        "The function cannot help but return None when the input is empty.",
        "Here is the plan. " + "x " * 200 + "I'm sorry, but I can't help with that.",  # past the opening
        "Ich kann das gern erklären: zuerst ...",
        "Claro, puedo ayudarte con eso.",
        "申し訳ありませんが、少し長くなります。結論から言うと…",
    ],
)
def test_helpful_answers_are_not_refusals(answer):
    assert validate_answer(answer, "stop", PLAIN).ok, answer


def test_json_is_checked_only_when_asked_for():
    assert validate_answer("not json", "stop", PLAIN).ok
    bad = validate_answer("not json", "stop", JSON_OBJECT)
    assert (bad.ok, bad.check) == (False, "json")
    assert validate_answer('  {"a": 1}\n', "stop", JSON_OBJECT).ok
    fenced = validate_answer('```json\n{"a": 1}\n```', "stop", JSON_OBJECT)
    assert not fenced.ok  # a client parsing the body would fail too
    array = validate_answer("[1, 2]", "stop", JSON_OBJECT)
    assert (array.ok, array.check) == (False, "json")
    assert "array" in (array.reason or "")
    assert not validate_answer("[1", "stop", json_schema_body({"type": "array"})).ok


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": ["integer", "null"], "minimum": 0},
        "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "contact": {
            "anyOf": [
                {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
                {"type": "null"},
            ]
        },
    },
    "required": ["name", "age", "role", "tags", "contact"],
    "additionalProperties": False,
}
GOOD_PERSON = {"name": "Ada", "age": 36, "role": "admin", "tags": ["x"], "contact": None}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"name": 5}, "$.name: expected string, got integer"),
        ({"name": ""}, "$.name: shorter than 1"),
        ({"age": -1}, "$.age: -1 is below the minimum 0"),
        ({"age": 3.5}, "$.age: expected integer or null, got number"),
        ({"age": True}, "$.age: expected integer or null, got boolean"),
        ({"role": "root"}, '$.role: "root" is not one of'),
        ({"tags": ["a", 1]}, "$.tags[1]: expected string, got integer"),
        ({"tags": ["a", "b", "c", "d"]}, "$.tags: 4 items, at most 3"),
        ({"contact": {"phone": "1"}}, "$.contact: matches none of the 2 anyOf"),
        ({"extra": 1}, "$: unexpected property 'extra'"),
    ],
)
def test_schema_mismatches_name_the_place(change, where):
    answer = json.dumps({**GOOD_PERSON, **change})
    result = validate_answer(answer, "stop", json_schema_body(PERSON))
    assert (result.ok, result.check) == (False, "json_schema")
    assert where in (result.reason or "")


def test_schema_matches():
    assert validate_answer(json.dumps(GOOD_PERSON), "stop", json_schema_body(PERSON)).ok
    with_contact = {**GOOD_PERSON, "age": None, "contact": {"email": "a@b.c"}}
    assert schema_error(with_contact, PERSON) is None
    missing = {k: v for k, v in GOOD_PERSON.items() if k != "tags"}
    assert schema_error(missing, PERSON) == "$: missing required property 'tags'"


def test_schema_refs_and_recursion():
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["value", "children"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    }
    good = {
        "value": 1,
        "children": [{"value": 2, "children": []}, {"value": 3, "children": [{"value": 4, "children": []}]}],
    }
    assert schema_error(good, tree) is None
    bad = {"value": 1, "children": [{"value": 2, "children": [{"value": "x", "children": []}]}]}
    assert schema_error(bad, tree) == "$.children[0].children[0].value: expected integer, got string"
    assert schema_error(1, {"$ref": "#/$defs/missing"}) == "$: cannot resolve $ref '#/$defs/missing'"
    assert schema_error(1, {"$ref": "#"}) is not None  # a self-reference with no exit stops, it does not hang


def test_json_equality_in_enum_and_const():
    assert schema_error(1, {"enum": [True]}) is not None  # true is not 1
    assert schema_error(True, {"enum": [1]}) is not None
    assert schema_error(1.0, {"enum": [1]}) is None  # 1 == 1.0 in JSON
    assert schema_error(2.0, {"type": "integer"}) is None
    assert schema_error({"a": [1]}, {"const": {"a": [1]}}) is None
    assert schema_error("x", {"type": "string", "nullable": True}) is None
    assert schema_error(None, {"type": "string", "nullable": True}) is None
    assert schema_error("abc", {"type": "string", "pattern": "^a.c$"}) is None
    assert schema_error("abd", {"type": "string", "pattern": "^a.c$"}) is not None
    assert schema_error(5, {"exclusiveMaximum": 5}) is not None
    assert schema_error({"k": 1}, {"type": "object", "additionalProperties": {"type": "string"}}) is not None


def test_checks_run_in_order_and_return_the_first_failure():
    # empty comes before JSON; truncation before refusal
    assert validate_answer("", "stop", JSON_OBJECT).check == "non_empty"
    assert validate_answer("I can't help with that.", "length", PLAIN).check == "not_truncated"
    assert validate_answer("I can't help with that.", "stop", PLAIN, checks=("non_empty",)).ok


def test_registry_by_name_and_callables():
    registry = ValidatorRegistry()

    def short(answer, finish, body):
        return Validation(True) if len(answer) < 10 else Validation(False, "too long")

    registry.register("short", short)
    assert "short" in registry
    with pytest.raises(ValueError):
        registry.register("short", short)
    registry.register("short", short, replace=True)
    result = validate_answer("a long answer indeed", "stop", PLAIN, extra=["short"], registry=registry)
    assert result == Validation(False, "too long", "short")
    direct = validate_answer("a long answer indeed", "stop", PLAIN, extra=[short])
    assert direct.check == "short"
    with pytest.raises(KeyError):
        validate_answer("x", "stop", PLAIN, extra=["nope"], registry=registry)
    with pytest.raises(TypeError):
        validate_answer("x", "stop", PLAIN, extra=[lambda a, f, b: True])


def test_register_validator_decorator_uses_the_default_registry():
    name = "test-only-mentions-paris"
    try:

        @register_validator(name)
        def mentions_paris(answer, finish, body):
            return Validation(True) if "Paris" in answer else Validation.failed("no Paris", name)

        assert not validate_answer("Lyon.", "stop", PLAIN, extra=[name]).ok
        assert validate_answer("Paris.", "stop", PLAIN, extra=[name]).ok
    finally:
        REGISTRY._validators.pop(name, None)
