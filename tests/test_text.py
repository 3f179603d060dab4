"""The one rule for stored names and subjects, and the escaping of what is printed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mamori.text import MAX_NAME, name_problem, printable, text_problem


@given(st.text())
def test_printable_output_is_always_printable(text):
    assert printable(text).isprintable()


@given(st.text())
def test_printable_leaves_printable_text_unchanged(text):
    if text.isprintable():
        assert printable(text) == text


@given(st.text(max_size=600))
def test_an_accepted_name_is_printable_stripped_non_empty_and_short(name):
    if name_problem(name) is None:
        assert name
        assert name.isprintable()
        assert name == name.strip()
        assert len(name) <= MAX_NAME


@given(st.text(min_size=1))
def test_a_problem_description_never_echoes_an_unprintable_character(text):
    problem = text_problem(text)
    assert problem is None or problem.isprintable()
