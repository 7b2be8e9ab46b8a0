"""The toolstack: domain lifecycle over xenstore and a backend, like libxl/xl."""
from dom0.toolstack.lifecycle import CONNECT_TIMEOUT, MAX_DOMID, Store, Toolstack, Uplink

__all__ = ["CONNECT_TIMEOUT", "MAX_DOMID", "Store", "Toolstack", "Uplink"]
