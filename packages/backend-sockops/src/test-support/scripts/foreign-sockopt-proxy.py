# Stand-in proxy (run as the proxy uid, in the pod's netns and cgroup) that accepts one redirected
# connection and asks getsockopt() things other than SO_ORIGINAL_DST on it — a socket that DOES
# have an original-destination record — and the same things on its listening socket (no record),
# through libc so buffer sizes are ours. Prints one JSON line; the test compares the two answers.
# argv: outPort inPort
import ctypes, ctypes.util, socket, sys, json, struct
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
out_port, in_port = int(sys.argv[1]), int(sys.argv[2])

def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    return s

lo, li = listener(out_port), listener(in_port)
print(json.dumps({"event": "ready"}), flush=True)

def get(sock, level, name, size):
    buf = ctypes.create_string_buffer(size)
    n = ctypes.c_uint32(size)
    rc = libc.getsockopt(sock.fileno(), level, name, buf, ctypes.byref(n))
    return {"rc": rc, "errno": ctypes.get_errno() if rc else 0, "len": n.value, "head": buf.raw[:4].hex() if rc == 0 else ""}

# Calls the getsockopt program must leave exactly as the kernel answered them. With its
# optname/level filter gone it would write a sockaddr into each of them.
CALLS = {
    "ip_tos": (socket.SOL_IP, socket.IP_TOS, 16),             # right level, wrong optname
    "tcp_80": (socket.IPPROTO_TCP, 80, 32),                   # right optname, wrong level
    "tcp_info": (socket.IPPROTO_TCP, socket.TCP_INFO, 256),    # neither
    "so_type": (socket.SOL_SOCKET, socket.SO_TYPE, 16),
    "so_80": (socket.SOL_SOCKET, 80, 32),
}
lo.settimeout(20)
c, peer = lo.accept()
orig = get(c, socket.SOL_IP, 80, 16)
buf = ctypes.create_string_buffer(16)
n = ctypes.c_uint32(16)
libc.getsockopt(c.fileno(), socket.SOL_IP, 80, buf, ctypes.byref(n))
port = struct.unpack("!H", buf.raw[2:4])[0]
addr = socket.inet_ntoa(buf.raw[4:8])
# tcp_info contents differ between sockets (state, counters); the head is compared only where stable.
calls = {k: {"recorded": get(c, *v), "unrecorded": get(lo, *v)} for k, v in CALLS.items()}
print(json.dumps({"event": "result", "orig": {**orig, "address": addr, "port": port}, "calls": calls}), flush=True)
c.close()
