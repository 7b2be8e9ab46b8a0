"""What Xen guests boot: the kernel and one initramfs per kind of domain, each carrying the
in-domain agent (the same program as in every backend) and what it runs.

- `guest.cpio`: busybox, iproute2, xen-netfront, and a Python runtime with exactly the
  modules the agent imports (traced, not guessed), for `app` and `disposable` domains.
- `sys-sec.cpio`: the same plus xen-netback (sys-sec is the network driver domain), the
  netfilter modules (loaded on demand through busybox's modprobe), iptables-nft,
  wireguard-go and `wg`, and everything `domains.syssec.controller` and `domains.syssec.ipsd`
  import.

The guest's /init mounts what a kernel leaves to userspace, loads the drivers, and `exec`s
`domains/init.py --power-off` as PID 1; the agent then reaches xenstore through
`/dev/xen/xenbus`. Xen's polite shutdown reaches the kernel, which runs /sbin/poweroff: that
asks init (SIGTERM) to stop the agent and power the domain off.

Python, its libraries and this checkout keep their host paths inside the guest, so the
same `PYTHONPATH` works in dom0 and in guests and tracebacks name real files. The images
are plain newc cpio, uncompressed: decompressing under emulation costs seconds.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from builder import xen_image
from builder.initramfs import shared_libraries, write_cpio

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dom0", "domains", "netsec", "proto")
# What of the checkout a guest carries: the guest side, the engine, the schemas and, of
# dom0, only the bus every domain speaks; never dom0's toolstack, backends, API or CLI.
GUEST_TREE = ("domains", "netsec", "proto", "dom0/__init__.py", "dom0/xenstore")
GUEST_ENTRY = ("domains.agent_start", "domains.agent", "domains.init", "domains.exec_service")
SYS_SEC_ENTRY = (*GUEST_ENTRY, "domains.syssec.controller", "domains.syssec.ipsd",
                 "domains.supervise")
GUEST_TOOLS = ("/usr/sbin/ip",)
SYS_SEC_TOOLS = (*GUEST_TOOLS, "/usr/sbin/xtables-nft-multi", "/usr/bin/wireguard-go",
                 "/usr/bin/wg")
IPTABLES = ("iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore",
            "ip6tables-save")
GUEST_MODULES = ("xen-netfront",)
# Loaded at boot; the netfilter modules iptables needs are loaded on demand (the kernel asks
# /sbin/modprobe), so all of them are in the image. crc32c_generic is a soft dependency of
# libcrc32c (nf_tables needs it), which modules.dep does not list.
SYS_SEC_MODULES = ("xen-netback", "xen-netfront", "nfnetlink_queue", "tun", "crc32c_generic")
SYS_SEC_MODULE_DIRS = ("kernel/net/netfilter", "kernel/net/ipv4/netfilter",
                       "kernel/net/ipv6/netfilter")
# grpc imports grpc_tools when it is there, for loading .proto files at run time, which
# Hyperwall does not do (its generated code is committed): 8 MB no guest needs.
NOT_AT_RUN_TIME = ("grpc_tools",)
STDLIB_UNUSED = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                 "lib2to3", "pydoc_data", "distutils", "config-3.11-x86_64-linux-gnu", "venv"}
BUSYBOX_APPLETS = ("sh", "mount", "mkdir", "ln", "cat", "echo", "sleep", "uname", "hostname",
                   "kill", "ls", "ps", "sed", "grep", "modprobe", "insmod", "sysctl", "true",
                   "false", "wget", "nc", "ping", "poweroff", "dmesg", "env", "id", "test",
                   "timeout")

INIT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/lib/hyperwall /var/run/wireguard
# No tmpfs on /tmp: the root is in memory already, and a checkout under /tmp (CI's) is in it.
mount -t devpts devpts /dev/pts; mount -t tmpfs run /run
name=$(sed -n 's/.*hyperwall.name=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
hostname "${{name:-guest}}"; ip link set lo up
for m in {modules}; do modprobe $m || echo "init: cannot load $m"; done
echo "HW-GUEST {kind} ${{name}} init"
export PYTHONPATH={pythonpath} HYPERWALL_NAME="$name" PYTHONDONTWRITEBYTECODE=1
exec {python} -I -S {repo}/domains/init.py --power-off {python} -S -m domains.agent_start
"""
# The kernel runs these for Xen's shutdown and reboot requests: init stops the agent and
# then powers off (SIGTERM) or reboots (SIGINT, as ctrl-alt-del).
POWEROFF = "#!/bin/sh\nexec kill -TERM 1\n"
REBOOT = "#!/bin/sh\nexec kill -INT 1\n"


class GuestBuildError(RuntimeError):
    """A guest image could not be made; says which step and why."""


@dataclass(frozen=True)
class Kind:
    name: str           # the image's file stem
    entry: tuple[str, ...]
    tools: tuple[str, ...]
    modules: tuple[str, ...]
    module_dirs: tuple[str, ...] = ()


GUEST = Kind("guest", GUEST_ENTRY, GUEST_TOOLS, GUEST_MODULES)
SYS_SEC = Kind("sys-sec", SYS_SEC_ENTRY, SYS_SEC_TOOLS, SYS_SEC_MODULES, SYS_SEC_MODULE_DIRS)

# Run by the interpreter the guests will run, with the guests' PYTHONPATH: imports the
# entry modules, then every module the project's own imported files name anywhere (imports
# inside functions included), until nothing new appears; prints every loaded file.
TRACE = r"""
import ast, importlib, json, os, sys
repo, packages, entry = sys.argv[1], tuple(sys.argv[2].split(",")), sys.argv[3].split(",")
for name in entry:
    importlib.import_module(name)
def origin(module):
    # The spec's, not __file__, and only where it exists: mypyc gives some compiled modules
    # a wrong one (netsec/netsec/...); their .py is found by name below.
    spec = getattr(module, "__spec__", None)
    path = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    return path if path and os.path.exists(path) else None
def source(name):
    # Read for its imports: the module's .py, compiled (builder/compile_engine.py) or not.
    base = os.path.join(repo, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.exists(path):
            return path
    return None
seen = set()
while True:
    ours = {n: f for n, m in list(sys.modules.items())
            if n.split(".")[0] in packages and "__mypyc" not in n and (f := source(n))}
    new = [f for n, f in ours.items() if n not in seen]
    if not new:
        break
    seen |= set(ours)
    for path in new:
        for node in ast.walk(ast.parse(open(path).read())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and \
                not node.level else []
            for name in names:
                if name.startswith(("tests", "builder")):
                    continue
                try:
                    importlib.import_module(name)
                except Exception:
                    pass    # optional (e.g. hyperscan where no wheel installs)
files = sorted({f for m in list(sys.modules.values()) if (f := origin(m))})
print(json.dumps(files))
"""


def _run(argv: list[str], **kw: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise GuestBuildError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-800:]}")
    return str(done.stdout)


def python_path(repo: Path = REPO) -> str:
    return ":".join([str(repo), sysconfig.get_paths()["purelib"]])


def traced_files(entry: Iterable[str], repo: Path = REPO) -> list[Path]:
    """Every file Python loads for `entry` and what the project imports from there."""
    env = {**os.environ, "PYTHONPATH": python_path(repo), "PYTHONDONTWRITEBYTECODE": "1"}
    out = _run([sys.executable, "-S", "-c", TRACE, str(repo), ",".join(PACKAGES),
                ",".join(entry)], env=env)
    return [Path(p) for p in json.loads(out)]


def python_tree(files: Iterable[Path], repo: Path = REPO) -> set[Path]:
    """What to copy for those files: the interpreter, its standard library whole (the
    standard library imports lazily, e.g. `encodings.idna` needs `stringprep`, which no
    trace of ours sees) but for tests and tools no guest runs, the project's packages
    whole (the guest's part of them, GUEST_TREE), and each third-party top-level package a
    traced file belongs to, whole too. A traced file of the project outside GUEST_TREE is an
    error: the guest would import what its image does not carry."""
    paths = sysconfig.get_paths()
    stdlib, site = Path(paths["stdlib"]), Path(paths["purelib"])
    out: set[Path] = {Path(os.path.realpath(sys.executable))}
    out |= {p for p in stdlib.iterdir() if p.name not in STDLIB_UNUSED}
    carried = [repo / p for p in GUEST_TREE]
    out |= set(carried)
    for f in files:
        if not f.is_relative_to(site):   # site may lie in the checkout (a .venv there)
            if f.is_relative_to(repo) and not any(f.is_relative_to(c) for c in carried):
                raise GuestBuildError(f"a guest imports {f.relative_to(repo)}, which is not "
                                      f"part of what guests carry ({', '.join(GUEST_TREE)})")
            continue
        top = site / f.relative_to(site).parts[0]
        if top.name.split(".")[0] in NOT_AT_RUN_TIME:
            continue
        out.add(top)
        out |= _dist_info(top)
        for libs in site.glob(f"{top.name.split('.')[0]}*.libs"):   # auditwheel's bundled libs
            out.add(libs)
    return out


def _dist_info(top: Path) -> set[Path]:
    """The metadata of the distributions providing a top-level module: some read their own
    version through importlib.metadata when imported."""
    name = top.name.split(".")[0]
    out = set()
    for dist in importlib.metadata.packages_distributions().get(name, []):
        files = importlib.metadata.distribution(dist).files or []
        out |= {Path(str(f.locate())).parent for f in files
                if f.parts and f.parts[0].endswith(".dist-info")}
    return out


def _elf_files(paths: Iterable[Path]) -> list[Path]:
    found = []
    for p in paths:
        for f in ([p] if p.is_file() else p.rglob("*") if p.is_dir() else []):
            if f.is_file() and not f.is_symlink() and not f.name.endswith(".ko"):
                with open(f, "rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        found.append(f)
    return found


def _copy_into(root: Path, path: Path) -> None:
    """`path` at the same place under `root` (symlinks kept, files with their times)."""
    target = root / str(path).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.opt-1.pyc", "*.opt-2.pyc", "tests",
                                                      "test", "_test*.so", "_xxtest*.so"))
    elif not target.exists():
        shutil.copy2(path, target, follow_symlinks=True)


def module_closure(modules_dir: Path, wanted: Iterable[str], dirs: Iterable[str]) -> list[str]:
    """Relative paths of the named modules, of every module under `dirs`, and of all they
    depend on, from `modules.dep`."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.removesuffix(".ko"): m for m in deps}
    todo = [m for m in deps if any(m.startswith(d + "/") for d in dirs)]
    for name in wanted:
        key = name.replace("-", "_")
        match = by_name.get(name) or next((m for n, m in by_name.items()
                                           if n.replace("-", "_") == key), None)
        if match is None:
            raise GuestBuildError(f"kernel module {name} is not in {modules_dir}")
        todo.append(match)
    out: set[str] = set()
    while todo:
        m = todo.pop()
        if m not in out:
            out.add(m)
            todo += deps.get(m, [])
    return sorted(out)


def build_one(kind: Kind, image: xen_image.Image, out: Path, repo: Path = REPO) -> Path:
    """One initramfs, written to `out/<kind>.cpio`."""
    root = out / f"{kind.name}.root"
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "lib64"):
        (root / d).mkdir(parents=True, exist_ok=True)
    busybox = image.dom0_root / "bin" / "busybox"
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for script, text in (("sbin/poweroff", POWEROFF), ("sbin/reboot", REBOOT)):
        (root / script).write_text(text)
        (root / script).chmod(0o755)
    (root / "sbin" / "modprobe").symlink_to("/bin/busybox")
    # Python and the project.
    tree = python_tree(traced_files(kind.entry, repo), repo)
    tools = [Path(t) for t in kind.tools if Path(t).exists()]
    for path in [*tree, *tools]:
        _copy_into(root, path)
    for alias in IPTABLES if any(t.name == "xtables-nft-multi" for t in tools) else ():
        (root / "usr" / "sbin" / alias).symlink_to("xtables-nft-multi")
    if any(t.name == "xtables-nft-multi" for t in tools):
        _copy_into(root, Path("/usr/lib/x86_64-linux-gnu/xtables"))
    libs = shared_libraries(_elf_files([root / str(p).lstrip("/") for p in [*tree, *tools]])
                            + _elf_files([root / "usr/lib/x86_64-linux-gnu/xtables"]))
    for lib in libs:
        _copy_into(root, lib)
    # Debug symbols are most of libpython's 23 MB: every guest holds its image in memory.
    if shutil.which("strip"):
        _run(["strip", "--strip-unneeded", *map(str, _elf_files([root]))])
    for etc in ("protocols", "services", "nsswitch.conf"):
        if Path("/etc", etc).exists():
            shutil.copy2(Path("/etc", etc), root / "etc" / etc)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    # Kernel modules, with busybox's depmod for modprobe's dependencies and aliases.
    release = image.kernel_release
    src = image.modules / release
    mods = root / "lib" / "modules" / release
    for rel in module_closure(src, kind.modules, kind.module_dirs):
        (mods / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, mods / rel)
    for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (src / meta).exists():
            shutil.copy2(src / meta, mods / meta)
    _run([str(busybox), "depmod", "-b", str(root), release])
    python = os.path.realpath(sys.executable)
    init = root / "init"
    init.write_text(INIT.format(modules=" ".join(kind.modules), kind=kind.name,
                                pythonpath=python_path(repo), python=python, repo=repo))
    init.chmod(0o755)
    # Bytecode compiled here, once: compiling under emulation at every boot costs seconds.
    _run([sys.executable, "-m", "compileall", "-q", "-j", "0",
          *(str(root / str(p).lstrip("/")) for p in tree if p.is_dir())])
    cpio = out / f"{kind.name}.cpio"
    write_cpio(root, cpio)
    shutil.rmtree(root)
    return cpio


def build(image: xen_image.Image, out: Path, repo: Path = REPO,
          progress: Callable[[str], None] = lambda _: None) -> Path:
    """Both images and the kernel in `out` (the layout `GuestImages.in_folder` reads)."""
    out.mkdir(parents=True, exist_ok=True)
    kernel = out / "vmlinux"
    if not kernel.exists():
        os.link(image.vmlinux, kernel) if image.vmlinux.stat().st_dev == out.stat().st_dev \
            else shutil.copy2(image.vmlinux, kernel)
    for kind in (GUEST, SYS_SEC):
        progress(f"{kind.name} image")
        cpio = build_one(kind, image, out, repo)
        progress(f"{kind.name} image: {cpio.stat().st_size / 2**20:.0f} MiB")
    return out
