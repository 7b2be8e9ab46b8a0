"""The agent as a domain starts it: `python -S -m domains.agent_start`, or preloaded by
init (`init.py --preload`), which imports this once and forks it for each start.

Every domain's start waits on the agent's imports, and asyncio imports `ssl` whenever it
can (a tenth of the agent's start) though the agent never speaks TLS: here, before
anything imports asyncio, `ssl` is marked absent, which asyncio takes as a Python built
without it. So this module is imported only by what runs the agent (init and the agent
itself); tests and tools import `domains.agent`, which keeps ssl. sys-sec's services run
in processes of their own and have it.
"""
from __future__ import annotations

import sys

sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
from domains.agent import main  # noqa: E402

if __name__ == "__main__":
    main()
