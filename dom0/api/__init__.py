"""The control API dom0d serves (gRPC on a Unix socket) and the pieces the CLI shares with it."""
from pathlib import Path

# Where dom0d serves the API and where the CLI looks for it unless told otherwise.
DEFAULT_SOCKET = Path("/run/hyperwall/control.sock")
