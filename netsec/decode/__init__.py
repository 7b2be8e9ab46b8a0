"""Packet decoders, Suricata style (netsec.decode.decoder says how a frame is decoded).

The entry points live in a module of their own, not here, because the hot path is compiled
(builder/compile_engine.py) and a package's __init__ is left out of the compiled group.
"""
from netsec.decode.decoder import LINKTYPES, Decoder, DecoderConfig, decode

__all__ = ["LINKTYPES", "Decoder", "DecoderConfig", "decode"]
