#!/usr/bin/env python3
"""What a process sees of its own TCP connection, for the node-wide check of test/chaos: run in a
cgroup and netns the test chose, it connects to HOST:PORT (a listener the test started, or, with
--listen, one it opens itself first), and prints one JSON object:

  connected      the peer address the kernel connected the socket to (getpeername)
  accepted       with --listen: the local address of the socket the listener accepted (the
                 listener really saw this connection, on its real port)
  origdst        getsockopt(SOL_IP, SO_ORIGINAL_DST) on the client socket: an address, or the errno
                 name (ENOENT on a socket without NAT, as the kernel answers without shunt)
  origdst6       the same with (SOL_IPV6, IP6T_SO_ORIGINAL_DST)
  origdst_server the same on the accepted socket (--listen)
  rcvbuf         getsockopt(SO_RCVBUF) after setsockopt(SO_RCVBUF, 65536): the kernel doubles it
  mss            getsockopt(TCP_MAXSEG)
  tcpi_state     TCP_INFO's state byte (1: ESTABLISHED) and the length the kernel returned
  reply          the bytes read back (with --listen the probe's own listener sends "pong")

Bounded: every socket has a 5 s timeout.

  python3 sockopt-probe.py HOST PORT [--listen]
"""
import errno
import json
import socket
import struct
import sys

SO_ORIGINAL_DST = 80
SOL_IPV6 = 41


def origdst(s, level):
    try:
        raw = s.getsockopt(level, SO_ORIGINAL_DST, 128)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    fam = struct.unpack_from("H", raw)[0]
    if fam == socket.AF_INET:
        port, = struct.unpack_from("!H", raw, 2)
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}"
    port, = struct.unpack_from("!H", raw, 2)
    return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{port}"


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    listen = "--listen" in sys.argv[3:]
    out = {}
    lst = None
    if listen:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(4)
        lst.settimeout(5)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.connect((host, port))
    out["connected"] = "%s:%d" % c.getpeername()
    srv = None
    if lst is not None:
        srv, _ = lst.accept()
        srv.settimeout(5)
        out["accepted"] = "%s:%d" % srv.getsockname()
        out["origdst_server"] = origdst(srv, socket.SOL_IP)
    out["origdst"] = origdst(c, socket.SOL_IP)
    out["origdst6"] = origdst(c, SOL_IPV6)
    out["rcvbuf"] = c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    out["mss"] = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    out["tcpi_state"] = info[0]
    out["tcpi_len"] = len(info)
    if srv is not None:
        c.sendall(b"ping")
        srv.recv(16)
        srv.sendall(b"pong")
    else:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = c.recv(64)
    out["reply"] = data.decode("latin-1")[:16]
    print(json.dumps(out))


main()
