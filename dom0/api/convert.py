"""Between the domain model (dom0/model.py) and the control API's messages, both ways.

The server turns records into messages; the CLI turns messages back into records so that
it renders with the model's own helpers (e.g. `DomainState.xl_flags`). Enum members map by
name: DomainState.RUNNING <-> DOMAIN_STATE_RUNNING.
"""
from __future__ import annotations

from dom0.model import DomainEvent, DomainInfo, DomainState, EventKind
from proto.gen.hyperwall.control.v1 import control_pb2 as pb


def domain_to_pb(info: DomainInfo) -> pb.Domain:
    msg = pb.Domain(
        name=info.name, kind=info.kind, backend=info.backend, memory_mb=info.memory_mb,
        vcpus=info.vcpus, policy=info.policy, cpu_time=info.cpu_time, users=info.users,
        state=pb.DomainState.Value(f"DOMAIN_STATE_{info.state.name}"),
    )
    if info.domid is not None:
        msg.domid = info.domid
    if info.uuid is not None:
        msg.uuid = info.uuid
    return msg


def domain_from_pb(msg: pb.Domain) -> DomainInfo:
    return DomainInfo(
        name=msg.name, domid=msg.domid if msg.HasField("domid") else None,
        uuid=msg.uuid if msg.HasField("uuid") else None, kind=msg.kind, backend=msg.backend,
        memory_mb=msg.memory_mb, vcpus=msg.vcpus, policy=msg.policy,
        state=DomainState[_member(pb.DomainState.Name(msg.state), "DOMAIN_STATE_")],
        cpu_time=msg.cpu_time, users=tuple(msg.users),
    )


def event_to_pb(event: DomainEvent) -> pb.DomainEvent:
    msg = pb.DomainEvent(kind=pb.EventKind.Value(f"EVENT_KIND_{event.kind.name}"),
                         domain=event.domain, detail=event.detail)
    if event.domid is not None:
        msg.domid = event.domid
    msg.timestamp.FromNanoseconds(round(event.timestamp * 1e9))
    return msg


def event_from_pb(msg: pb.DomainEvent) -> DomainEvent:
    return DomainEvent(
        kind=EventKind[_member(pb.EventKind.Name(msg.kind), "EVENT_KIND_")],
        domain=msg.domain, domid=msg.domid if msg.HasField("domid") else None,
        detail=msg.detail, timestamp=msg.timestamp.ToNanoseconds() / 1e9,
    )


def _member(proto_name: str, prefix: str) -> str:
    # An UNSPECIFIED value means a peer built from a newer or broken .proto: say so by name.
    if proto_name.endswith("_UNSPECIFIED"):
        raise ValueError(f"message carries {proto_name}, which names no model value")
    return proto_name.removeprefix(prefix)
