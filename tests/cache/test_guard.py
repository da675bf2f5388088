"""The semantic cache's verification step: each rule vetoes its kind of near-miss, and only it."""

from __future__ import annotations

import pytest

from stellara.cache.guard import RULES, mismatch, same_question


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
        ("Turn on the lights", "Switch the lights on"),
        ("How many continents are there?", "How many continents exist?"),
        ("Give me 5 ideas for a blog post", "Give me five blog post ideas"),
        ("Convert 1,000 dollars to euros", "Convert $1000 to euros"),
        ("How do I install Docker on Ubuntu?", "how do i install docker on ubuntu"),
        ("Why doesn't my code compile?", "Why does my code not compile?"),
        ("How can I clear the cache in Chrome?", "How do I clear Chrome's cache?"),
        ("How do I turn on 2FA on my account?", "How can I turn on 2FA for my account?"),
        ("Write a haiku about autumn leaves.", "Compose a haiku about leaves in autumn."),
    ],
)
def test_same_question_accepts_paraphrases(a: str, b: str) -> None:
    assert mismatch(a, b) is None
    assert same_question(a, b)
    assert same_question(b, a)


@pytest.mark.parametrize(
    ("a", "b", "rule"),
    [
        ("What was the GDP of France in 2023?", "What was the GDP of France in 2024?", "number"),
        ("How do I install Python 3.12?", "How do I install Python 3.8?", "number"),
        ("Give me 5 ideas", "Give me ten ideas", "number"),
        ("Summarize it in the first paragraph", "Summarize it in the second paragraph", "number"),
        ("What does error 0x80070005 mean?", "What does error 0x80070002 mean?", "number"),
        ("Convert 10 miles to km", "Convert 10 km to miles", "quantity"),
        ("How many grams are in a pound?", "How many grams are in an ounce?", "quantity"),
        ("Set a timer for 5 minutes", "Set a timer for 5 hours", "quantity"),
        ("Can I take ibuprofen with food?", "Can I take ibuprofen without food?", "negation"),
        ("Why does my code compile?", "Why doesn't my code compile?", "negation"),
        ("Which mushrooms are edible?", "Which mushrooms are inedible?", "prefix"),
        ("How do I mute a call?", "How do I unmute a call?", "prefix"),
        ("How do I connect to the VPN?", "How do I disconnect from the VPN?", "prefix"),
        ("Turn on the living room lights", "Turn off the living room lights", "antonym"),
        ("How do I enable dark mode?", "How do I turn off dark mode?", "antonym"),
        ("Open the garage door", "Close the garage door", "antonym"),
        ("Turn the volume up", "Turn the volume down", "antonym"),
        ("Sort the list in ascending order", "Sort the list in descending order", "antonym"),
        ("What happens before a storm?", "What happens after a storm?", "antonym"),
        ("Foods with more protein than eggs", "Foods with less protein than eggs", "antonym"),
        ("Which cities have the highest rent?", "Which cities have the lowest rent?", "antonym"),
        ("Is Rust safer than C++?", "Is Rust less safe than C++?", "antonym"),
        ("Turn on 2FA on my account", "Turn off 2FA on my account", "antonym"),
        ("Weather for tomorrow in London", "Weather for today in London", "date"),
        ("Book a table for Friday", "Book a table for Saturday", "date"),
        ("Events in Berlin this weekend", "Events in Berlin next weekend", "date"),
        ("What is the capital of Australia?", "What is the capital of Austria?", "entity"),
        ("Email Sarah about the deadline", "Email John about the deadline", "entity"),
        ("Convert this JSON to YAML", "Convert this JSON to XML", "entity"),
        ("Who founded Tesla?", "When was Tesla founded?", "question"),
        ("Where was Einstein born?", "When was Einstein born?", "question"),
        ("what is the capital of france", "what is the capital of germany", "swap"),
        ("how do i cook salmon in the oven", "how do i cook chicken in the oven", "swap"),
    ],
)
def test_mismatch_names_the_rule_that_vetoes(a: str, b: str, rule: str) -> None:
    assert mismatch(a, b) == rule
    assert not same_question(a, b)
    assert not same_question(b, a)


def test_antonym_rule_ignores_a_side_present_in_both() -> None:
    # "on my account" is in both; "turn on" vs "switch ... on" is no flip.
    assert same_question("How do I turn on backups on my server?", "Switch on backups on my server")


def test_antonym_rule_ignores_an_added_alternative() -> None:
    # One text adds "before" to "after": nothing was flipped, so this rule stays quiet.
    assert mismatch("Should I eat before or after a run?", "Should I eat after a run?") is None


def test_entity_rule_ignores_case_of_the_other_text() -> None:
    assert same_question("How do I use asyncio in Python?", "how to use python asyncio")


def test_synonym_swap_is_not_a_slot_swap() -> None:
    assert same_question("How do I fix a leaking tap?", "How do I repair a leaking tap?")


def test_unit_without_a_number_on_one_side_only_is_allowed() -> None:
    assert same_question("How long should I boil an egg?", "How many minutes should I boil an egg?")


def test_rules_are_named_uniquely_and_in_docstring_order() -> None:
    names = [name for name, _ in RULES]
    assert len(names) == len(set(names))
    assert names[0] == "number"
    assert names[-1] == "swap"


def test_mismatch_handles_empty_and_symbol_only_text() -> None:
    assert mismatch("", "") is None
    assert mismatch("???", "!!!") is None
    assert mismatch("", "turn off") is None  # no shared words: the embedding decides
