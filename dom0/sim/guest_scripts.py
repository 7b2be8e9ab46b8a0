"""What the demo and the end-to-end tests run inside guests, and what sys-sec starts with
in the embedded platform: small standard-library scripts (`python -c SCRIPT ARGS`) that
print a result a check can read, never raise."""
from __future__ import annotations

from dom0.sim.net import ROUTER, ZONE

EICAR_SID = 9000001
SYS_SEC_FILES = {
    "syssec.toml": f'dns_upstream = "{ROUTER}"\ndoh_addresses = ["{ZONE["dns.google"]}"]\n',
    "lists/adult.txt": "# plain domains\nadult.example\n",
    "lists/ads.txt": "||ads.example^\n",
    "rules/local.rules":
        'drop http any any -> $HOME_NET any (msg:"ET MALWARE EICAR test file download"; '
        'flow:established,to_client; file.data; content:"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"; '
        f'classtype:trojan-activity; sid:{EICAR_SID}; rev:1;)\n',
}

# Fetch over HTTP(S): host port sni [source-address [path]]; prints the body or FAILED.
FETCH = """
import socket, ssl, sys
host, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = sys.argv[4] if len(sys.argv) > 4 else None
try:
    s = socket.create_connection((host, port), timeout=3,
                                 source_address=(src, 0) if src else None)
    if port == 443:
        ctx = ssl.create_default_context(); ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=sni)
    s.sendall(f"GET {sys.argv[5] if len(sys.argv) > 5 else '/'} HTTP/1.1\\r\\nHost: {sni}"
              "\\r\\nConnection: close\\r\\n\\r\\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode(errors="replace").strip())
except Exception as e:
    print("FAILED", type(e).__name__)
"""

RESOLVE = """
import socket, sys
try:
    print(socket.gethostbyname(sys.argv[1]))
except OSError as e:
    print("FAILED", type(e).__name__)
"""

# A raw DNS query to a chosen server (to try to bypass sys-sec's resolver).
DIG = """
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (server, 53))
try:
    r = s.recv(512)
    print(socket.inet_ntoa(r[-4:]) if struct.unpack("!H", r[6:8])[0] else "NOANSWER")
except OSError as e:
    print("FAILED", type(e).__name__)
"""

# Fetch http://HOST/ COUNT times, one after another; prints each body (or FAILED).
FETCH_LOOP = """
import socket, sys, time
for _ in range(int(sys.argv[2])):
    try:
        s = socket.create_connection((sys.argv[1], 80), timeout=5)
        s.sendall(f"GET / HTTP/1.1\\r\\nHost: {sys.argv[1]}\\r\\nConnection: close\\r\\n\\r\\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip(), flush=True)
    except OSError as e:
        print("FAILED", type(e).__name__, flush=True)
    time.sleep(0.1)
"""
