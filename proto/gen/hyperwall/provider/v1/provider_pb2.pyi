import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("provider", "bundle_version", "engine", "disabled_sids", "applied_at", "previous_version")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_SIDS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    provider: str
    bundle_version: int
    engine: str
    disabled_sids: _containers.RepeatedScalarFieldContainer[int]
    applied_at: _timestamp_pb2.Timestamp
    previous_version: int
    def __init__(self, provider: _Optional[str] = ..., bundle_version: _Optional[int] = ..., engine: _Optional[str] = ..., disabled_sids: _Optional[_Iterable[int]] = ..., applied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class GetAlertSummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AlertCount(_message.Message):
    __slots__ = ("signature_id", "signature", "count")
    SIGNATURE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    signature_id: int
    signature: str
    count: int
    def __init__(self, signature_id: _Optional[int] = ..., signature: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetAlertSummaryResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[AlertCount]
    def __init__(self, alerts: _Optional[_Iterable[_Union[AlertCount, _Mapping]]] = ...) -> None: ...

class PushBundleRequest(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    def __init__(self, bundle: _Optional[bytes] = ...) -> None: ...

class PushBundleResponse(_message.Message):
    __slots__ = ("applied_version", "message")
    APPLIED_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    applied_version: int
    message: str
    def __init__(self, applied_version: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SetRuleEnabledRequest(_message.Message):
    __slots__ = ("sid", "enabled")
    SID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    sid: int
    enabled: bool
    def __init__(self, sid: _Optional[int] = ..., enabled: _Optional[bool] = ...) -> None: ...

class SetRuleEnabledResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
