"""Runs an InlineQueue inside a test namespace with a simple verdict, for the inline tests.

Usage: inline_probe.py QUEUE MODE STATS_FILE. Prints "ready" once bound; on SIGTERM writes
its counters as JSON to STATS_FILE and exits.
  drop-evil     drop packets containing b"EVIL", accept the rest
  bypass-first  mark every packet for bypass (later packets of the flow skip the queue)
"""
import dataclasses
import json
import signal
import sys
import threading

from domains.syssec.inline import InlineQueue
from netsec.engine import Verdict

queue, mode, stats_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
decide = {
    "drop-evil": lambda p: Verdict.DROP if b"EVIL" in p else Verdict.ACCEPT,
    "bypass-first": lambda p: Verdict.BYPASS,
}[mode]
q = InlineQueue(queue, decide)
q.open()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("ready", flush=True)
q.serve(stop, poll=0.05)
q.close()
with open(stats_file, "w") as f:
    json.dump(dataclasses.asdict(q.stats), f)
