"""The verification gate: refusals per trap kind, accepted paraphrases, and its cost."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.cache import verify
from margin.cache._verify import content_changes, features, synonyms

REFUSED = {
    "number": [
        ("Track order 48213", "Track order 48231"),
        ("Book a table for two", "Book a table for three"),
        ("Is the gym open at 6am?", "Is the gym open at 7am?"),
        ("What's the price of the 5GB plan?", "What's the price of the 10GB plan?"),
        ("Is it 5 km?", "Is it 5 miles?"),
        ("What's the fee for transferring 1,000 euros?", "What's the fee for transferring 10,000 euros?"),
        ("Is the discount 20%?", "Is the discount 25 percent?"),
        ("Reserve seats for twenty five people", "Reserve seats for 52 people"),
    ],
    "date": [
        ("Is the store open on Monday?", "Is the store open on Tuesday?"),
        ("Deliver in May", "Deliver in June"),
        ("Set an alarm for 6:30 tomorrow", "Set an alarm for 6:30 today"),
        ("How much is the monthly plan?", "How much is the yearly plan?"),
    ],
    "entity": [
        ("Cancel my Netflix subscription", "Cancel my Spotify subscription"),
        ("Paris hotels under 100 euros", "London hotels under 100 euros"),
        ("Email me at bob@example.com", "Email me at alice@example.com"),
        ("Run `pip install foo`", "Run `pip install bar`"),
        ("Call getUserName() on the client", "Call getUserId() on the client"),
        ("Open https://example.com/a", "Open https://example.com/b"),
        ('Search for "red shoes"', 'Search for "blue shoes"'),
        ("Is the SKU A123 in stock?", "Is the SKU B123 in stock?"),
    ],
    "negation": [
        ("Cancel my subscription", "Don't cancel my subscription"),
        ("Is ibuprofen safe with alcohol?", "Is ibuprofen unsafe with alcohol?"),
        ("How do I turn on dark mode?", "How do I turn off dark mode?"),
        ("Is the deposit refundable?", "Is the deposit non-refundable?"),
        ("Which plans include roaming?", "Which plans exclude roaming?"),
        ("Der Zug fährt", "Der Zug fährt nicht"),
        ("Je veux annuler", "Je ne veux pas annuler"),
        ("这个贵", "这个不贵"),
        ("Can I pay with a card?", "Can I pay without a card?"),
    ],
    "scope": [
        ("Show flights before noon", "Show flights after noon"),
        ("What are the fees for all accounts?", "What are the fees for my account?"),
        ("Show me my last order", "Show me my first order"),
        ("Which plans include more than 10GB?", "Which plans include less than 10GB?"),
        ("Notify me about every login", "Notify me only about suspicious logins"),
        ("Are there any seats left?", "Are there many seats left?"),
    ],
    # added with margin's second tuning set (bench/cache/data/written): one test per new rule
    "comparative": [
        ("Why is my heart rate higher at night?", "Why is my heart rate lower at night?"),
        ("Which planet is closest to the sun?", "Which planet is furthest from the sun?"),
        ("Is it warmer in Madrid than in Lisbon?", "Is it colder in Madrid than in Lisbon?"),
    ],
    "unit": [
        ("How heavy is the package in kg?", "How heavy is the package in pounds?"),
        ("What is the exchange rate from euros to dollars?", "What is the exchange rate from euros to yen?"),
    ],
    "order": [
        ("Is Mars bigger than Earth?", "Is Earth bigger than Mars?"),
        ("Can a guest invite a member?", "Can a member invite a guest?"),
        ("How long is the flight from London to Berlin?", "How long is the flight from Berlin to London?"),
        ("How do I merge main into my feature branch?", "How do I merge my feature branch into main?"),
    ],
    "tense": [
        ("Does the app support offline mode?", "Will the app support offline mode?"),
        ("Did the bank approve my loan?", "Will the bank approve my loan?"),
    ],
    "wording": [
        ("Where is my order?", "When is my order?"),
        ("Which products qualify for free shipping?", "Which products come from free shipping?"),
    ],
}
REFUSED["negation"] += [
    ("How do I zip a folder?", "How do I unzip a folder?"),
    ("How do I serialize an object?", "How do I deserialize an object?"),
    ("Are dividends taxable?", "Are dividends tax-free?"),
    ("What should I eat before a marathon?", "What foods should I steer clear of before a marathon?"),
    ("How do I pay a friend on Venmo?", "How do I request money from a friend on Venmo?"),
    ("How do I push changes to the remote?", "How do I pull changes from the remote?"),
]

ACCEPTED = [
    ("How do I reset my password?", "What's the way to reset my password?"),
    ("Cancel my subscription", "Please cancel my subscription"),
    ("Is the gym open at 6 a.m.?", "Is the gym open at 6am?"),
    ("Book a table for two", "Book a table for 2 people"),
    ("Can I pay in 3 instalments?", "Can I pay in three instalments?"),
    ("I can't log in", "I'm unable to log in"),
    ("May I return it?", "Can I return it?"),
    ("What's Netflix's price?", "How much is Netflix?"),
    ("How much is the monthly plan?", "What does the plan cost per month?"),
    ("How do I merge two PDF files?", "What's an easy way to combine two PDFs into one?"),
    ("How do I back up my iPhone?", "What's the best way to back up an iPhone?"),
    ("Refund for order #123 please", "Please refund order #123"),
    ("what are your opening hours?", "What are your opening hours?"),
    # the new rules' matching paraphrases
    ("Does the buyer or seller pay stamp duty?", "Does the seller or buyer pay stamp duty?"),
    ("What's the difference between let and const?", "How is const different from let?"),
    ("How do I sort a list in Python?", "What's the way to sort a Python list?"),
    ("How long does a refund take?", "When will I get my refund back on my card?"),
    ("Are there any seats left?", "Are there seats left?"),
    ("Where can I find the Wi-Fi password?", "Where can I find the WiFi password?"),
    ("¿Hacen envíos a México?", "¿hacen envíos a mexico?"),
    ("What are the symptoms of a UTI?", "What are the symptoms of a urinary tract infection?"),
    ("How can I speed up my laptop?", "How can I make my laptop faster?"),
    ("Are pets allowed in the apartment?", "Are pets allowed in the apartment at all?"),
    ("Is it going to rain tomorrow?", "Will there be rain tomorrow?"),
    ("Can I change my delivery address?", "Is it possible to change my delivery address?"),
    ("Is the pasta gluten free?", "Is the pasta gluten-free?"),
]


@pytest.mark.parametrize(
    ("kind", "query", "candidate"),
    [(kind, a, b) for kind, pairs in REFUSED.items() for a, b in pairs],
)
def test_refuses_trap(kind: str, query: str, candidate: str) -> None:
    verdict = verify(query, candidate)
    assert not verdict.ok, (query, candidate)
    assert verdict.reason == kind, verdict
    assert verdict.detail
    # The gate is symmetric in what it refuses.
    assert not verify(candidate, query).ok


@pytest.mark.parametrize(("query", "candidate"), ACCEPTED)
def test_accepts_paraphrase(query: str, candidate: str) -> None:
    assert verify(query, candidate).ok, verify(query, candidate)


@settings(deadline=None)
@given(st.text(max_size=200))
def test_identical_texts_always_pass(text: str) -> None:
    assert verify(text, text).ok


@settings(deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_never_raises(a: str, b: str) -> None:
    assert isinstance(verify(a, b).ok, bool)
    content_changes(a, b)


def test_content_changes_finds_one_word_swaps_only() -> None:
    assert content_changes("Is the bridge open to cyclists?", "Is the bridge shut to cyclists?") == (
        ("open",),
        ("shut",),
    )
    assert content_changes("Where can I find my invoice?", "Where can I find my invoices?") == ((), ())
    assert content_changes("How do I merge two PDF files?", "What's an easy way to combine two PDFs into one?") is None


def test_synonyms_and_spellings_are_no_swap() -> None:
    assert content_changes("How do I see my order history?", "How do I view my order history?") == ((), ())
    assert content_changes("Can I pay by cheque?", "Can I pay by check?") == ((), ())
    assert content_changes("How do I organise my files?", "How do I organize my files?") == ((), ())
    assert synonyms("colour", "color") and synonyms("booking", "schedule")
    assert synonyms("book", "schedule") and not synonyms("train", "bus")


@settings(deadline=None)
@given(st.lists(st.sampled_from("the cat dog sees a big small from to house".split()), min_size=2, max_size=8))
def test_order_check_never_refuses_the_same_sentence(words: list[str]) -> None:
    text = " ".join(words)
    assert verify(text, text).ok
    assert verify(text + "?", text).ok


def test_is_fast() -> None:
    stored = [f"What is the fee for order {i} on my Visa card?" for i in range(500)]
    for s in stored:
        features(s)
    queries = [f"What's the fee on my Visa card for order {i}?" for i in range(500)]
    t0 = time.perf_counter()
    for q, s in zip(queries, stored, strict=True):
        verify(q, s)
    per_pair = (time.perf_counter() - t0) / len(queries)
    assert per_pair < 2e-3  # typically ~100-250 µs (a fresh query: its features are computed); loose for CI
