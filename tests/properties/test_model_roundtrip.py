"""Every model survives JSON and data round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import loadtest_core
from loadtest_core import Message
from tests.strategies import ALL


@pytest.mark.parametrize("name", sorted(ALL))
@given(data=st.data())
def test_json_round_trip(name: str, data: st.DataObject) -> None:
    """from_json(to_json(m)) == m and from_data(to_data(m)) == m for every model."""
    cls: type[Message] = getattr(loadtest_core, name)
    model = data.draw(ALL[name])
    assert cls.from_json(model.to_json()) == model
    assert cls.from_data(model.to_data()) == model


def test_every_message_has_a_strategy() -> None:
    """The round trip covers every model the package exports."""
    models = {
        n
        for n in loadtest_core.__all__
        if isinstance(getattr(loadtest_core, n), type)
        and issubclass(getattr(loadtest_core, n), Message)
        and n not in ("Message", "TestSpec")
    }
    assert models == set(ALL)


_times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
"""Model strings: any text but NUL, which the models refuse."""


@given(
    created=_times,
    modified=_times,
    who=_texts,
    error=st.none() | st.tuples(st.integers(1, 16), _texts),
    done=st.booleans(),
)
def test_operation_model_equals_the_validated_operation(
    created: float, modified: float, who: str, error: tuple[int, str] | None, done: bool
) -> None:
    """The unvalidated fast Operation of a stop equals the one parsed from its JSON data."""
    from loadtest_core._records import StopOperation
    from loadtest_core._snapshot import operation_data, operation_model

    op = StopOperation("op-1", "test-1", created, who, modified, done, error if done else None)
    if done and error is None:
        op.error = (10, "aborted")
    fast = operation_model(op)
    assert fast == loadtest_core.Operation.from_data(operation_data(op))
    assert fast.to_data() == operation_data(op)
