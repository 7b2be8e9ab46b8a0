"""The agent as a domain starts it: `python -S -m domains.agent_start`.

Every domain's start waits on the agent's imports, and asyncio imports `ssl` whenever it
can (a tenth of the agent's start) though the agent never speaks TLS: here, before
anything imports asyncio, `ssl` is marked absent, which asyncio takes as a Python built
without it. Only in this process: what imports `domains.agent` otherwise (tests, the
tools) keeps its ssl. sys-sec's services run in processes of their own and have it.
"""
from __future__ import annotations

import sys


def main() -> None:
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from domains.agent import main as agent_main
    agent_main()


if __name__ == "__main__":
    main()
