"""Config YAML is checked once, at create: a mapping of generator sections that JSON can carry."""

from __future__ import annotations

import json

import pytest

from loadtest_core import InvalidArgument
from loadtest_core._configs import MAX_DEPTH, MAX_NODES, check_name, parse_config

LIMIT = 1 << 20

GOOD = """\
phantom:
  enabled: true
  address: 127.0.0.1:80   # a string, not a sexagesimal number
  load_profile: {load_type: rps, schedule: "line(1, 10, 1m)"}
  instances: 10
  timeout: 1.5
  ammo_type: null
  headers: [Host: example.com, "Connection: close"]
autostop:
  autostop: ["http(4xx,25%,3s)"]
"""


def test_a_generator_config_parses_to_its_mapping_and_compact_json() -> None:
    """The mapping is YAML's; the body is its JSON, in the file's key order."""
    data, body = parse_config(GOOD, limit=LIMIT)
    assert data["phantom"]["instances"] == 10
    assert data["phantom"]["ammo_type"] is None
    assert data["phantom"]["address"] == "127.0.0.1:80"
    assert json.loads(body) == data
    assert list(json.loads(body)) == ["phantom", "autostop"]


def test_anchors_and_merge_keys_are_expanded() -> None:
    """Anchors, aliases and `<<` merges are YAML features a config may use."""
    text = "base: &b {enabled: true, instances: 2}\npandora:\n  <<: *b\n  instances: 5\n"
    data, _ = parse_config(text, limit=LIMIT)
    assert data["pandora"] == {"enabled": True, "instances": 5}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("phantom:\n  enabled: [true\n", 3, "expected"),
        ("- phantom: {}\n", 1, "mapping of generator sections"),
        ("just a string\n", 1, "mapping of generator sections"),
        ("phantom: {}\nconsole: null\n", 2, "'console' must be a mapping"),
        ("phantom: {}\nbfg: [1, 2]\n", 2, "'bfg' must be a mapping"),
        ("phantom:\n  when: 2024-01-01\n", 2, "a date or time"),
        ("phantom:\n  blob: !!binary aGVsbG8=\n", 2, "binary data"),
        ("phantom:\n  s: !!set {a, b}\n", 2, "a set"),
        ("phantom:\n  rate: .nan\n", 2, "not a JSON number"),
        ("phantom:\n  rate: -.inf\n", 2, "not a JSON number"),
        ("phantom:\n  200: ok\n", 2, "key '200' is not a string"),
        ("phantom:\n  ? [a, b]\n  : x\n", 2, "not a string"),
        ("phantom:\n  obj: !!python/object:os.system {}\n", 2, "not JSON"),
        ("phantom: &a\n  self: *a\n", 2, "recursive alias"),
        ("phantom: {}\n---\nbfg: {}\n", 2, "single document"),
    ],
)
def test_a_bad_config_is_refused_naming_its_line(text: str, line: int, words: str) -> None:
    """Every refusal is INVALID_ARGUMENT on yaml_string, with the line to look at."""
    with pytest.raises(InvalidArgument) as caught:
        parse_config(text, limit=LIMIT)
    assert caught.value.field == "yaml_string"
    assert words in caught.value.message
    assert f"line {line}" in caught.value.message


@pytest.mark.parametrize("text", ["", "   \n# only a comment\n", "---\n"])
def test_an_empty_config_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        parse_config(text, limit=LIMIT)


def test_a_config_over_the_limit_is_refused_before_parsing() -> None:
    """The bound is on the UTF-8 bytes of the YAML."""
    text = "phantom:\n  x: '" + "é" * 600 + "'\n"
    with pytest.raises(InvalidArgument, match="more than the limit of 1000"):
        parse_config(text, limit=1000)
    assert parse_config(text, limit=2000)[0]["phantom"]["x"] == "é" * 600


def test_alias_bombs_are_refused() -> None:
    """Aliases cannot expand a small file into a huge config."""
    lines = ["a0: &a0 {x: 1}"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} {{p: *a{i - 1}, q: *a{i - 1}, r: *a{i - 1}, s: *a{i - 1}}}")
    with pytest.raises(InvalidArgument, match=f"more than {MAX_NODES} values"):
        parse_config("\n".join(lines) + "\n", limit=LIMIT)


def test_deep_nesting_is_refused() -> None:
    text = "phantom: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(InvalidArgument, match="nested"):
        parse_config(text, limit=LIMIT)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_config(b"phantom: {}", limit=LIMIT)


@pytest.mark.parametrize("value", [3, "x" * 257, "tab\there"])
def test_names_are_short_printable_strings(value: object) -> None:
    with pytest.raises(InvalidArgument):
        check_name(value, "name")


def test_characters_yaml_refuses_are_invalid_input() -> None:
    """A control character is refused by the YAML reader: INVALID_ARGUMENT, not a crash."""
    with pytest.raises(InvalidArgument, match="special characters"):
        parse_config("\x1bphantom: {}\n", limit=LIMIT)
