#!/usr/bin/env python3
"""TCP forwarder from the host's loopback into the node's network namespace.

Usage: forward.py NETNS_PATH PORT

Listens on 127.0.0.1:PORT in the namespace it starts in (the host's), then
switches itself into the network namespace NETNS_PATH (e.g. /run/netns/NAME)
and forwards every connection to 127.0.0.1:PORT there. The node's
kube-apiserver listens on that port inside the namespace, so the same URL,
https://127.0.0.1:PORT, works on the host (through this process) and inside
the namespace (directly), and one kubeconfig serves both.

The listening socket keeps the namespace it was created in; sockets created
after setns() belong to the new one. setns() is called before any thread
starts, so every thread is in the node's namespace.
"""

import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close so the other direction can still drain.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, port):
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    t.start()
    pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def main():
    netns, port = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as e:
        print(f"forward.py: cannot listen on 127.0.0.1:{port}: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    listener.listen(128)

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        sys.exit(f"forward.py: setns({netns}): {os.strerror(err)}")
    os.close(fd)
    print(f"forward.py: 127.0.0.1:{port} -> {netns} 127.0.0.1:{port}", flush=True)

    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    main()
