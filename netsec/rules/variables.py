"""Address and port variables (`$HOME_NET`, `$HTTP_PORTS`): Suricata's defaults, overridable.

Defaults are those of Suricata's shipped suricata.yaml; a YAML file in its `vars:`
layout (address-groups / port-groups) overrides or adds names.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from netsec.rules.errors import RuleError

DEFAULT_ADDRESSES = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET", "SMTP_SERVERS": "$HOME_NET", "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET", "TELNET_SERVERS": "$HOME_NET", "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET", "DNP3_SERVER": "$HOME_NET", "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET", "MODBUS_SERVER": "$HOME_NET", "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
DEFAULT_PORTS = {
    "HTTP_PORTS": "80", "SHELLCODE_PORTS": "!80", "ORACLE_PORTS": "1521", "SSH_PORTS": "22",
    "DNP3_PORTS": "20000", "MODBUS_PORTS": "502", "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21", "GENEVE_PORTS": "6081", "VXLAN_PORTS": "4789", "TEREDO_PORTS": "3544",
}


class Variables:
    """Named address groups and port groups, looked up without the `$`."""

    def __init__(self, addresses: dict[str, str] | None = None,
                 ports: dict[str, str] | None = None) -> None:
        self.addresses = {**DEFAULT_ADDRESSES, **(addresses or {})}
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        # Parsed matchers by text: a rule set repeats the same few headers thousands of times.
        self.cache: dict[tuple[str, str], object] = {}

    @classmethod
    def from_yaml(cls, path: Path) -> Variables:
        """Read a suricata.yaml-style file (`vars: {address-groups, port-groups}`)."""
        doc = yaml.safe_load(path.read_text()) or {}
        vars_ = doc.get("vars", doc)
        if not isinstance(vars_, dict):
            raise RuleError("vars: not a mapping", f"{path}:1")
        return cls({k: str(v) for k, v in (vars_.get("address-groups") or {}).items()},
                   {k: str(v) for k, v in (vars_.get("port-groups") or {}).items()})

    def address(self, name: str) -> str:
        try:
            return self.addresses[name]
        except KeyError:
            raise RuleError(f"unknown address variable ${name}") from None

    def port(self, name: str) -> str:
        try:
            return self.ports[name]
        except KeyError:
            raise RuleError(f"unknown port variable ${name}") from None
