"""verify's peak memory, under a hard limit: a child process holding its inputs caps its
address space at what it has now plus MAX_BUNDLE (the copy of the files verify returns)
plus VERIFY_OVERHEAD, then verifies hostile and maximal inputs. Any allocation past the
bound is a MemoryError in the child, which fails the test."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netsec.bundle import MAX_BUNDLE

ROOT = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, resource, sys
from builder.bundle import assemble
from netsec.bundle import MAX_BUNDLE, MAX_FILE, MAX_META, VERIFY_OVERHEAD, BundleError, verify
from tests.bundle_helpers import (KEY, NOW, RULE, deep_json, end, signed_members,
                                  sparse_bomb, trusted)

rule = RULE.format(n=1)
big = (rule * (min(MAX_FILE, (MAX_BUNDLE - (64 << 10)) // 2) // len(rule))).encode()
full = assemble({"rules/a.rules": big, "rules/b.rules": big}, key=KEY, provider="acme",
                version=1, created=NOW, valid_days=1)
del big
values = json.dumps([0] * ((MAX_META - 16) // 2)).encode()[:MAX_META - 2]
inputs = {
    "sparse bomb": sparse_bomb(16, 32 << 20),
    "full bundle": full,
    "full bundle, altered": full[:full.rindex(b"evil1")] + b"E" + full[full.rindex(b"evil1") + 1:],
    "deep manifest": signed_members(deep_json(MAX_META // 2 - 1)) + end(),
    "a megabyte of values": signed_members(values) + end(),
    "garbage": b"\xff" * MAX_BUNDLE,
}
del full


def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024


limit = vm_size() + MAX_BUNDLE + VERIFY_OVERHEAD
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {}
for name, data in inputs.items():
    try:
        b = verify(data, trusted(), now=NOW, min_version=0)
        out[name] = f"verified {sum(map(len, b.files.values()))} bytes"
        del b
    except BundleError as e:
        out[name] = f"refused: {e}"
print(json.dumps(out))
'''


def test_verify_stays_within_the_bundle_limit_plus_its_overhead() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got["sparse bomb"].startswith("refused: 'rules/r0.rules': not a plain file (a GNU "
                                         "sparse file)")
    assert got["full bundle"].startswith("verified ") and \
        int(got["full bundle"].split()[1]) > MAX_BUNDLE - (128 << 10), got["full bundle"]
    assert "rules/b.rules: does not match the manifest" in got["full bundle, altered"]
    assert "manifest.json: nested deeper than 8" in got["deep manifest"]
    assert "manifest.json: more than" in got["a megabyte of values"]
    assert got["garbage"].startswith("refused: not a readable bundle")
