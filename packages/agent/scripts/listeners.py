#!/usr/bin/env python3
"""Listener stand-ins for the scale benchmark: for each netns path read from stdin (one per
line), a process inside that netns holding a TCP listener on PORT (the sidecar's inbound
port), as a proxy would. Each is a `sleep` that inherited the socket: about 1 MiB of memory,
no CPU. Prints "ready <n>" once all listen; on stdin EOF, SIGTERM or SIGINT it kills them and
exits. Children die with it (PR_SET_PDEATHSIG), so nothing outlives the benchmark.

  python3 listeners.py PORT < netns-paths
"""
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def main():
    port = int(sys.argv[1])
    paths = []
    for line in sys.stdin:
        line = line.strip()
        if line == "":
            break  # an empty line ends the list; stdin stays open as the lifeline
        paths.append(line)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    children = []

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            setns(fd)
            os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(64)
            pid = os.fork()
            if pid == 0:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                os.dup2(s.fileno(), 3)
                os.execv("/bin/sleep", ["sleep", "infinity"])
            s.close()
            children.append(pid)
            setns(own)
    except BaseException as e:
        sys.stderr.write(f"listeners: {e}\n")
        stop()
    sys.stdout.write(f"ready {len(children)}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until EOF: the benchmark closed us
    stop()


main()
