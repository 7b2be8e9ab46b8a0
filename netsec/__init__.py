"""The security domain: decoding, flows, Suricata-compatible rules and detection, EVE alerts."""
