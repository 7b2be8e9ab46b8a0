"""The control domain: the bus (`xenstore`), the daemon (`xenstored`), the toolstack,
backends, policy, the control API and CLI, and the simulated world of the demo (`sim`)."""
