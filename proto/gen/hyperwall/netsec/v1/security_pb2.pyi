from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StreamAlertsRequest(_message.Message):
    __slots__ = ("domain", "since", "follow", "include_drops")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DROPS_FIELD_NUMBER: _ClassVar[int]
    domain: str
    since: str
    follow: bool
    include_drops: bool
    def __init__(self, domain: _Optional[str] = ..., since: _Optional[str] = ..., follow: _Optional[bool] = ..., include_drops: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("timestamp", "domain", "action", "signature_id", "signature", "src", "dest", "category", "eve_json", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "severity", "flow_id", "app_proto", "gid", "rev")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    EVE_JSON_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DEST_IP_FIELD_NUMBER: _ClassVar[int]
    DEST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    APP_PROTO_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    REV_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    domain: str
    action: str
    signature_id: int
    signature: str
    src: str
    dest: str
    category: str
    eve_json: str
    event_type: str
    src_ip: str
    src_port: int
    dest_ip: str
    dest_port: int
    proto: str
    severity: int
    flow_id: int
    app_proto: str
    gid: int
    rev: int
    def __init__(self, timestamp: _Optional[str] = ..., domain: _Optional[str] = ..., action: _Optional[str] = ..., signature_id: _Optional[int] = ..., signature: _Optional[str] = ..., src: _Optional[str] = ..., dest: _Optional[str] = ..., category: _Optional[str] = ..., eve_json: _Optional[str] = ..., event_type: _Optional[str] = ..., src_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dest_ip: _Optional[str] = ..., dest_port: _Optional[int] = ..., proto: _Optional[str] = ..., severity: _Optional[int] = ..., flow_id: _Optional[int] = ..., app_proto: _Optional[str] = ..., gid: _Optional[int] = ..., rev: _Optional[int] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: str
    def __init__(self, domain: _Optional[str] = ...) -> None: ...

class EveRecord(_message.Message):
    __slots__ = ("eve_json",)
    EVE_JSON_FIELD_NUMBER: _ClassVar[int]
    eve_json: str
    def __init__(self, eve_json: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("engine", "pid", "uptime", "rules_loaded", "reloads", "reload_failures", "packets", "bytes", "alerts", "drops", "accepted", "bypassed", "bypassed_depth", "bypassed_clean", "queue_received", "queue_batches", "queue_overflows", "flows_active", "stats_json", "message")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    RULES_LOADED_FIELD_NUMBER: _ClassVar[int]
    RELOADS_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FAILURES_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_DEPTH_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_CLEAN_FIELD_NUMBER: _ClassVar[int]
    QUEUE_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_OVERFLOWS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    engine: str
    pid: int
    uptime: float
    rules_loaded: int
    reloads: int
    reload_failures: int
    packets: int
    bytes: int
    alerts: int
    drops: int
    accepted: int
    bypassed: int
    bypassed_depth: int
    bypassed_clean: int
    queue_received: int
    queue_batches: int
    queue_overflows: int
    flows_active: int
    stats_json: str
    message: str
    def __init__(self, engine: _Optional[str] = ..., pid: _Optional[int] = ..., uptime: _Optional[float] = ..., rules_loaded: _Optional[int] = ..., reloads: _Optional[int] = ..., reload_failures: _Optional[int] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., alerts: _Optional[int] = ..., drops: _Optional[int] = ..., accepted: _Optional[int] = ..., bypassed: _Optional[int] = ..., bypassed_depth: _Optional[int] = ..., bypassed_clean: _Optional[int] = ..., queue_received: _Optional[int] = ..., queue_batches: _Optional[int] = ..., queue_overflows: _Optional[int] = ..., flows_active: _Optional[int] = ..., stats_json: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadReply(_message.Message):
    __slots__ = ("pid", "rules_loaded", "message")
    PID_FIELD_NUMBER: _ClassVar[int]
    RULES_LOADED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    rules_loaded: int
    message: str
    def __init__(self, pid: _Optional[int] = ..., rules_loaded: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
