"""Enroll-latency prober, run inside a pod netns + cgroup as the app uid.

For every "probe <host> <port>" line on stdin: connect once (must not be redirected yet), print
{"event":"spinning"}, then keep connecting until a connect lands on the proxy's outbound port on
loopback (redirected) and print the CLOCK_MONOTONIC time right after that connect returned.
Bounded: gives up after 2 s. CLOCK_MONOTONIC is the clock Node's process.hrtime uses, so the
caller can subtract its own timestamps.
"""
import json
import socket
import sys
import time


def redirected(host, port, out_port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        if s.connect_ex((host, port)) != 0:
            return False
        return s.getpeername() == ("127.0.0.1", out_port)
    finally:
        s.close()


def main():
    out_port = int(sys.argv[1])
    print(json.dumps({"event": "ready"}), flush=True)
    for line in sys.stdin:
        _, host, port = line.split()
        port = int(port)
        first = redirected(host, port, out_port)
        print(json.dumps({"event": "spinning", "already": first}), flush=True)
        deadline = time.monotonic_ns() + 2_000_000_000
        attempts = 0
        hit = None
        while time.monotonic_ns() < deadline:
            attempts += 1
            if redirected(host, port, out_port):
                hit = time.monotonic_ns()
                break
        print(json.dumps({"event": "redirected", "tNs": hit, "attempts": attempts}), flush=True)


main()
