"""Complexity scorer: each expected score is worked out by hand from the documented weights.

Default weights: length 0.30, reasoning 0.40, simple_task -0.20, code 0.20, math 0.10, structured_output 0.10,
tools 0.15, turns 0.10, steps 0.10. Tiers: simple < 0.2 <= standard < 0.5 <= complex.
"""

from __future__ import annotations

import pytest

from margin.errors import ConfigError
from margin.levers import ComplexityScorer, score_request


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_greeting_is_simple_with_every_signal_zero():
    result = score_request(user("Hello"))
    assert result.score == 0.0
    assert result.tier == "simple"
    assert set(result.signals.values()) == {0.0}
    assert result.prompt_tokens == 1  # "Hello" is one o200k token


def test_translation_is_simple_and_the_score_never_goes_below_zero():
    result = score_request(user("Translate 'good morning' into French."))
    assert result.signals["simple_task"] == 1.0
    assert result.score == 0.0  # -0.20 clamped to 0
    assert result.tier == "simple"


def test_one_reasoning_keyword_reaches_standard_exactly_at_the_cut_point():
    # "prove": 1 distinct hit -> signal 0.5 -> 0.40 * 0.5 = 0.20, which is not below 0.2.
    result = score_request(user("Prove that there are infinitely many primes."))
    assert result.signals["reasoning"] == 0.5
    assert result.score == 0.2
    assert result.tier == "standard"


def test_repeated_keyword_counts_once_and_two_distinct_keywords_saturate():
    assert score_request(user("analyze analyze analyze")).signals["reasoning"] == 0.5
    # analyze, compare, designs: 3 distinct hits -> signal min(1, 3/2) = 1 -> 0.40.
    result = score_request(user("Analyze and compare these two designs."))
    assert result.signals["reasoning"] == 1.0
    assert result.score == 0.4
    assert result.tier == "standard"


def test_long_reasoning_prompt_is_complex():
    # 3000 x " hello" is far above the 1500-token saturation: length 1 -> 0.30; analyze + compare -> 0.40.
    result = score_request(user("Analyze and compare the following." + " hello" * 3000))
    assert result.signals["length"] == 1.0
    assert result.score == 0.7
    assert result.tier == "complex"


def test_length_signal_is_linear_between_100_and_1500_tokens():
    # "hello" + 799 x " hello" = 800 tokens -> (800 - 100) / 1400 = 0.5 -> 0.30 * 0.5 = 0.15.
    result = score_request(user("hello" + " hello" * 799))
    assert result.prompt_tokens == 800
    assert result.signals["length"] == 0.5
    assert result.score == 0.15
    assert result.tier == "simple"


def test_code_block_with_debug_request():
    # debug: 1 hit -> 0.20; a fenced block -> code 1 -> 0.20. "def"/"return" inside the fence are not keywords.
    text = "Debug this:\n```python\ndef f(x):\n    return x / 0\n```"
    result = score_request(user(text))
    assert result.signals == {
        "length": 0.0,
        "reasoning": 0.5,
        "simple_task": 0.0,
        "code": 1.0,
        "math": 0.0,
        "structured_output": 0.0,
        "tools": 0.0,
        "turns": 0.0,
        "steps": 0.0,
    }
    assert result.score == 0.4


def test_keywords_inside_code_do_not_count_but_inline_code_is_a_code_signal():
    fenced = score_request(user("```\nfunction analyze() { return compare(); }\n```"))
    assert fenced.signals["reasoning"] == 0.0
    assert fenced.score == 0.2
    inline = score_request(user("What does `x` mean here?"))
    assert inline.signals["code"] == 0.5
    assert inline.score == 0.1


def test_unfenced_code_lines_count_as_code():
    text = "import os\nfrom sys import argv\nprint(argv);\nx = 1"
    assert score_request(user(text)).signals["code"] == 1.0  # 3 code-like lines


def test_math_signal_counts_equations_operators_and_latex():
    # "x^2", "3 + 4" and "\frac" are 3 hits -> 1.0 -> 0.10; "solve" is 1 reasoning hit -> 0.20.
    result = score_request(user("Solve x^2 and 3 + 4 and \\frac{1}{2}"))
    assert result.signals["math"] == 1.0
    assert result.score == 0.3
    # dates and ranges are not maths
    assert score_request(user("Meet on 2024-05-01, pages 3-4")).signals["math"] == 0.0


def test_tools_turns_and_structured_output():
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Hi again"},
        {"role": "assistant", "content": "Yes?"},
        {"role": "user", "content": "And again"},
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = score_request(messages, tools=tools, response_format={"type": "json_schema", "json_schema": {}})
    # tools 0.15 + turns (3 - 1) / 5 = 0.4 -> 0.04 + structured output 0.10 = 0.29
    assert result.signals["turns"] == 0.4
    assert result.score == 0.29
    assert result.tier == "standard"


def test_numbered_steps():
    result = score_request(user("1. open\n2. read\n3) write\nStep 4 close"))
    assert result.signals["steps"] == 1.0  # 4 numbered lines / 4
    assert result.score == 0.1


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("Analysiere und vergleiche die beiden Ansätze.", 2),  # de: analys*, vergleich*
        ("请分析并比较这两种算法", 3),  # zh: 分析, 比较, 算法
        ("アルゴリズムを評価して", 2),  # ja: アルゴリズム, 評価
        ("Explique pourquoi le ciel est bleu.", 1),  # fr: explique pourquoi
        ("Analiza paso a paso el problema.", 2),  # es: analiz*, paso a paso
        ("Faça uma análise em profundidade.", 2),  # pt: análise*, em profundidade
    ],
)
def test_reasoning_keywords_in_other_languages(text, hits):
    assert score_request(user(text)).signals["reasoning"] == min(1.0, hits / 2)


@pytest.mark.parametrize(
    "text",
    [
        "Traduce este texto al inglés.",
        "この文章を翻訳してください",
        "Extrahiere alle Namen.",
        "把这句话翻译成英文",
        "Oui ou non ?",
    ],
)
def test_simple_keywords_in_other_languages(text):
    assert score_request(user(text)).signals["simple_task"] == 1.0


def test_keywords_respect_word_boundaries():
    # "planet" is not "plan", "encode" is not "code", "reasonable" is not "reason"
    assert score_request(user("The planet is reasonable to encode")).signals["reasoning"] == 0.0


def test_task_text_is_system_plus_last_user_message():
    messages = [
        {"role": "user", "content": "Analyze this."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert score_request(messages).signals["reasoning"] == 0.0  # an earlier user turn is not the task
    anthropic_system = score_request(user("Go."), system=[{"type": "text", "text": "You analyze contracts."}])
    assert anthropic_system.signals["reasoning"] == 0.5


def test_tool_result_messages_are_not_user_turns():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "analyze compare"}]},
    ]
    result = score_request(messages)
    assert result.signals["turns"] == 0.0
    assert result.signals["reasoning"] == 0.0


def test_scorer_is_configurable():
    scorer = ComplexityScorer(
        weights={"tools": 0.5},
        simple_below=0.1,
        complex_from=0.45,
        extra_complex_keywords=["kubernetes", "migrat*"],
        extra_simple_keywords=["tl;dr"],
    )
    result = scorer.score(user("Plan the Kubernetes migration"), tools=[{"name": "x"}])
    # plan, kubernetes, migration: 3 hits -> 0.40; tools 0.5 -> 0.90
    assert result.score == 0.9
    assert result.tier == "complex"
    assert scorer.score(user("tl;dr please")).signals["simple_task"] == 1.0
    assert scorer.tier_for(0.1) == "standard"
    assert scorer.tier_for(0.45) == "complex"


def test_replacing_the_keyword_lists():
    scorer = ComplexityScorer(complex_keywords={"en": ("frobnicate",)}, simple_keywords={})
    assert scorer.score(user("Analyze and frobnicate")).signals["reasoning"] == 0.5
    assert scorer.score(user("Translate it")).signals["simple_task"] == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {"vibes": 1.0}},
        {"weights": {"tools": float("nan")}},
        {"weights": {"tools": True}},
        {"simple_below": 0.6, "complex_from": 0.5},
        {"complex_from": 1.5},
        {"length_tokens": (100, 100)},
        {"extra_complex_keywords": ["*"]},
    ],
)
def test_invalid_configuration_is_refused(kwargs):
    with pytest.raises(ConfigError):
        ComplexityScorer(**kwargs)


def test_scoring_is_deterministic_and_does_not_mutate_input():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Compare A and B step by step."},
    ]
    snapshot = [dict(m) for m in messages]
    first = score_request(messages, model="claude-sonnet-4-5")
    assert all(score_request(messages, model="claude-sonnet-4-5") == first for _ in range(3))
    assert messages == snapshot
    assert first.as_dict()["tier"] == first.tier
