"""ssh ProxyCommand for the lab: relay to HOST PORT only if the route goes via the lab bridge.

Ansible and ssh reach lab nodes through this, so a missing lab network is an error here and
never a packet sent to 10.129.0.x by the default route.
"""
import os
import selectors
import socket
import subprocess
import sys

host, port = sys.argv[1], int(sys.argv[2])
lab = os.path.dirname(os.path.abspath(__file__))
if subprocess.run([os.path.join(lab, "lab.sh"), "check", host], check=False).returncode != 0:
    sys.exit(f"lab/connect: refusing to connect to {host}:{port}")
sock = socket.create_connection((host, port), timeout=10)
sock.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(sys.stdin.buffer, selectors.EVENT_READ, "in")
sel.register(sock, selectors.EVENT_READ, "sock")
while True:
    for key, _events in sel.select():
        if key.data == "in":
            data = os.read(sys.stdin.fileno(), 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                sel.unregister(sys.stdin.buffer)
                continue
            sock.sendall(data)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            os.write(sys.stdout.fileno(), data)
