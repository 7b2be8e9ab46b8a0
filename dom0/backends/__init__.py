"""Hypervisor backends behind one small interface (`base.Backend`): `ns`, later `qemu`, `xen`."""
