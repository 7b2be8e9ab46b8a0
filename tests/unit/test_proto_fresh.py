"""The committed generated code in proto/gen/ matches what proto/generate.py makes now."""
from __future__ import annotations

import re
from pathlib import Path

from proto import generate

# Lines that only record which protoc/grpcio-tools made the file: a newer generator in a
# fresh venv must not make the committed code look stale.
_VERSION_STAMP = re.compile(
    r"^(# Protobuf Python Version:.*|GRPC_GENERATED_VERSION = .*|\s+\d+,\s*$)", re.MULTILINE)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _VERSION_STAMP.sub("", p.read_text())
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    generate.generate(tmp_path / "gen")
    fresh, committed = _tree(tmp_path / "gen"), _tree(generate.DEFAULT_OUT)
    assert sorted(committed) == sorted(fresh), "run: .venv/bin/python proto/generate.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}; run: .venv/bin/python proto/generate.py"


def test_every_proto_file_has_generated_code() -> None:
    for proto in generate.proto_files():
        module = proto.relative_to(generate.PROTO_ROOT).with_suffix("")
        assert (generate.DEFAULT_OUT / f"{module}_pb2.py").is_file(), proto
