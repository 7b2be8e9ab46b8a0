"""The control domain: xenstore, the toolstack, backends, policy, the control API and CLI."""
