"""What the security domain computes: decoding, flows, Suricata-compatible rules and
detection, EVE records, and without IO the policy, rulesets, block lists and bundles."""
