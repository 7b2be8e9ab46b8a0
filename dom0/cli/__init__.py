"""`hyperwall`: the command line over dom0d's control API."""
