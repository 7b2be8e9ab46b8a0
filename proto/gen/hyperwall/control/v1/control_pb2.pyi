import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DomainState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOMAIN_STATE_UNSPECIFIED: _ClassVar[DomainState]
    DOMAIN_STATE_DEFINED: _ClassVar[DomainState]
    DOMAIN_STATE_CREATED: _ClassVar[DomainState]
    DOMAIN_STATE_RUNNING: _ClassVar[DomainState]
    DOMAIN_STATE_PAUSED: _ClassVar[DomainState]
    DOMAIN_STATE_SHUTDOWN: _ClassVar[DomainState]
    DOMAIN_STATE_CRASHED: _ClassVar[DomainState]
    DOMAIN_STATE_DYING: _ClassVar[DomainState]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_CREATED: _ClassVar[EventKind]
    EVENT_KIND_STARTED: _ClassVar[EventKind]
    EVENT_KIND_PAUSED: _ClassVar[EventKind]
    EVENT_KIND_UNPAUSED: _ClassVar[EventKind]
    EVENT_KIND_SHUTDOWN: _ClassVar[EventKind]
    EVENT_KIND_CRASHED: _ClassVar[EventKind]
    EVENT_KIND_DESTROYED: _ClassVar[EventKind]
    EVENT_KIND_VIF_CONNECTED: _ClassVar[EventKind]
    EVENT_KIND_ERROR: _ClassVar[EventKind]
    EVENT_KIND_SCAN: _ClassVar[EventKind]
    EVENT_KIND_RECOVERY: _ClassVar[EventKind]
DOMAIN_STATE_UNSPECIFIED: DomainState
DOMAIN_STATE_DEFINED: DomainState
DOMAIN_STATE_CREATED: DomainState
DOMAIN_STATE_RUNNING: DomainState
DOMAIN_STATE_PAUSED: DomainState
DOMAIN_STATE_SHUTDOWN: DomainState
DOMAIN_STATE_CRASHED: DomainState
DOMAIN_STATE_DYING: DomainState
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_CREATED: EventKind
EVENT_KIND_STARTED: EventKind
EVENT_KIND_PAUSED: EventKind
EVENT_KIND_UNPAUSED: EventKind
EVENT_KIND_SHUTDOWN: EventKind
EVENT_KIND_CRASHED: EventKind
EVENT_KIND_DESTROYED: EventKind
EVENT_KIND_VIF_CONNECTED: EventKind
EVENT_KIND_ERROR: EventKind
EVENT_KIND_SCAN: EventKind
EVENT_KIND_RECOVERY: EventKind

class Domain(_message.Message):
    __slots__ = ("name", "domid", "uuid", "kind", "backend", "memory_mb", "vcpus", "policy", "state", "cpu_time", "users")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    domid: int
    uuid: str
    kind: str
    backend: str
    memory_mb: int
    vcpus: int
    policy: str
    state: DomainState
    cpu_time: float
    users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., domid: _Optional[int] = ..., uuid: _Optional[str] = ..., kind: _Optional[str] = ..., backend: _Optional[str] = ..., memory_mb: _Optional[int] = ..., vcpus: _Optional[int] = ..., policy: _Optional[str] = ..., state: _Optional[_Union[DomainState, str]] = ..., cpu_time: _Optional[float] = ..., users: _Optional[_Iterable[str]] = ...) -> None: ...

class DomainEvent(_message.Message):
    __slots__ = ("kind", "domain", "domid", "detail", "timestamp")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DOMID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    kind: EventKind
    domain: str
    domid: int
    detail: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[_Union[EventKind, str]] = ..., domain: _Optional[str] = ..., domid: _Optional[int] = ..., detail: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: Domain
    def __init__(self, domain: _Optional[_Union[Domain, _Mapping]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: Domain
    def __init__(self, domain: _Optional[_Union[Domain, _Mapping]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("name", "reboot", "timeout_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REBOOT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    reboot: bool
    timeout_seconds: float
    def __init__(self, name: _Optional[str] = ..., reboot: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DestroyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DestroyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnpauseRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnpauseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("domains",)
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: Domain
    def __init__(self, domain: _Optional[_Union[Domain, _Mapping]] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("name", "argv", "stdin", "timeout_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    stdin: bytes
    timeout_seconds: float
    def __init__(self, name: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., stdin: _Optional[bytes] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("exit_code", "stdout", "stderr")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    stdout: bytes
    stderr: bytes
    def __init__(self, exit_code: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpResponse(_message.Message):
    __slots__ = ("domains",)
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...

class DownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderStatusResponse(_message.Message):
    __slots__ = ("status_json",)
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    status_json: str
    def __init__(self, status_json: _Optional[str] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("name", "paths", "no_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    NO_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    no_policy: bool
    def __init__(self, name: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., no_policy: _Optional[bool] = ...) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("name", "action")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: str
    def __init__(self, name: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class ScanUpdate(_message.Message):
    __slots__ = ("progress_json", "record_json", "step_json", "result_json")
    PROGRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    STEP_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    progress_json: str
    record_json: str
    step_json: str
    result_json: str
    def __init__(self, progress_json: _Optional[str] = ..., record_json: _Optional[str] = ..., step_json: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...
