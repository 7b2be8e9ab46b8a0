"""xenstore path rules: characters, shape, length, and relative-to-domain resolution."""
from __future__ import annotations

import re
from dataclasses import dataclass

from dom0.xenstore.wire import XsError

ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048
SPECIAL = ("@introduceDomain", "@releaseDomain")
_VALID = re.compile(r"^[A-Za-z0-9\-/_@]*$")


class PathError(XsError, ValueError):
    """EINVAL: the path is malformed."""

    def __init__(self, detail: str) -> None:
        super().__init__("EINVAL", detail=detail)


@dataclass(frozen=True)
class Node:
    """A node to create: the toolstack and the exec protocol write lists of them."""

    path: str
    value: str | None          # None: a directory node (mkdir), value "" when created
    perms: tuple[str, ...] | None = None   # None: inherit from the parent


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def canonical(untrusted: bytes, domid: int) -> str:
    """The absolute path a request names, or PathError.

    Relative paths are under the caller's `/local/domain/<domid>`. Paths starting with `@`
    name special watches and are returned as they are.
    """
    try:
        path = untrusted.decode("ascii")
    except UnicodeDecodeError:
        raise PathError("path is not ASCII") from None
    if not path or not _VALID.match(path):
        raise PathError(f"bad characters in path {path[:64]!r}")
    if path.startswith("@"):
        if "/" in path:
            raise PathError("special path with a '/'")
        return path
    # '@' may appear inside a node name: Xen's valid_chars() allows it anywhere.
    if "//" in path or (path.endswith("/") and path != "/"):
        raise PathError(f"malformed path {path[:64]!r}")
    if path.startswith("/"):
        # oxenstored refuses a path of exactly ABS_PATH_MAX bytes: the limit counts the NUL.
        if len(path) >= ABS_PATH_MAX:
            raise PathError("path too long")
        return path
    if len(path) > REL_PATH_MAX:      # inclusive, as oxenstored counts it
        raise PathError("relative path too long")
    return f"{domain_path(domid)}/{path}"


def relative_to(path: str, domid: int) -> str:
    """How an event path is reported to a watch registered with a relative path."""
    prefix = domain_path(domid) + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def parent(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def is_under(path: str, top: str) -> bool:
    """`path` is `top` or below it."""
    return path == top or top == "/" or path.startswith(top + "/")
