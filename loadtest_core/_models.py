"""Immutable pydantic v2 models of every message in the Yandex ``TestService.Stop`` page.

They are the snapshot and wire shapes, never the live state (``transitions``
sets attributes on its model, so the lifecycle drives a plain object).
JSON follows proto3's JSON mapping as the documents show it: snake_case names
(lowerCamelCase accepted on input), timestamps as RFC 3339 UTC strings, int64
as a decimal string on output (a number or a string on input), enums by name,
unset messages and oneof members omitted. Each "Includes only one of the
fields" group is a real oneof: setting two members is an error. ``from_data``
and ``from_json`` are the typed entry points: they raise ``InvalidArgument``
naming the field, never pydantic's ``ValidationError``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from loadtest_core._errors import InvalidArgument
from loadtest_core._status import Status
from loadtest_core._time import format_datetime

__all__ = [
    "AgentSelector",
    "ArtifactSettings",
    "Details",
    "FilePointer",
    "ImbalancePoint",
    "Message",
    "ObjectStorage",
    "Operation",
    "RpcStatus",
    "SingleAgentConfiguration",
    "StopTestMetadata",
    "Summary",
    "Tag",
    "Test",
    "TestSpec",
]

INT64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]+\Z")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def _int64(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and _DECIMAL.match(value):
        out = int(value)
    else:
        raise ValueError("must be an integer (a JSON number or a decimal string)")
    if not -(2**63) <= out <= INT64_MAX:
        raise ValueError("is out of the int64 range")
    return out


def _timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 timestamp with a time zone")
        text = value.replace("z", "Z").replace("Z", "+00:00")
        frac = re.search(r"\.(\d+)", text)
        if frac and len(frac.group(1)) > 6:  # nanoseconds: keep microseconds
            text = text.replace(frac.group(0), "." + frac.group(1)[:6])
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError("must be an RFC 3339 timestamp string")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("must carry a time zone")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 0001-9999 in UTC") from None


def _format_timestamp(dt: datetime) -> str:
    return format_datetime(dt)


Int64 = Annotated[
    int,
    BeforeValidator(_int64),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
]
NonNegativeInt64 = Annotated[Int64, Field(ge=0)]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    PlainSerializer(_format_timestamp, return_type=str, when_used="json"),
]


def _strict_str(value: object) -> object:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string")
    if value and "\x00" in value:  # PostgreSQL text cannot hold it: refused on every store alike
        raise ValueError("must not contain NUL (U+0000)")
    return value


def check_text(value: object, field: str) -> str:
    """A string the engine stores as given: any text but NUL, which no store holds alike."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a string", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field}: must not contain NUL (U+0000)", field=field)
    return value


def _strict_bool(value: object) -> object:
    if value is not None and not isinstance(value, bool):
        raise ValueError("must be a boolean")
    return value


Str = Annotated[str, BeforeValidator(_strict_str)]
Bool = Annotated[bool, BeforeValidator(_strict_bool)]


class Message(BaseModel):
    """Base of every model: frozen, camelCase-tolerant, oneof-checked, typed errors."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=False,
    )
    __oneofs__: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _check_oneofs(self) -> Self:
        for group, members in self.__oneofs__.items():
            chosen = [m for m in members if getattr(self, m) is not None]
            if len(chosen) > 1:
                raise ValueError(
                    f"oneof {group!r} takes only one of {', '.join(members)}; "
                    f"got {', '.join(chosen)}"
                )
        return self

    def which_oneof(self, group: str) -> str | None:
        """The member of oneof ``group`` that is set, like protobuf's ``WhichOneof``."""
        for member in self.__oneofs__[group]:
            if getattr(self, member) is not None:
                return member
        return None

    @classmethod
    def from_data(cls, data: object) -> Self:
        """Validate JSON-shaped data; raises InvalidArgument naming the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def to_data(self) -> dict[str, Any]:
        """proto3-JSON-shaped data: snake_case, unset messages and oneof members left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def _invalid(exc: ValidationError) -> InvalidArgument:
    err = exc.errors()[0]
    path = ""
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    message = err["msg"].removeprefix("Value error, ")
    oneof = re.match(r"oneof '(\w+)'", message)
    if oneof:
        path = f"{path}.{oneof.group(1)}" if path else oneof.group(1)
    elif message.startswith("a done operation"):
        path = f"{path}.done" if path else "done"
    where = path or "body"
    return InvalidArgument(f"{where}: {message}", field=path)


class ObjectStorage(Message):
    bucket: Str = ""
    name: Str = ""


class FilePointer(Message):
    __oneofs__ = {"file_pointer": ("object_storage",)}
    object_storage: ObjectStorage | None = None


class AgentSelector(Message):
    __oneofs__ = {"agent": ("agent_id", "match_by_filter", "anonymous_agent")}
    agent_id: Str | None = None
    match_by_filter: Str | None = None
    anonymous_agent: Bool | None = None


class SingleAgentConfiguration(Message):
    config_id: Str = ""
    agent_selector: AgentSelector | None = None
    files: dict[str, FilePointer] = Field(default_factory=dict)


class Tag(Message):
    key: Str = ""
    value: Str = ""


class ArtifactSettings(Message):
    __oneofs__ = {"upload_to": ("object_storage_bucket",)}
    object_storage_bucket: Str | None = None
    is_archive: Bool = False
    filter_include: tuple[Str, ...] = ()
    filter_exclude: tuple[Str, ...] = ()


class Details(Message):
    name: Str = ""
    description: Str = ""
    tags: tuple[Tag, ...] = ()
    logging_log_group_id: Str = ""
    artifact_settings: ArtifactSettings | None = None


class ImbalancePoint(Message):
    at: Timestamp | None = None
    rps: NonNegativeInt64 = 0
    comment: Str = ""


class Summary(Message):
    status: Annotated[Status, PlainSerializer(lambda s: s.name, return_type=str, when_used="json")]
    created_at: Timestamp | None = None
    created_by: Str = ""
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    is_finished: Bool = False
    error: Str = ""
    imbalance_point: ImbalancePoint | None = None
    assigned_agent_id: Str = ""
    artifacts: FilePointer | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> Status:
        try:
            return Status.parse(value)
        except InvalidArgument as exc:
            raise ValueError(exc.message.removeprefix("status: ")) from None


class Test(Message):
    __test__ = False  # not a pytest class
    id: Str = ""
    configurations: tuple[SingleAgentConfiguration, ...] = ()
    details: Details | None = None
    summary: Summary | None = None
    folder_id: Str = ""


class TestSpec(Message):
    """What a user gives to create a test: the immutable part of a ``Test``."""

    __test__ = False
    configurations: tuple[SingleAgentConfiguration, ...] = ()
    details: Details | None = None
    folder_id: Str = ""

    def selector_key(self) -> tuple[str, str]:
        """``(kind, value)`` of the agent selector: how stores index pending jobs.

        ``("agent", id)``, ``("anonymous", "")``, ``("filter", text)``, or
        ``("none", "")`` for a spec without one (the engine refuses those).
        """
        selector = self.configurations[0].agent_selector if self.configurations else None
        which = None if selector is None else selector.which_oneof("agent")
        if selector is None or which is None:
            return ("none", "")
        if which == "agent_id":
            return ("agent", selector.agent_id or "")
        if which == "anonymous_agent":
            return ("anonymous", "")
        return ("filter", selector.match_by_filter or "")

    def tag_pairs(self) -> tuple[tuple[str, str], ...]:
        """The ``(key, value)`` tags, what ``tests_with_tag`` looks up."""
        return () if self.details is None else tuple((t.key, t.value) for t in self.details.tags)


class StopTestMetadata(Message):
    test_id: Str = ""


class RpcStatus(Message):
    """``google.rpc.Status``; ``details`` are ``Any`` messages in proto3 JSON (``@type``)."""

    code: Annotated[int, Field(ge=-(2**31), le=2**31 - 1), BeforeValidator(_int64)] = 0
    message: Str = ""
    details: tuple[dict[str, Any], ...] = ()

    @field_validator("details")
    @classmethod
    def _any(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for item in value:
            if not isinstance(item.get("@type"), str):
                raise ValueError("each detail needs an '@type' string")
        return value


class Operation(Message):
    __oneofs__ = {"result": ("error", "response")}
    id: Str = ""
    description: Annotated[Str, Field(max_length=256)] = ""
    created_at: Timestamp | None = None
    created_by: Str = ""
    modified_at: Timestamp | None = None
    done: Bool = False
    metadata: StopTestMetadata | None = None
    error: RpcStatus | None = None
    response: Test | None = None

    @model_validator(mode="after")
    def _done_has_one_result(self) -> Self:
        if self.done and self.error is None and self.response is None:
            raise ValueError("a done operation has exactly one of error or response")
        return self
