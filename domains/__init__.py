"""What runs inside every domain: init, the agent, the exec service, the supervisor (and its
restart policy, which init runs too), the command runner and logging; sys-sec's own programs
are in `domains.syssec`, the standard domains' definitions in `domains/standard/`."""
