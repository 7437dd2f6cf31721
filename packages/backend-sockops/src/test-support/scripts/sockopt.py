# getsockopt(TCP_INFO) with a buffer larger than a page on a connected socket, through libc
# (Python's own getsockopt caps buflen at 1024); prints the returned lengths so a test can
# compare them with and without the getsockopt program, plus SO_ORIGINAL_DST's errno.
import ctypes, ctypes.util, socket, sys, json
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=5)

def get(level, name, size):
    buf = ctypes.create_string_buffer(size)
    n = ctypes.c_uint32(size)
    rc = libc.getsockopt(s.fileno(), level, name, buf, ctypes.byref(n))
    return {"rc": rc, "errno": ctypes.get_errno() if rc else 0, "len": n.value}

print(json.dumps({
    "small": get(socket.IPPROTO_TCP, socket.TCP_INFO, 256),
    "large": get(socket.IPPROTO_TCP, socket.TCP_INFO, 8192),
    "orig": get(socket.SOL_IP, 80, 16),
    # fails in the kernel with optlen > PAGE_SIZE: the program must not turn it into EFAULT
    "origLarge": get(socket.SOL_IP, 80, 8192),
    "ipv6Large": get(socket.IPPROTO_IPV6, 80, 8192),
}))
