"""The control API dom0d serves (gRPC on a Unix socket) and the pieces the CLI shares with it."""
