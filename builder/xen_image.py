"""A machine to prove the `xen` backend on: Debian's Xen 4.17 booted under QEMU (TCG), with
a PV dom0 that runs oxenstored, `xl`, and Hyperwall's own Python from the host (shared
read-only over virtio-9p). Built from Debian packages into a cache keyed by their versions,
so only the first run downloads (~75 MB) and unpacks.

What it took (see also ../shared/xen-nested): SMAP off for a PV dom0 under TCG; Debian's
non-RT 6.1 kernel; an uncompressed vmlinux and initramfs (decompressing under TCG costs
seconds); Xen's drivers are modules, loaded by dom0's /init; libgcc_s for `xl`.
With several guests running and Xen's default lazy FPU switching, this emulated machine
misbehaved at random (processes in dom0 and guests dying of SIGSEGV, garbled strings): Xen
switches FPU state eagerly here (XEN_CMDLINE).

`boot(image, script)` runs `script` (a shell snippet) in dom0 once xenstore and xl are up,
and returns the serial console's lines; dom0 powers off when it ends.
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.initramfs import shared_libraries, write_cpio

CACHE = Path(os.environ.get("HYPERWALL_XEN_CACHE", "/var/cache/hyperwall/xen"))
XEN_PACKAGES = ["xen-hypervisor-4.17-amd64", "xen-utils-4.17", "xen-utils-common",
                "xenstore-utils", "libxencall1", "libxenevtchn1", "libxenforeignmemory1",
                "libxengnttab1", "libxenmisc4.17", "libxenstore4", "libxentoollog1",
                "libxenhypfs1", "libxendevicemodel1", "libxentoolcore1", "libyajl2",
                "busybox-static"]


class ImageUnavailable(RuntimeError):
    """The Debian packages to build the image from cannot be had here."""


def kernel() -> str:
    """The newest Debian 6.1 (non-RT) kernel the archive has: newer ones hang as a PV dom0
    under TCG (RCU stalls, see ../shared/xen-nested)."""
    found = _run("apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$")
    names = sorted((line.split()[0] for line in found.splitlines()),
                   key=lambda n: int(n.split("-")[3]))
    if not names:
        raise ImageUnavailable("no linux-image-6.1.0-*-amd64 in the apt archive")
    return names[-1].removeprefix("linux-image-")
# xen-netback: sys-sec's uplink is a vif whose backend is dom0.
XEN_MODULES = ["xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc", "xen-netback"]
# What guests may load (builder/xen_guest.py picks per kind): networking, netfilter and
# what they depend on; kept in the image folder with busybox's depmod run over it.
GUEST_MODULE_TREES = ["kernel/net", "kernel/lib", "kernel/crypto", "kernel/drivers/net/xen-netback",
                      "kernel/drivers/net/xen-netfront.ko", "kernel/drivers/net/tun.ko",
                      "modules.builtin", "modules.builtin.modinfo", "modules.order"]
SHARE_MODULES = ["netfs", "fscache", "9pnet", "9p", "virtio_ring", "virtio",
                 "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "9pnet_virtio"]
ROOT_DIRS = ["bin", "dev", "proc", "sys", "tmp", "run", "etc", "lib64", "lib/modules", "guest",
             "host", "var/run/xen", "var/run/xenstored", "var/lib/xen", "var/lib/xenstored",
             "var/log/xen/console"]

INIT = """#!/bin/sh
export PATH=/bin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts   # xenconsoled's guest ttys
for m in {modules}; do insmod /lib/modules/$m.ko 2>/dev/null; done
mount -t xenfs xenfs /proc/xen
# The host's files do not change while dom0 runs: cached, each is read over 9p once
# (a Python start and a guest image read cost several times more uncached).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=1048576 hostshare /host
for l in $(sed -n 's/.*hw.links=\\([^ ]*\\).*/\\1/p' /proc/cmdline | tr ':' ' '); do
  rmdir $l 2>/dev/null   # the kernel's own initramfs brings an empty /root
  ln -s /host$l $l
done
oxenstored --pid-file /var/run/xen/xenstored.pid
while ! xenstore-ls / >/dev/null 2>&1; do sleep 0.1; done
xen-init-dom0 >/dev/null; xenconsoled --log=guest --log-dir=/var/log/xen/console
echo "HW-DOM0-READY"
. /guest/run.sh
echo "HW-DOM0-DONE rc=$?"
poweroff -f
"""

# SMAP off: a PV dom0 dies at its first instruction with it under TCG. PCID/INVPCID off:
# fewer TLB paths for TCG to get wrong.
QEMU_CPU = "max,-smap,-pcid,-invpcid"
# spec-ctrl=eager-fpu: the emulated CPU is an AMD one, for which Xen switches FPU state
# lazily (CR0.TS and #NM); under TCG that corrupted vector registers across vCPU switches
# (SIGSEGV in dom0's xl and guests' Python, garbled strings) once several guests ran.
# Eager switching saves and restores the state at every switch and ended it.
# bootscrub=0: scrubbing 4 GB at boot costs seconds under emulation.
XEN_CMDLINE = ("dom0_mem=768M,max:768M dom0_max_vcpus=2 bootscrub=0 spec-ctrl=eager-fpu "
               "console=com1 com1=115200,8n1 loglvl=warning guest_loglvl=warning")


@dataclass(frozen=True)
class Image:
    folder: Path

    @property
    def xen(self) -> Path:
        return self.folder / "xen.elf"

    @property
    def vmlinux(self) -> Path:
        return self.folder / "vmlinux"

    @property
    def dom0_root(self) -> Path:
        return self.folder / "root"

    @property
    def modules(self) -> Path:
        """`<release>/` with the modules guests may load and busybox's modules.dep."""
        return self.folder / "modules"

    @property
    def kernel_release(self) -> str:
        return (self.folder / "release").read_text().strip()


def _run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _key(packages: list[str]) -> str:
    """The packages' versions and how we assemble them: either changing makes a new image."""
    out = _run("apt-cache", "policy", *packages)
    recipe = INIT + " ".join(XEN_MODULES + SHARE_MODULES + ROOT_DIRS + GUEST_MODULE_TREES)
    return hashlib.sha256((out + recipe).encode()).hexdigest()[:16]


def _vmlinux(bzimage: Path, out: Path) -> None:
    """The kernel's own payload, decompressed once here instead of at every boot."""
    d = bzimage.read_bytes()
    setup = ((d[0x1F1] or 4) + 1) * 512
    offset, length = struct.unpack_from("<II", d, 0x248)
    out.write_bytes(lzma.LZMADecompressor().decompress(d[setup + offset:setup + offset + length]))


def build(progress: Callable[[str], None] = lambda _: None) -> Image:
    """The image for the Debian packages available now (cached by their versions)."""
    release = kernel()
    packages = [*XEN_PACKAGES, f"linux-image-{release}"]
    folder = CACHE / _key(packages)
    if (folder / ".done").exists():
        return Image(folder)
    work = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    (work / "debs").mkdir(parents=True)
    progress(f"downloading {len(packages)} Debian packages")
    try:
        _run("apt-get", "download", "-q", *packages, cwd=work / "debs")
    except RuntimeError as e:
        raise ImageUnavailable(str(e)) from None
    x = work / "x"
    progress("unpacking")
    for deb in sorted((work / "debs").glob("*.deb")):
        _run("dpkg", "-x", str(deb), str(x))
    (work / "xen.elf").write_bytes(gzip.decompress((x / "boot" / "xen-4.17-amd64.gz").read_bytes()))
    progress("kernel")
    _vmlinux(x / "boot" / f"vmlinuz-{release}", work / "vmlinux")
    progress("dom0 root")
    r = work / "root"
    for d in ROOT_DIRS:
        (r / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(x / "bin" / "busybox", r / "bin")
    for a in _run(str(x / "bin" / "busybox"), "--list").split():
        if not (r / "bin" / a).exists():
            (r / "bin" / a).symlink_to("busybox")
    shutil.copytree(x / "usr", r / "usr", symlinks=True, dirs_exist_ok=True)
    shutil.copytree(x / "etc" / "xen", r / "etc" / "xen", symlinks=True)
    for junk in ("usr/share/man", "usr/share/doc", "usr/lib/modules"):
        shutil.rmtree(r / junk, ignore_errors=True)
    _copy_libraries(x, r)
    modules = x / "lib" / "modules" / release
    for m in XEN_MODULES + SHARE_MODULES:
        found = next(modules.rglob(f"{m}.ko"), None)
        if found is not None:   # else built into the kernel
            shutil.copy(found, r / "lib" / "modules")
    progress("guest modules")
    _guest_modules(modules, work, release)
    (r / "init").write_text(INIT.format(modules=" ".join(XEN_MODULES + SHARE_MODULES)))
    (r / "init").chmod(0o755)
    shutil.rmtree(work / "debs")
    shutil.rmtree(x)
    (work / ".done").touch()
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)
    return Image(folder)


def _guest_modules(modules: Path, work: Path, release: str) -> None:
    """The module trees guests may load, under `work/modules/<release>`, with busybox's
    depmod run over them (it wants them under lib/modules, hence the move)."""
    base = work / "depmod"
    for tree in GUEST_MODULE_TREES:
        src, dst = modules / tree, base / "lib" / "modules" / release / tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            shutil.copy2(src, dst)
    _run(str(work / "root" / "bin" / "busybox"), "depmod", "-b", str(base), release)
    (base / "lib" / "modules").rename(work / "modules")
    shutil.rmtree(base)
    (work / "release").write_text(release + "\n")


def _copy_libraries(x: Path, r: Path) -> None:
    env = {**os.environ, "LD_LIBRARY_PATH": str(x / "usr" / "lib" / "x86_64-linux-gnu")}
    programs = [b for folder in (x / "usr" / "lib" / "xen-4.17" / "bin", x / "usr" / "bin",
                                 x / "usr" / "sbin") if folder.is_dir() for b in folder.glob("*")]
    wanted = {lib for lib in shared_libraries(programs, env) if not lib.is_relative_to(x)}
    wanted.add(Path("/lib/x86_64-linux-gnu/libgcc_s.so.1"))   # xl needs it; ldd does not say so
    for lib in wanted:
        target = r / str(lib).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, target)


def links_for(paths: list[Path], root: Path) -> list[str]:
    """The host folders dom0 must see at their own paths (through /host): for each path,
    its shallowest ancestor that dom0's root does not have already."""
    out: list[str] = []
    for p in paths:
        parts = p.resolve().parts[1:]
        for i in range(1, len(parts) + 1):
            candidate = "/" + "/".join(parts[:i])
            if not (root / candidate.lstrip("/")).exists():
                if candidate not in out:
                    out.append(candidate)
                break
    return out


def boot(image: Image, script: str, *, host_paths: list[Path], timeout: float = 240.0,
         on_line: Callable[[str], None] = lambda _: None) -> list[str]:
    """Boot Xen with `script` as dom0's work; the console's lines, until dom0 powers off."""
    run_dir = image.folder.parent / f"run-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(image.dom0_root, run_dir, symlinks=True)
    (run_dir / "guest" / "run.sh").write_text(script)
    initrd = image.folder.parent / f"dom0-{os.getpid()}.cpio"
    try:
        write_cpio(run_dir, initrd)
        links = ":".join(links_for(host_paths, run_dir))
        argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-M", "q35",
                "-cpu", QEMU_CPU, "-m", "4096", "-smp", "2", "-display", "none",
                "-monitor", "none", "-serial", "stdio", "-no-reboot", "-kernel", str(image.xen),
                "-append", XEN_CMDLINE,
                "-initrd", f"{image.vmlinux} console=hvc0 rdinit=/init quiet hw.links={links},"
                f"{initrd}",
                "-fsdev", "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=hostshare"]
        lines: list[str] = []
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        # A hung boot prints nothing: a timer, not the output, decides when to give up.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                on_line(lines[-1])
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if not any("HW-DOM0-DONE" in line for line in lines) and proc.returncode != 0:
            raise TimeoutError(f"Xen under QEMU did not finish in {timeout:.0f}s; last: "
                               + " | ".join(lines[-5:]))
        return lines
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        initrd.unlink(missing_ok=True)


def main() -> int:
    image = build(progress=lambda step: print(f"== {step}", flush=True))
    print(f"image: {image.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
