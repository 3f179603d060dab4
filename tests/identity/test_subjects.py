"""Subjects: refused when they can pass for another one; compared as one person per issuer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.errors import IdentityError
from mamori.identity import (
    DevIssuer,
    JwksSource,
    SubjectRules,
    VerifierConfig,
    check_subject,
    verify_token,
)

FULLWIDTH_IVAN = "\uff49\uff56\uff41\uff4e"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return DevIssuer(tmp_path_factory.mktemp("iss"), issuer="https://idp", audience="app")


@pytest.fixture(scope="module")
def config(issuer):
    return VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=issuer.jwks_path)
    )


@pytest.mark.parametrize(
    "subject",
    [
        " ivan",
        "ivan ",
        "ivan\u200b",  # zero-width space (Cf)
        "\u2060ivan",  # word joiner (Cf)
        "iv\u00adan",  # soft hyphen (Cf)
        "\u202eivan",  # right-to-left override (bidi)
        "ivan\u2066",  # left-to-right isolate (bidi)
        "iv\x1b[2Kan",  # ESC
        "ivan\n",
        "ivan\x00",
        "ivan\u2028",  # line separator
        "",
    ],
)
def test_a_token_whose_subject_can_pass_for_another_is_refused(issuer, config, subject):
    with pytest.raises(IdentityError, match="sub"):
        verify_token(issuer.mint(subject), config)


def test_the_refusal_names_the_character_escaped_not_raw():
    with pytest.raises(IdentityError) as caught:
        check_subject("ivan\u200b")
    text = caught.value.diagnostics()
    assert "\\u200b" in text
    assert "\u200b" not in text


@pytest.mark.parametrize(
    "subject", ["Ivan", "ivan@example.com", "00u1aB2c", FULLWIDTH_IVAN, "müller"]
)
def test_ordinary_subjects_are_accepted(issuer, config, subject):
    assert verify_token(issuer.mint(subject), config).subject == subject


@pytest.mark.parametrize("other", ["Ivan", "IVAN", FULLWIDTH_IVAN, "ivan\u200b", " ivan "])
def test_subjects_equal_after_nfkc_casefold_are_one_person_under_one_issuer(other):
    assert SubjectRules().same_person(("https://idp", "ivan"), ("https://idp", other))


def test_the_same_subject_at_two_issuers_is_two_people():
    assert not SubjectRules().same_person(("https://a", "ivan"), ("https://b", "ivan"))


def test_a_case_sensitive_issuer_keeps_case_but_still_normalises():
    rules = SubjectRules(case_sensitive_issuers=frozenset({"https://okta"}))
    assert not rules.same_person(("https://okta", "00uAb"), ("https://okta", "00uab"))
    assert rules.same_person(("https://okta", "00uAb"), ("https://okta", "\uff10\uff10u\uff21b"))
    assert rules.same_person(("https://idp", "Ivan"), ("https://idp", "ivan"))


@given(st.text(max_size=20), st.text(max_size=20))
def test_same_person_is_reflexive_and_symmetric(a, b):
    rules = SubjectRules()
    assert rules.same_person(("i", a), ("i", a))
    assert rules.same_person(("i", a), ("i", b)) == rules.same_person(("i", b), ("i", a))
