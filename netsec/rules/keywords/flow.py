"""flow (state and direction), app-layer-protocol."""
from __future__ import annotations

from netsec.inspection import Inspection
from netsec.rules.errors import RuleError
from netsec.rules.keywords import DOCS, Keyword
from netsec.rules.rule import Builder

_URL = DOCS + "flow-keywords.html"
FLOW_OPTIONS = {"established", "not_established", "stateless", "to_server", "to_client",
                "from_server", "from_client", "only_stream", "no_stream", "only_frag",
                "no_frag"}
_SYNONYM = {"from_client": "to_server", "from_server": "to_client"}


def _established(ins: Inspection) -> bool:
    return ins.flow is not None and ins.flow.established


def _not_established(ins: Inspection) -> bool:
    return ins.flow is None or not ins.flow.established


def _to_server(ins: Inspection) -> bool:
    return ins.to_server


def _to_client(ins: Inspection) -> bool:
    return not ins.to_server


def _only_frag(ins: Inspection) -> bool:
    return ins.packet.frag


def _no_frag(ins: Inspection) -> bool:
    return not ins.packet.frag


_CHECKS = {"established": _established, "not_established": _not_established,
           "to_server": _to_server, "to_client": _to_client, "only_frag": _only_frag,
           "no_frag": _no_frag}


def match_flow(ins: Inspection, options: frozenset[str]) -> bool:
    return all(_CHECKS[o](ins) for o in options if o in _CHECKS)


def setup_flow(b: Builder, value: str | None) -> None:
    opts = {o.strip() for o in (value or "").split(",")}
    bad = opts - FLOW_OPTIONS
    if bad:
        raise RuleError(f"flow: unknown option(s) {', '.join(sorted(bad))}")
    opts = {_SYNONYM.get(o, o) for o in opts}
    for a, c in (("to_server", "to_client"), ("established", "not_established"),
                 ("only_stream", "no_stream"), ("only_frag", "no_frag")):
        if a in opts and c in opts:
            raise RuleError(f"flow: {a} and {c} together")
    b.flow |= opts
    b.checks.extend(_CHECKS[o] for o in sorted(opts) if o in _CHECKS)


# Suricata's modes (which of the flow's per-direction protocols is compared); this engine
# detects one protocol per flow, so each mode reads that one.
_ALPROTO_MODES = frozenset({"direction", "final", "to_server", "to_client", "either",
                            "original"})


def setup_app_layer_protocol(b: Builder, value: str | None) -> None:
    """`app-layer-protocol:[!]name[,mode]`. As Suricata's DetectAppLayerProtocolPacketMatch:
    no flow never matches, and a negated protocol matches only once the flow's protocol is
    known (detected, or "failed"), so `!http` does not fire on a handshake or on data that
    is still being probed."""
    v, _, mode = (value or "").partition(",")
    v, mode = v.strip(), mode.strip()
    negated = v.startswith("!")
    name = v.lstrip("!").strip()
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise RuleError(f"app-layer-protocol: bad protocol {value!r}")
    if mode and mode not in _ALPROTO_MODES:
        raise RuleError(f"app-layer-protocol: unknown mode {mode!r} (want one of "
                        f"{', '.join(sorted(_ALPROTO_MODES))})")
    if negated:
        b.checks.append(lambda ins: ins.flow is not None
                        and ins.flow.app_proto not in ("", name))
    else:
        b.checks.append(lambda ins: ins.flow is not None and ins.flow.app_proto == name)


KEYWORDS = (
    Keyword("flow", setup_flow, "flow state and direction", _URL + "#flow", match=match_flow),
    Keyword("app-layer-protocol", setup_app_layer_protocol, "the flow's application protocol",
            DOCS + "app-layer.html"),
)
