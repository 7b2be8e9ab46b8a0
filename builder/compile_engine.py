"""Compile the engine's hot path with mypyc, from the same typed Python the pure build runs.

    python -m builder.compile_engine           build (make install runs it)
    python -m builder.compile_engine --clean   remove what a build left in the checkout

The decoders, the flow table and reassembly, the app-layer parsers and the detection loop
become C extensions beside their sources (netsec/engine.cpython-311-*.so next to
netsec/engine.py), sharing one runtime library, netsec/compiled__mypyc.*.so. Inside the
package, not at the top of the checkout, so that the editable install and the guest images
(which carry netsec/ whole) carry it too. Where a build is missing or older than its sources,
netsec/__init__.py falls back to the pure modules, so the checkout runs without a compiler.

Left pure, on purpose:
- the packages' __init__ modules: mypyc gives a compiled package __init__ a wrong __path__
  when the shared library lives inside the package;
- netsec/rules/{rule,addresses,ports,intrange}.py: compiled classes refuse duck-typed
  stand-ins, and tests build rules from such stand-ins;
- netsec/inspection.py: its Window subclasses bytes, which mypyc cannot compile.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NETSEC = REPO / "netsec"
GROUP = "netsec.compiled"   # the shared library: netsec/compiled__mypyc.*.so

# Whole packages but their __init__, and single modules, relative to netsec/: what runs
# per packet, and what parses and loads rules (ET Open's load is mostly parsing).
HOT_PACKAGES = ("decode", "flow", "detect", "rules/keywords")
HOT_MODULES = ("packet.py", "pcap.py", "engine.py", "eve.py", "app/http.py", "app/dns.py",
               "app/tls.py", "app/normalize.py", "rules/content_inspection.py",
               "rules/byteops.py", "rules/parser.py", "rules/loader.py")

# mypyc type-checks what it compiles. The project's [tool.mypy] names `files`, and with
# them set mypyc compiles those instead of the modules given (silently: nothing is built),
# so it gets a configuration of its own.
MYPY_CONFIG = "[mypy]\npython_version = 3.11\nignore_missing_imports = True\n"


def hot_path() -> list[Path]:
    files = [p for pkg in HOT_PACKAGES for p in sorted((NETSEC / pkg).glob("*.py"))
             if p.name != "__init__.py"]
    return files + [NETSEC / m for m in HOT_MODULES]


def built() -> list[Path]:
    """The extension modules a build leaves in the checkout."""
    return sorted(p for p in NETSEC.rglob("*.so") if "_htp_build" not in p.parts)


def clean() -> int:
    gone = built()
    for p in gone:
        p.unlink()
    return len(gone)


def build(jobs: int) -> list[Path]:
    from mypyc.build import mypycify
    from setuptools import setup

    sources = hot_path()
    with tempfile.TemporaryDirectory(prefix="hyperwall-mypyc-") as tmp:
        config = Path(tmp) / "mypy.ini"
        config.write_text(MYPY_CONFIG)
        cwd = Path.cwd()
        os.chdir(REPO)   # mypyc names modules by their path from the current directory
        try:
            # mypycify takes mypy's command line: the configuration, then the files.
            modules = mypycify(["--config-file", str(config)]
                               + [str(p.relative_to(REPO)) for p in sources],
                               opt_level="3", group_name=GROUP,
                               target_dir=str(Path(tmp) / "c"))
            setup(name="hyperwall-engine", ext_modules=modules,
                  script_args=["-q", "build_ext", "--inplace", "--build-temp", tmp,
                               "--parallel", str(jobs)])
        finally:
            os.chdir(cwd)
    return built()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m builder.compile_engine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args(argv)
    removed = clean()
    if args.clean:
        print(f"removed {removed} compiled modules")
        return 0
    if not shutil.which(os.environ.get("CC", "cc")):
        print("compile_engine: no C compiler here; the engine runs as pure Python",
              file=sys.stderr)
        return 0
    start = time.monotonic()
    print(f"== compiling the engine's hot path with mypyc ({len(hot_path())} modules)",
          flush=True)
    try:
        out = build(args.jobs)
    except SystemExit as e:   # setuptools reports a failed compile by exiting
        clean()
        print(f"compile_engine: mypyc failed ({e}); the pure-Python engine stays in use",
              file=sys.stderr)
        return 1
    print(f"   {len(out)} extension modules in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
