"""Load generator configs: YAML a user stores, the JSON object an agent is given (spec §8).

The agent ``json.loads`` ``Job.config`` and hands the result to its load
generator as its config, calling ``.get`` on every top-level value; a config
that is not a mapping of mappings crashes it before it claims anything. So a
config is checked once, at create: one YAML document (``safe_load`` rules, no
Python objects), a mapping whose every top-level value is a mapping, and
nothing JSON cannot say (timestamps, binary, sets, NaN, non-string keys,
recursive aliases). A refusal names the line.

Configs are immutable (the Yandex API has no Update). Delete hides a config
from Get, List and new tests; its body stays stored for the tests that named
it, so a job handed out later still gets the config its test was created with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loadtest_core._errors import InvalidArgument, LoadtestError

__all__ = ["ConfigRecord", "check_name", "parse_config"]

MAX_DEPTH = 64
MAX_NODES = 100_000
JSON_FACTOR = 4
"""A config's JSON may be this many times its YAML (aliases expand), no more."""

_SCALARS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_NOT_JSON = {
    "tag:yaml.org,2002:timestamp": "a date or time",
    "tag:yaml.org,2002:binary": "binary data",
    "tag:yaml.org,2002:set": "a set",
    "tag:yaml.org,2002:omap": "an ordered map",
    "tag:yaml.org,2002:pairs": "a list of pairs",
}


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """A stored config: its YAML as given, and ``body``, the same as JSON (``Job.config``)."""

    id: str
    folder_id: str
    name: str
    yaml: str
    body: str
    created_at: float
    created_by: str
    deleted_at: float | None = None

    def mapping(self) -> dict[str, Any]:
        """The config as the agent receives it."""
        data: dict[str, Any] = json.loads(self.body)
        return data


def check_name(value: object, field: str, limit: int = 256) -> str:
    """A name or folder id: a printable string of at most ``limit`` characters (may be empty)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a string", field=field)
    if len(value) > limit or not value.isprintable():
        raise InvalidArgument(
            f"{field}: at most {limit} printable characters, got {value[:40]!r}", field=field
        )
    return value


def _where(node: Any) -> str:
    return f"line {node.start_mark.line + 1}"


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(f"yaml_string: {message}", field="yaml_string")


def _check_node(node: Any, depth: int, path: set[int], count: list[int], at: Any) -> None:
    """Refuse what JSON cannot carry; ``count`` bounds the tree with aliases expanded.

    ``at`` is where the node is used (its key, or itself): the line a refusal names.
    """
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _invalid(f"more than {MAX_NODES} values once aliases are expanded")
    if depth > MAX_DEPTH:
        raise _invalid(f"{_where(node)}: nested deeper than {MAX_DEPTH} levels")
    if id(node) in path:
        raise _invalid(f"{_where(at)}: a recursive alias cannot be written as JSON")
    tag = node.tag
    if tag in _NOT_JSON:
        raise _invalid(f"{_where(node)}: {_NOT_JSON[tag]} is not JSON; quote it to keep it as text")
    kind = type(node).__name__
    if kind == "ScalarNode":
        if tag not in _SCALARS:
            raise _invalid(f"{_where(node)}: the tag {tag} is not JSON")
        if tag == "tag:yaml.org,2002:float" and any(
            word in node.value.lower() for word in ("inf", "nan")
        ):
            raise _invalid(f"{_where(node)}: {node.value} is not a JSON number")
        return
    if tag not in (_MAP, _SEQ):
        raise _invalid(f"{_where(node)}: the tag {tag} is not JSON")
    path.add(id(node))
    try:
        if kind == "SequenceNode":
            for item in node.value:
                _check_node(item, depth + 1, path, count, item)
            return
        for key, value in node.value:
            if key.tag == _MERGE:
                _check_node(value, depth + 1, path, count, key)
                continue
            if type(key).__name__ != "ScalarNode" or key.tag != _STR:
                shown = key.value if type(key).__name__ == "ScalarNode" else "a collection"
                raise _invalid(
                    f"{_where(key)}: the key {shown!r} is not a string "
                    "(JSON object keys are strings; quote it)"
                )
            _check_node(value, depth + 1, path, count, key)
    finally:
        path.discard(id(node))


def parse_config(text: object, *, limit: int) -> tuple[dict[str, Any], str]:
    """The config mapping and its compact JSON, or InvalidArgument naming the line.

    ``limit`` bounds the YAML text in bytes (UTF-8).
    """
    if not isinstance(text, str):
        raise _invalid("must be a string")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _invalid(f"{size} bytes, more than the limit of {limit}")
    if not text.strip():
        raise _invalid("empty: a config is a YAML mapping of generator sections (e.g. 'pandora:')")
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the grpc extra installs it
        raise LoadtestError(
            f"configs need PyYAML: pip install 'loadtest-core[grpc]' ({exc})"
        ) from None
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a character YAML refuses (a control character)
        raise _invalid(" ".join(str(exc).split())) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = "" if mark is None else f"line {mark.line + 1}: "
            what = ", ".join(part for part in (exc.context, exc.problem) if part)
            raise _invalid(f"{where}{what}") from None
        except yaml.YAMLError as exc:
            raise _invalid(" ".join(str(exc).split())) from None
        except RecursionError:
            raise _invalid("nested too deeply") from None
        if node is None or (node.tag == "tag:yaml.org,2002:null" and not node.value):
            raise _invalid("empty: a config is a YAML mapping of generator sections")
        if type(node).__name__ != "MappingNode" or node.tag != _MAP:
            raise _invalid(
                f"{_where(node)}: a config is a mapping of generator sections "
                "(e.g. 'pandora:'), not a single value or a list"
            )
        _check_node(node, 0, set(), [0], node)
        keys = {k.value: k for k, _ in node.value if k.tag == _STR}
        try:
            data = loader.construct_document(node)
        except (yaml.YAMLError, RecursionError) as exc:
            raise _invalid(" ".join(str(exc).split()) or "cannot be read") from None
    finally:
        loader.dispose()
    for key, value in data.items():
        if not isinstance(value, dict):
            key_node = keys.get(key)
            where = "" if key_node is None else f"{_where(key_node)}: "
            raise _invalid(
                f"{where}the section {key!r} must be a mapping: the agent reads every "
                "top-level value as a generator section"
            )
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if len(body) > JSON_FACTOR * max(limit, 1):
        raise _invalid(f"expands to more than {JSON_FACTOR * limit} bytes of JSON")
    return data, body
