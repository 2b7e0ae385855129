"""Tests of the field validators' fast paths: they accept and reject exactly what the rules say."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import examples
from pipeline.domain import fields
from pipeline.domain.vocabularies import TRANSACTION_STATUS
from pipeline.errors import InvalidRecord


def test_the_control_class_is_unicode_category_cc():
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    by_category = {char for char in every if unicodedata.category(char) == "Cc"}
    by_pattern = set(fields._CONTROL.findall(every))
    assert by_pattern == by_category
    assert len(by_category) == 65


def _reference_identifier_reason(value: str) -> str | None:
    """The identifier rules spelled out one by one, as the documentation states them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate"
    if not value.strip():
        return "empty"
    if len(value) > fields.MAX_ID_LENGTH:
        return "too long"
    if any(unicodedata.category(char) == "Cc" for char in value):
        return "control characters"
    return None


@settings(max_examples=examples(1000), deadline=None)
@given(
    st.one_of(
        st.text(max_size=140),
        st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=140),
        st.text(alphabet=" \t\n\x85\xa0\u2028-_.a", max_size=6),
        st.just("a" * fields.MAX_ID_LENGTH),
        st.just("a" * (fields.MAX_ID_LENGTH + 1)),
    )
)
def test_identifier_agrees_with_its_rules(value):
    expected = _reference_identifier_reason(value)
    try:
        assert fields.identifier({"id": value}, "id") == value
        reason = None
    except InvalidRecord as exc:
        reason = exc.reason.removeprefix("id: ").split(" (")[0].split(",")[0]
    assert reason == expected, (value, reason)


@pytest.mark.parametrize("word", ["completed", "Completed", "COMPLETED", "cOmPlEtEd"])
def test_vocabulary_words_match_in_any_ascii_case(word):
    assert fields.choice({"s": word}, "s", TRANSACTION_STATUS) == "completed"


@pytest.mark.parametrize("word", ["complete", "completed ", "\u212aompleted", "ｃompleted"])
def test_other_words_are_unknown(word):
    with pytest.raises(InvalidRecord, match=r"^s: unknown \("):
        fields.choice({"s": word}, "s", TRANSACTION_STATUS)


def test_non_ascii_letters_never_fold_into_a_word():
    # KELVIN SIGN lower-cases to "k": "chec\u212aing" must not become "checking".
    with pytest.raises(InvalidRecord):
        fields.choice({"t": "chec\u212aing"}, "t", {"checking": "checking"})


def test_codes_match_exactly():
    assert fields.code({"c": "EUR"}, "c", {"EUR"}) == "EUR"
    for bad in ("eur", "Eur", "EUR "):
        with pytest.raises(InvalidRecord, match=r"^c: unknown \("):
            fields.code({"c": bad}, "c", {"EUR"})


@pytest.mark.parametrize(
    "value, expected",
    [
        (12, 12.0),
        (12.5, 12.5),
        ("12.50", 12.5),
        ("-1e3", -1000.0),
    ],
)
def test_numbers(value, expected):
    assert fields.number({"n": value}, "n") == expected


@pytest.mark.parametrize(
    "value, reason",
    [
        (True, "n: not a number (bool)"),
        (None, "n: missing"),
        ({"a": 1}, "n: not a number (dict)"),
        ("0x10", "n: not a number ('0x10')"),
        (10**400, "n: not a finite number (inf)"),
        (float("-inf"), "n: not a finite number (-inf)"),
    ],
)
def test_bad_numbers(value, reason):
    with pytest.raises(InvalidRecord) as caught:
        fields.number({"n": value}, "n")
    assert caught.value.reason == reason
