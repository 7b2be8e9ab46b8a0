"""Generate the Python code of every API from the .proto files under proto/hyperwall/.

    .venv/bin/python proto/generate.py          # rewrites proto/gen/ in place

The output is a package tree importable as `proto.gen.hyperwall.<api>.<version>`, e.g.
`from proto.gen.hyperwall.control.v1 import control_pb2, control_pb2_grpc`. protoc writes
imports between generated modules as if `hyperwall` were a top-level package; they are
rewritten to live under `proto.gen` so nothing has to touch sys.path. New APIs only need
their .proto file under proto/hyperwall/; tests/unit/test_proto_fresh.py fails when the
committed code no longer matches the .proto files.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
SOURCES = PROTO_ROOT / "hyperwall"
DEFAULT_OUT = PROTO_ROOT / "gen"
PACKAGE = "proto.gen"
_LOCAL_IMPORT = re.compile(r"^(from|import) hyperwall\.", re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(SOURCES.rglob("*.proto"))


def generate(out: Path) -> None:
    """Write the generated tree for every .proto file into `out`, replacing what was there."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    status = protoc.main([
        "grpc_tools.protoc", f"--proto_path={PROTO_ROOT}", f"--proto_path={well_known}",
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *files,
    ])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status} on {', '.join(files)}")
    for module in out.rglob("*.py*"):
        module.write_text(_LOCAL_IMPORT.sub(rf"\1 {PACKAGE}.hyperwall.", module.read_text()))
    # protoc makes no packages; every directory of the tree needs one to be importable.
    for folder in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        (folder / "__init__.py").touch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the package tree (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
