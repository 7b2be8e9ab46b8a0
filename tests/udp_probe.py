"""UDP echo and probe for the inline tests, run inside test namespaces.

    udp_probe.py echo ADDR PORT                 echo every datagram back (prints "ready")
    udp_probe.py probe DST PORT SECONDS [--until-reply] [--from ADDR]
        send a numbered datagram every 2 ms for SECONDS (or until the first reply), from
        ADDR if given (one of several client addresses: queues are balanced by address), and
        print JSON: start and first_reply (time.monotonic(), one clock for every namespace),
        sent, replies
"""
import json
import socket
import sys
import time

if sys.argv[1] == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[2], int(sys.argv[3])))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
else:
    dst, port, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    until_reply = "--until-reply" in sys.argv
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if "--from" in sys.argv:
        s.bind((sys.argv[sys.argv.index("--from") + 1], 0))
    s.settimeout(0.002)
    start = time.monotonic()
    first, sent, replies = None, 0, 0
    while time.monotonic() - start < seconds:
        s.sendto(str(sent).encode(), (dst, port))
        sent += 1
        try:
            while True:
                s.recv(2048)
                replies += 1
                first = first or time.monotonic()
        except (TimeoutError, BlockingIOError):
            pass
        if until_reply and first is not None:
            break
    print(json.dumps({"start": start, "first_reply": first, "sent": sent,
                      "replies": replies}))
