"""HTTP/1.x through OISF's LibHTP (Debian's libhtp2, the parser Suricata 6 and 7 use), bound
with cffi, behind the same AppParser interface and buffers as `netsec.app.http.HttpParser`.

libhtp is configured as Suricata configures it by default (app-layer-htp.c): personality
IDS without path lowercasing, `+` not decoded as space, request and response bodies
decompressed, cookies not parsed, spaces allowed in the URI, field limits 9000/18000.
`http.uri` is Suricata's SCHTPGenerateNormalizedUri over libhtp's parsed URI (normalised
path, `?` query as sent, `#` fragment); `http.host` is libhtp's request_hostname (the absolute
URI's host wins over Host), put in A-labels by `netsec.app.normalize.name` for block lists.
Body limits and windows, header-block limits and event names are the flow table's, as for
HttpParser; libhtp's own hard field limit raises "applayer.http.<side>_field_too_long".

The binding is cffi's API mode (struct offsets and constants taken from the real headers
by the C compiler, not restated by hand), compiled from the installed headers (libhtp-dev)
by `make install` (`python -m netsec.app.htp`) into `netsec/app/_htp_build/` beside this
file, or on first use where it is missing (`cache_dirs()`), named by the cdef and the
Python ABI and stamped with the headers' digest. Why then
and not at `pip install`: the project installs editable and pure-Python (no build step in
the shared pyproject, nothing to redo after a `git pull`); a libhtp-dev with other headers
rebuilds by itself; security updates of libhtp2 apply with no rebuild, since the module
links the shared library; and a domain image that copies the checkout's netsec/ carries
the built module, which is then used without the headers. Without a C compiler or
libhtp-dev, `load()` raises HtpUnavailable naming what is missing and how to install it.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netsec import files as _files
from netsec.app import AppOutput
from netsec.app import normalize as norm
from netsec.app.http import (
    _REQUEST_HEADER_BUFFERS,
    _RESPONSE_HEADER_BUFFERS,
    HttpParser,
    _eve,
    _header_buffers,
    _Tx,
)
from netsec.inspection import Window

HEADERS = Path("/usr/include/htp/htp.h")
_CDEF = r"""
typedef struct bstr_t bstr;
struct bstr_t { size_t len; ...; };
size_t bstr_len(const bstr *b);
unsigned char *bstr_ptr(const bstr *b);

typedef struct htp_cfg_t htp_cfg_t;
typedef struct htp_connp_t htp_connp_t;
typedef struct htp_table_t htp_table_t;
typedef struct timeval htp_time_t;
struct timeval { ...; };

typedef struct htp_uri_t htp_uri_t;
struct htp_uri_t { bstr *hostname; bstr *path; bstr *query; bstr *fragment; ...; };
typedef struct htp_header_t htp_header_t;
struct htp_header_t { bstr *name; bstr *value; ...; };
typedef struct htp_tx_t htp_tx_t;
struct htp_tx_t {
    htp_connp_t *connp;
    bstr *request_line; bstr *request_method; bstr *request_uri; bstr *request_protocol;
    htp_uri_t *parsed_uri; htp_uri_t *parsed_uri_raw; htp_table_t *request_headers;
    bstr *request_hostname; int is_protocol_0_9;
    bstr *response_line; bstr *response_protocol; bstr *response_status;
    int response_status_number; bstr *response_message; htp_table_t *response_headers;
    int64_t response_message_len; size_t index;
    ...;
};
typedef struct htp_tx_data_t htp_tx_data_t;
struct htp_tx_data_t { htp_tx_t *tx; const unsigned char *data; size_t len; ...; };
typedef struct htp_log_t htp_log_t;
struct htp_log_t { htp_connp_t *connp; const char *msg; ...; };

#define HTP_OK ...
#define HTP_ERROR ...
#define HTP_STREAM_ERROR ...
#define HTP_STREAM_DATA_OTHER ...
#define HTP_STREAM_TUNNEL ...
#define HTP_SERVER_IDS ...
#define HTP_DECODER_URL_PATH ...
#define HTP_DECODER_URLENCODED ...

char *htp_get_version(void);
htp_cfg_t *htp_config_create(void);
int htp_config_set_server_personality(htp_cfg_t *cfg, int personality);
void htp_config_set_convert_lowercase(htp_cfg_t *cfg, int ctx, int enabled);
void htp_config_set_plusspace_decode(htp_cfg_t *cfg, int ctx, int enabled);
void htp_config_set_response_decompression(htp_cfg_t *cfg, int enabled);
void htp_config_set_parse_request_cookies(htp_cfg_t *cfg, int enabled);
void htp_config_set_allow_space_uri(htp_cfg_t *cfg, int enabled);
void htp_config_set_field_limits(htp_cfg_t *cfg, size_t soft_limit, size_t hard_limit);
void htp_config_set_tx_auto_destroy(htp_cfg_t *cfg, int tx_auto_destroy);
void htp_config_register_log(htp_cfg_t *cfg, int (*cb)(htp_log_t *));
void htp_config_register_request_header_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *));
void htp_config_register_request_headers(htp_cfg_t *cfg, int (*cb)(htp_tx_t *));
void htp_config_register_request_body_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *));
void htp_config_register_response_header_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *));
void htp_config_register_response_headers(htp_cfg_t *cfg, int (*cb)(htp_tx_t *));
void htp_config_register_response_body_data(htp_cfg_t *cfg, int (*cb)(htp_tx_data_t *));
void htp_config_register_response_complete(htp_cfg_t *cfg, int (*cb)(htp_tx_t *));

htp_connp_t *htp_connp_create(htp_cfg_t *cfg);
void htp_connp_destroy_all(htp_connp_t *connp);
void htp_connp_open(htp_connp_t *connp, const char *client_addr, int client_port,
                    const char *server_addr, int server_port, htp_time_t *timestamp);
void htp_connp_set_user_data(htp_connp_t *connp, const void *user_data);
void *htp_connp_get_user_data(const htp_connp_t *connp);
int htp_connp_req_data(htp_connp_t *connp, const htp_time_t *ts, const void *data, size_t len);
size_t htp_connp_req_data_consumed(htp_connp_t *connp);
int htp_connp_res_data(htp_connp_t *connp, const htp_time_t *ts, const void *data, size_t len);
size_t htp_connp_res_data_consumed(htp_connp_t *connp);
void htp_connp_req_close(htp_connp_t *connp, const htp_time_t *ts);
void htp_connp_close(htp_connp_t *connp, const htp_time_t *ts);
size_t htp_table_size(const htp_table_t *table);
void *htp_table_get_index(const htp_table_t *table, size_t idx, bstr **key);

extern "Python" int _hw_log(htp_log_t *);
extern "Python" int _hw_req_header_data(htp_tx_data_t *);
extern "Python" int _hw_req_headers(htp_tx_t *);
extern "Python" int _hw_req_body(htp_tx_data_t *);
extern "Python" int _hw_res_header_data(htp_tx_data_t *);
extern "Python" int _hw_res_headers(htp_tx_t *);
extern "Python" int _hw_res_body(htp_tx_data_t *);
extern "Python" int _hw_res_complete(htp_tx_t *);
"""
_SOURCE = "#include <htp/htp.h>\n"
_MODULE = "_hyperwall_htp"


class HtpUnavailable(RuntimeError):
    """libhtp cannot be bound here; the message says what is missing."""


def cache_dirs() -> list[Path]:
    """Where the binding is looked for, in order; it is built into the first writable one.
    Beside this file first (`make install` builds it there, and domains see the checkout
    read-only), then a per-user temporary directory (a domain's own /tmp when the checkout
    has none built). `$HYPERWALL_CACHE/cffi` alone when set."""
    env = os.environ.get("HYPERWALL_CACHE")
    if env:
        return [Path(env) / "cffi"]
    return [Path(__file__).with_name("_htp_build"),
            Path(tempfile.gettempdir()) / f"hyperwall-cffi-{os.getuid()}"]


def _module_name() -> str:
    key = hashlib.sha256(_CDEF.encode() + _SOURCE.encode() +
                         sys.implementation.cache_tag.encode()).hexdigest()[:16]
    return f"{_MODULE}_{key}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _header_digest() -> str | None:
    try:
        return hashlib.sha256(HEADERS.read_bytes()).hexdigest()
    except OSError:
        return None


def _build(target: Path, digest: str) -> None:
    try:
        from cffi import FFI
    except ImportError:
        raise HtpUnavailable("the cffi package is missing (pip install cffi)") from None
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        raise HtpUnavailable("no C compiler to build the libhtp binding (install gcc)")
    builder = FFI()
    builder.cdef(_CDEF)
    builder.set_source(_MODULE, _SOURCE, libraries=["htp"])
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / ".gitignore").write_text("*\n")   # build output, never committed
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            built = builder.compile(tmpdir=tmp, verbose=False)
        except Exception as e:   # distutils/setuptools raise their own error types
            raise HtpUnavailable(f"building the libhtp binding in {tmp} failed: {e}") from e
        os.replace(built, target)   # atomic: concurrent builders race harmlessly
    target.with_name(target.name + ".htp-sha256").write_text(digest)


_lib: Any = None
_ffi: Any = None


def _built_from(path: Path) -> str | None:
    stamp = path.with_name(path.name + ".htp-sha256")
    return stamp.read_text() if stamp.exists() else None


def _find_or_build() -> Path:
    digest = _header_digest()
    paths = [d / _module_name() for d in cache_dirs()]
    for path in paths:
        # current, or (no headers here: a domain image) built elsewhere and carried along
        if path.exists() and (digest is None or _built_from(path) == digest):
            return path
    if digest is None:
        raise HtpUnavailable(f"{HEADERS} not found: install libhtp-dev and libhtp2 "
                             "(apt-get install libhtp-dev libhtp2, or make install)")
    errors = []
    for path in paths:
        try:
            _build(path, digest)
            return path
        except OSError as e:   # not writable (a read-only checkout): the next place
            errors.append(f"{path.parent}: {e.strerror or e}")
    raise HtpUnavailable("nowhere to build the libhtp binding: " + "; ".join(errors))


def load() -> tuple[Any, Any]:
    """(ffi, lib) of the compiled binding, built first if needed: when there is none, or
    the installed headers are not those it was built from. Where the headers are not
    installed (a domain image carrying a module built elsewhere) the module is used."""
    global _lib, _ffi
    if _lib is None:
        path = _find_or_build()
        spec = importlib.util.spec_from_file_location(_MODULE, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _ffi, _lib = mod.ffi, mod.lib
        _register_callbacks(_ffi)
    return _ffi, _lib


def version() -> str:
    ffi, lib = load()
    v: bytes = ffi.string(lib.htp_get_version())
    return v.decode()


def _register_callbacks(ffi: Any) -> None:
    # A Python error inside a callback fails that flow's parse (HTP_ERROR), never the engine.
    def parser_of(connp: Any) -> HtpParser:
        parser: HtpParser = ffi.from_handle(_lib.htp_connp_get_user_data(connp))
        return parser

    Callback = Callable[[Any], int]

    def extern(fn: Callback) -> Callback:
        # binds `fn` to the `extern "Python"` of its name; the compiled ffi is untyped
        bound: Callback = ffi.def_extern(error=-1)(fn)
        return bound

    @extern
    def _hw_log(log: Any) -> int:
        parser_of(log.connp)._log(ffi.string(log.msg))
        return 1

    @extern
    def _hw_req_header_data(d: Any) -> int:
        return parser_of(d.tx.connp)._header_data(d.tx, ffi.buffer(d.data, d.len)[:], True)

    @extern
    def _hw_res_header_data(d: Any) -> int:
        return parser_of(d.tx.connp)._header_data(d.tx, ffi.buffer(d.data, d.len)[:], False)

    @extern
    def _hw_req_headers(tx: Any) -> int:
        return parser_of(tx.connp)._request(tx)

    @extern
    def _hw_res_headers(tx: Any) -> int:
        return parser_of(tx.connp)._response(tx)

    @extern
    def _hw_req_body(d: Any) -> int:
        if d.data != ffi.NULL and d.len:
            parser_of(d.tx.connp)._body(d.tx, ffi.buffer(d.data, d.len)[:], True)
        return 1

    @extern
    def _hw_res_body(d: Any) -> int:
        if d.data != ffi.NULL and d.len:
            parser_of(d.tx.connp)._body(d.tx, ffi.buffer(d.data, d.len)[:], False)
        return 1

    @extern
    def _hw_res_complete(tx: Any) -> int:
        return parser_of(tx.connp)._complete(tx)


_configs: dict[int, Any] = {}


def _config(field_limit: int) -> Any:
    """One libhtp configuration per field limit, shared by the flows (as Suricata does)."""
    cfg = _configs.get(field_limit)
    if cfg is None:
        ffi, lib = load()
        cfg = lib.htp_config_create()
        lib.htp_config_set_server_personality(cfg, lib.HTP_SERVER_IDS)
        lib.htp_config_set_convert_lowercase(cfg, lib.HTP_DECODER_URL_PATH, 0)
        lib.htp_config_set_plusspace_decode(cfg, lib.HTP_DECODER_URLENCODED, 0)
        # Bodies are decompressed here, not by libhtp: its decoder hands out output only
        # when its 8 KiB buffer fills or the body ends, so a compressed body would be
        # inspected after the guest had most of it; and it passes a zlib body fed one
        # byte at a time through undecoded (see tests/unit/test_http_parsers_side_by_side.py)
        lib.htp_config_set_response_decompression(cfg, 0)
        lib.htp_config_set_parse_request_cookies(cfg, 0)
        lib.htp_config_set_allow_space_uri(cfg, 1)
        lib.htp_config_set_field_limits(cfg, min(9000, field_limit), field_limit)
        lib.htp_config_set_tx_auto_destroy(cfg, 1)
        lib.htp_config_register_log(cfg, lib._hw_log)
        lib.htp_config_register_request_header_data(cfg, lib._hw_req_header_data)
        lib.htp_config_register_request_headers(cfg, lib._hw_req_headers)
        lib.htp_config_register_request_body_data(cfg, lib._hw_req_body)
        lib.htp_config_register_response_header_data(cfg, lib._hw_res_header_data)
        lib.htp_config_register_response_headers(cfg, lib._hw_res_headers)
        lib.htp_config_register_response_body_data(cfg, lib._hw_res_body)
        lib.htp_config_register_response_complete(cfg, lib._hw_res_complete)
        _configs[field_limit] = cfg
    return cfg


def _b(ffi: Any, lib: Any, s: Any) -> bytes:
    return b"" if s == ffi.NULL else ffi.buffer(lib.bstr_ptr(s), lib.bstr_len(s))[:]


class _Body:
    """The body bytes of one transaction's direction since its last inspection, after up
    to `body_context` bytes already inspected (HttpParser's windows), and the streaming
    gzip/deflate decoder of a compressed one (HttpParser's `_inflate` state)."""
    __slots__ = ("buf", "length", "inspected", "limited", "decoder", "zhead")

    def __init__(self, encoding: bytes = b"") -> None:
        self.buf = bytearray()
        self.length = 0
        self.inspected = 0
        self.limited = False
        compressed = encoding.strip().lower() in (b"gzip", b"x-gzip", b"deflate")
        self.decoder = zlib.decompressobj(47) if compressed else None   # gzip or zlib header
        self.zhead: bytes | None = b"" if compressed else None


class HtpParser:
    proto = "http"

    def __init__(self, request_body_limit: int = 100 * 1024,
                 response_body_limit: int = 100 * 1024, body_context: int = 2048,
                 field_limit: int = 18000, header_limit: int = 64 * 1024,
                 files: _files.FileTracker | None = None) -> None:
        ffi, lib = self._ffi, self._lib = load()
        self._ok: int = lib.HTP_OK          # libhtp's callback statuses
        self._error: int = lib.HTP_ERROR
        self.events: list[str] = []
        self.failed = False
        self.body_limits = (response_body_limit, request_body_limit)
        self.body_context = body_context
        self.header_limit = header_limit
        self._ts = ffi.new("htp_time_t *")
        self._handle = ffi.new_handle(self)
        self._connp = ffi.gc(lib.htp_connp_create(_config(field_limit)),
                             lib.htp_connp_destroy_all)
        lib.htp_connp_set_user_data(self._connp, self._handle)
        lib.htp_connp_open(self._connp, ffi.NULL, 0, ffi.NULL, 0, self._ts)
        # libhtp reuses a transaction's index once it is destroyed (tx_auto_destroy): ours
        # count from 0 in the connection, found by the libhtp transaction's address
        self._ids: dict[Any, int] = {}
        self._ntx = 0
        self._txs: dict[int, _Tx] = {}          # open transactions by our tx_id
        self._heads: dict[tuple[int, bool], bytearray] = {}   # raw header lines so far
        self._bodies: dict[tuple[int, bool], _Body] = {}
        self._pending = [b"", b""]              # bytes libhtp left for later, per direction
        self._out: list[AppOutput] = []
        self._side = True                       # the direction being fed, for log messages
        self.files = files                      # bodies as files (netsec.files), when tracked
        # a file's (name, encoding, range) from its headers, opened by its first body byte
        self._file_heads: dict[tuple[int, bool], tuple[Any, ...]] = {}

    def feed(self, data: bytes, to_server: bool) -> list[AppOutput]:
        if self.failed:
            return []
        out: list[AppOutput] = []
        self._out = out
        self._data(data, to_server)
        if self._pending[not to_server] and not self.failed:
            # the other direction waited for this one (a request behind its response)
            self._data(b"", not to_server)
        self._flush_bodies()
        return out

    def end_of_stream(self, to_server: bool) -> list[AppOutput]:
        if self.failed:
            return []
        out: list[AppOutput] = []
        self._out = out
        self._side = to_server
        if to_server:
            self._lib.htp_connp_req_close(self._connp, self._ts)
        else:   # the response side's end completes a body read until close
            self._lib.htp_connp_close(self._connp, self._ts)
        self._flush_bodies()
        return out

    def finish(self) -> list[AppOutput]:
        if self.files is not None:
            self.files.finish()
        out = [AppOutput(tx.tx_id, True, None, _eve(tx)) for tx in self._txs.values()]
        self._txs.clear()
        return out

    def tx_record(self, tx_id: int) -> dict[str, Any] | None:
        """The EVE http object of a transaction still open (a file's, before it is logged)."""
        tx = self._txs.get(tx_id)
        return _eve(tx) if tx is not None else None

    def _data(self, data: bytes, to_server: bool) -> None:
        lib = self._lib
        side = int(to_server)
        data = self._pending[side] + data
        self._pending[side] = b""
        if not data:
            return
        self._side = to_server
        if to_server:
            rc = lib.htp_connp_req_data(self._connp, self._ts, data, len(data))
        else:
            rc = lib.htp_connp_res_data(self._connp, self._ts, data, len(data))
        if rc == lib.HTP_STREAM_DATA_OTHER:
            used = (lib.htp_connp_req_data_consumed if to_server
                    else lib.htp_connp_res_data_consumed)(self._connp)
            self._pending[side] = data[used:]
        elif rc in (lib.HTP_STREAM_ERROR, lib.HTP_STREAM_TUNNEL):
            self.failed = True

    def _id(self, tx: Any) -> int:
        tx_id = self._ids.get(tx)   # cffi pointers hash and compare by address
        if tx_id is None:
            tx_id = self._ids[tx] = self._ntx
            self._ntx += 1
        return tx_id

    # callbacks (from libhtp, during _data)

    def _log(self, msg: bytes) -> None:
        if b"over the limit" in msg:
            self.events.append("applayer.http.{}_field_too_long".format(
                "request" if self._side else "response"))

    def _header_data(self, tx: Any, data: bytes, to_server: bool) -> int:
        head = self._heads.setdefault((self._id(tx), to_server), bytearray())
        head += data
        if len(head) > self.header_limit:
            self.events.append("applayer.http.{}_header_too_long".format(
                "request" if to_server else "response"))
            self.failed = True
            return self._error
        return self._ok

    def _headers(self, tx: Any, to_server: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
        ffi, lib = self._ffi, self._lib
        table = tx.request_headers if to_server else tx.response_headers
        headers = []
        for i in range(lib.htp_table_size(table)):
            h = ffi.cast("htp_header_t *", lib.htp_table_get_index(table, i, ffi.NULL))
            headers.append((_b(ffi, lib, h.name), _b(ffi, lib, h.value)))
        raw = bytes(self._heads.pop((self._id(tx), to_server), b""))
        line = _b(ffi, lib, tx.request_line if to_server else tx.response_line)
        # HttpParser's `head`: the start line and header lines, without the empty line
        head = line + b"\r\n" + raw.rstrip(b"\r\n") if raw.strip() else line
        return headers, head

    def _request(self, tx: Any) -> int:
        ffi, lib = self._ffi, self._lib
        t = self._txs[self._id(tx)] = _Tx(self._id(tx))
        t.method = _b(ffi, lib, tx.request_method)
        t.uri = _b(ffi, lib, tx.request_uri)
        t.protocol = _b(ffi, lib, tx.request_protocol)
        headers, head = self._headers(tx, True)
        bufs = _header_buffers(headers, head, _REQUEST_HEADER_BUFFERS)
        raw_host = _b(ffi, lib, tx.parsed_uri_raw.hostname) if tx.parsed_uri_raw != ffi.NULL \
            else b""
        for name, value in headers:
            if name.lower() == b"host" and not raw_host:
                raw_host = value
            elif name.lower() == b"user-agent":
                t.user_agent = value
            elif name.lower() == b"referer":
                t.referer = value
            elif name.lower() == b"content-encoding":   # a compressed upload (as Suricata)
                self._bodies[t.tx_id, True] = _Body(value)
        if tx.request_hostname != ffi.NULL:
            bufs["http.host.raw"] = raw_host
            bufs["http.host"] = t.host = norm.name(_b(ffi, lib, tx.request_hostname))
        uri = tx.parsed_uri
        path = b""
        if uri != ffi.NULL:   # Suricata's SCHTPGenerateNormalizedUri, uri-include-all off
            path = _b(ffi, lib, uri.path)
            if uri.query != ffi.NULL:
                path += b"?" + _b(ffi, lib, uri.query)
            if uri.fragment != ffi.NULL:
                path += b"#" + _b(ffi, lib, uri.fragment)
        bufs.update({"http.method": t.method, "http.uri": path, "http.uri.raw": t.uri,
                     "http.protocol": t.protocol,
                     "http.request_line": _b(ffi, lib, tx.request_line),
                     "http.start": head + b"\r\n\r\n"})
        self._out.append(AppOutput(t.tx_id, True, bufs))
        self._file_head(t, headers, True)
        return self._ok

    def _file_head(self, t: _Tx, headers: list[tuple[bytes, bytes]], to_server: bool) -> None:
        if self.files is None:
            return
        named = {n.lower(): v for n, v in reversed(headers)}   # the first of each name
        self._file_heads[t.tx_id, to_server] = (
            _files.file_name(named.get(b"content-disposition", b""), t.uri),
            named.get(b"content-encoding", b""),
            _files.content_range(named.get(b"content-range", b"")),
            _files.body_length(named))

    def _response(self, tx: Any) -> int:
        ffi, lib = self._ffi, self._lib
        if 100 <= tx.response_status_number < 200 and tx.response_status_number != 101:
            self._heads.pop((self._id(tx), False), None)
            return self._ok   # interim response: the real one follows
        tx_id = self._id(tx)
        t = self._txs.get(tx_id)
        if t is None:   # a response without a request (midstream pickup)
            t = self._txs[tx_id] = _Tx(tx_id)
        status = _b(ffi, lib, tx.response_status)
        protocol = _b(ffi, lib, tx.response_protocol)
        t.protocol = t.protocol or protocol
        t.status = status
        headers, head = self._headers(tx, False)
        for name, value in headers:
            if name.lower() == b"content-type":
                t.content_type = value
            elif name.lower() == b"content-encoding":
                self._bodies[t.tx_id, False] = _Body(value)
        bufs = _header_buffers(headers, head, _RESPONSE_HEADER_BUFFERS)
        bufs.update({"http.stat_code": status,
                     "http.stat_msg": _b(ffi, lib, tx.response_message),
                     "http.response_line": _b(ffi, lib, tx.response_line),
                     "http.protocol": protocol, "http.start": head + b"\r\n\r\n"})
        self._out.append(AppOutput(t.tx_id, False, bufs))
        self._file_head(t, headers, False)
        return self._ok

    def _body(self, tx: Any, data: bytes, to_server: bool) -> None:
        index = self._id(tx)
        body = self._bodies.get((index, to_server))
        if body is None:
            body = self._bodies[index, to_server] = _Body()
        if self.files is not None:
            head = self._file_heads.pop((index, to_server), None)
            if head is not None:
                self.files.open(index, to_server, *head)
            self.files.feed(index, to_server, data)   # past the body limit too
        if body.limited:
            return
        room = self.body_limits[to_server] - body.length
        if body.decoder is not None:
            data = HttpParser._inflate(body, data, room)
        if len(data) > room:
            data = data[:room]
            body.limited = True
            self.events.append("applayer.http.{}_body_limit_reached".format(
                "request" if to_server else "response"))
        body.buf += data
        body.length += len(data)

    def _flush_bodies(self) -> None:
        """One inspection per transaction and direction that got body bytes."""
        keep = self.body_context
        for (index, to_server), body in self._bodies.items():
            if body.length == body.inspected:
                continue
            body.inspected = body.length
            window = Window(body.buf, body.length - len(body.buf))
            if len(body.buf) > keep:
                del body.buf[:len(body.buf) - keep]
            bufs: dict[str, bytes | list[bytes]] = {"http.request_body": window} \
                if to_server else {"http.response_body": window, "file.data": window}
            self._out.append(AppOutput(index, to_server, bufs))

    def _complete(self, tx: Any) -> int:
        tx_id = self._ids.pop(tx, -1)
        t = self._txs.pop(tx_id, None)
        self._flush_bodies()   # the body's last bytes are inspected before the record
        self._bodies.pop((tx_id, True), None)
        self._bodies.pop((tx_id, False), None)
        if self.files is not None:
            for to_server in (True, False):
                self._file_heads.pop((tx_id, to_server), None)
                self.files.close(tx_id, to_server)
        if t is not None:
            t.length = tx.response_message_len
            self._out.append(AppOutput(t.tx_id, False, None, _eve(t)))
        return self._ok


def parser_class(name: str) -> type[HtpParser] | type[HttpParser]:
    """The HTTP parser `app-layer.protocols.http.parser` names: "libhtp" or "python"."""
    parsers: dict[str, type[HtpParser] | type[HttpParser]] = {"libhtp": HtpParser,
                                                              "python": HttpParser}
    if name not in parsers:
        raise ValueError(f"app-layer.protocols.http.parser: {name!r} is neither libhtp "
                         "nor python")
    if name == "libhtp":
        load()   # a binding that cannot be had fails the choice, not a flow later
    return parsers[name]


if __name__ == "__main__":   # `make install`: build the binding now, into the checkout
    print(f"{version()}: {_find_or_build()}")
