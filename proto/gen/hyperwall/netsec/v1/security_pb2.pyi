from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StreamAlertsRequest(_message.Message):
    __slots__ = ("domain", "since", "follow")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    domain: str
    since: str
    follow: bool
    def __init__(self, domain: _Optional[str] = ..., since: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("timestamp", "domain", "action", "signature_id", "signature", "src", "dest", "category", "eve_json")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    EVE_JSON_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    domain: str
    action: str
    signature_id: int
    signature: str
    src: str
    dest: str
    category: str
    eve_json: str
    def __init__(self, timestamp: _Optional[str] = ..., domain: _Optional[str] = ..., action: _Optional[str] = ..., signature_id: _Optional[int] = ..., signature: _Optional[str] = ..., src: _Optional[str] = ..., dest: _Optional[str] = ..., category: _Optional[str] = ..., eve_json: _Optional[str] = ...) -> None: ...

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
