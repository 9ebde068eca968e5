"""Models and generated protobuf messages convert losslessly both ways."""

from __future__ import annotations

from datetime import datetime

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

import loadtest_core
from loadtest_core import AgentSelector, Message, Operation, Summary
from loadtest_core.grpc._convert import PROTO_OF, from_proto, set_timestamp, to_proto
from tests.strategies import ALL


@pytest.mark.parametrize("name", sorted(ALL))
@given(data=st.data())
def test_round_trip_through_protobuf(name: str, data: st.DataObject) -> None:
    """from_proto(to_proto(m)) == m, and the proto bytes parse back to the same message."""
    cls: type[Message] = getattr(loadtest_core, name)
    model = data.draw(ALL[name])
    proto = to_proto(model)
    assert from_proto(cls, proto) == model
    again = type(proto).FromString(proto.SerializeToString())
    assert again == proto


def test_every_model_has_a_proto() -> None:
    """Every model of the seed maps to a generated message (Operation via Any packing)."""
    assert set(PROTO_OF) | {Operation} == {getattr(loadtest_core, n) for n in ALL}


def test_oneof_zero_value_member_survives() -> None:
    """anonymous_agent=False is a set oneof member on the wire too."""
    proto = to_proto(AgentSelector(anonymous_agent=False))
    assert proto.WhichOneof("agent") == "anonymous_agent"
    assert from_proto(AgentSelector, proto).which_oneof("agent") == "anonymous_agent"


def test_status_maps_to_the_protobuf_enum() -> None:
    """Summary.status goes out as the protobuf enum number of the same name."""
    proto = to_proto(Summary.from_data({"status": "WAITING"}))
    assert proto.status == 12


@given(
    when=st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.one_of(st.none(), st.timezones()),
    )
)
def test_set_timestamp_matches_from_datetime(when: datetime) -> None:
    """The fast timestamp setter agrees with protobuf's own, naive and aware alike."""
    fast, slow = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    set_timestamp(fast, when)
    slow.FromDatetime(when)
    assert (fast.seconds, fast.nanos) == (slow.seconds, slow.nanos)
