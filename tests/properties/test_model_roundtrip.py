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
