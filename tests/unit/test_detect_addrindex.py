"""The address index gives the same rules as checking every rule's addresses."""
from __future__ import annotations

import random

from netsec import rules as rules_mod
from netsec.detect.addrindex import AddressIndex

HEADERS = ["[10.0.0.0/8,!10.1.0.0/16] any -> any any", "any any -> [192.0.2.1,192.0.2.7] any",
           "192.0.2.0/24 any <> 10.0.0.0/8 any", "any any -> any any",
           "![10.0.0.0/9] any -> 2001:db8::/32 any", "10.0.0.5 any -> !192.0.2.1 any",
           "[1.2.3.4,5.6.7.8,10.200.0.0/16] any -> any any"]


def test_index_agrees_with_each_rules_matchers() -> None:
    rules = [rules_mod.parse_rule(f'alert ip {h} (msg:"h{i}"; sid:{i + 1};)')
             for i, h in enumerate(HEADERS)]
    index = AddressIndex(list(enumerate(rules)))
    rng = random.Random(3)
    pool = ["10.0.0.5", "10.1.2.3", "10.200.1.1", "192.0.2.1", "192.0.2.7", "192.0.2.99",
            "1.2.3.4", "8.8.8.8", "2001:db8::1", "2001:db9::1", "10.127.0.1", "10.128.0.1"]
    for _ in range(400):
        src, dst = rng.choice(pool), rng.choice(pool)
        want = {i for i, r in enumerate(rules)
                if (r.src.match(src) and r.dst.match(dst))
                or (r.bidirectional and r.src.match(dst) and r.dst.match(src))}
        assert index.candidates(src, dst) == want, (src, dst)
