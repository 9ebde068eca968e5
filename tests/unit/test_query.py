"""The ListTestsRequest.filter grammar and the agent match_by_filter field set."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest_core import InvalidArgument, Status, parse_agent_filter, parse_test_filter

RECORD: dict[str, object] = {
    "id": "t1",
    "details.name": "nightly-test-7",
    "details.tags.author": "yandex",
    "summary.status": Status.DONE,
    "summary.is_finished": True,
    "summary.created_at": 1_700_000_000.0,
    "summary.created_by": "alice",
}


def lookup(record: dict[str, object]) -> Callable[[str], object]:
    return lambda name: record.get(name)


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ('summary.status IN ("DONE", "FAILED") AND details.tags.author:"yandex"', True),
        ('summary.is_finished = true AND details.name CONTAINS "nightly-test"', True),
        ('id = "t1"', True),
        ('id != "t1"', False),
        ('id IN ("t2", "t3")', False),
        ('id NOT IN ("t2", "t3")', True),
        ('details.name = "nightly-test-7"', True),
        ('details.name CONTAINS "weekly"', False),
        ('details.tags.author:"other"', False),
        ('details.tags.missing:"yandex"', False),
        ('summary.status = "RUNNING"', False),
        ('summary.status != "RUNNING"', True),
        ("summary.is_finished = false", False),
        ('summary.created_at >= "2023-11-14T22:13:20Z"', True),
        ('summary.created_at > "2023-11-14T22:13:20Z"', False),
        ('summary.created_at < "2024-01-01T00:00:00+03:00"', True),
        ('summary.created_at <= "2020-01-01T00:00:00Z"', False),
        ('summary.created_by IN ("alice")', True),
        ("", True),
        ("   ", True),
        ('summary.status in ("done") and id = "t1"', True),
    ],
)
def test_operators_match_as_documented(text: str, matches: bool) -> None:
    """Each documented operator and field matches (or not) the sample record."""
    assert parse_test_filter(text).matches(lookup(RECORD)) is matches


def test_escapes_in_strings() -> None:
    """Backslash escapes a quote or a backslash inside a string value."""
    f = parse_test_filter(r'details.name = "say \"hi\" \\ bye"')
    assert f.matches(lookup({"details.name": 'say "hi" \\ bye'}))


@pytest.mark.parametrize(
    "text",
    [
        'nonsense = "x"',
        'id CONTAINS "x"',
        'details.tags.author = "x"',
        "summary.is_finished != true",
        'summary.created_at = "2024-01-01T00:00:00Z"',
        "summary.status = ",
        'id = "unterminated',
        'summary.created_at > "yesterday"',
        'summary.created_at > "2024-01-01T00:00:00"',
        'summary.status = "NOPE"',
        'summary.status = "STATUS_UNSPECIFIED"',
        "summary.status IN ()",
        'id = "a" OR id = "b"',
        'id = "a" AND',
        'id = "a" id = "b"',
        'id "a"',
        'summary.is_finished = "true"',
        "id = 5",
        'summary.status IN ("DONE"',
        'summary.status NOT ("DONE")',
        'id = "' + "x" * 5000 + '"',
        'details.tags.:"x"',
        "AND",
        "(",
    ],
)
def test_malformed_filters_are_invalid_argument(text: str) -> None:
    """Every malformed filter raises InvalidArgument on the `filter` field."""
    with pytest.raises(InvalidArgument) as info:
        parse_test_filter(text)
    assert info.value.field == "filter"


def test_agent_filters_use_their_own_fields() -> None:
    """Agent filters match id, name and labels; test fields are unknown there."""
    agent = lookup({"id": "a1", "name": "tank-1", "labels.pool": "a"})
    assert parse_agent_filter('labels.pool = "a" AND name CONTAINS "tank"').matches(agent)
    assert not parse_agent_filter('labels.pool IN ("b")').matches(agent)
    with pytest.raises(InvalidArgument):
        parse_agent_filter('summary.status = "DONE"')
    with pytest.raises(InvalidArgument):
        parse_test_filter('labels.pool = "a"')


clauses = st.one_of(
    st.builds(lambda v: f'id = "{v}"', st.sampled_from(["t1", "t2"])),
    st.builds(lambda v: f'details.name CONTAINS "{v}"', st.sampled_from(["night", "x"])),
    st.builds(
        lambda vs: f"summary.status IN ({', '.join(chr(34) + v + chr(34) for v in vs)})",
        st.lists(st.sampled_from(["DONE", "FAILED", "RUNNING"]), min_size=1, max_size=3),
    ),
    st.builds(lambda v: f"summary.is_finished = {v}", st.sampled_from(["true", "false"])),
    st.builds(lambda v: f'details.tags.author:"{v}"', st.sampled_from(["yandex", "me"])),
)


def reference(clause: str) -> bool:
    """A straightforward evaluation of one generated clause against RECORD."""
    if clause.startswith("id = "):
        return clause == 'id = "t1"'
    if clause.startswith("details.name"):
        return "night" in clause
    if clause.startswith("summary.status"):
        return '"DONE"' in clause
    if clause.startswith("summary.is_finished"):
        return clause.endswith("true")
    return clause.endswith('"yandex"')


@given(st.lists(clauses, min_size=1, max_size=4))
def test_canonical_form_round_trips_and_matching_agrees(parts: list[str]) -> None:
    """parse(str(parse(t))) == parse(t), and matching is the AND of the clauses."""
    text = " AND ".join(parts)
    f = parse_test_filter(text)
    assert parse_test_filter(str(f)) == f
    assert f.matches(lookup(RECORD)) == all(reference(p) for p in parts)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("summary.status = RUNNING", 'quote it: summary.status = "RUNNING"'),
        ("summary.status IN (RUNNING)", 'quote it: summary.status IN ("RUNNING", ...)'),
        ("details.tags.plan:1", 'quote it: details.tags.plan:"1"'),
        ('details.tags.plan = "1"', 'write details.tags.plan:"VALUE"'),
        ('summary.created_at = "2024-01-01T00:00:00Z"', "use <, <=, >, >="),
    ],
)
def test_errors_suggest_the_fix(text: str, suggestion: str) -> None:
    """An unquoted value or a wrong operator is refused with the corrected clause to type."""
    with pytest.raises(InvalidArgument) as info:
        parse_test_filter(text)
    assert info.value.message.endswith(suggestion)
