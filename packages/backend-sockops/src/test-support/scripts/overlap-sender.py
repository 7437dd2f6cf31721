# Sender of splice-short-read.e2e.test.ts's overlap case: a TCP segment whose head repeats bytes the
# receiver already has (seq < rcv_nxt < end_seq), as a partial retransmission after a drop would be.
# argv: host port proxy_port. Connects (the redirect sends it to the sidecar on loopback), writes
# HEAD pattern bytes (byte i == i % 251) and waits until they are acknowledged; reads its send and
# receive sequence numbers with TCP_REPAIR; injects, through a raw socket, one segment carrying
# pattern bytes [HEAD - OVER, HEAD + NEW) to the sidecar's socket; then writes the rest from HEAD on
# as usual (so the kernel's next segment repeats the NEW bytes, a second overlap). The receiver must
# see every byte once, in order. Needs root (TCP_REPAIR, raw socket) and TCP timestamps off in the
# netns (the injected segment carries no options). Prints {sent, injected, error?}.
import json, socket, struct, sys, time

TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
HEAD, OVER, NEW, TAIL = 64 * 1024, 3000, 2000, 192 * 1024

def pattern(off, n):
    return bytes((off + i) % 251 for i in range(n))

def csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def segment(src, sport, dst, dport, seq, ack, payload):
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, 0x18, 4096, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp) + len(payload))
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack('!H', c) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, total, 0x1234, 0x4000, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    return ip + tcp + payload

host, port, proxy_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {'sent': 0, 'injected': False}
try:
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(pattern(0, HEAD))
    out['sent'] = HEAD
    # Bounded wait until every byte is acknowledged (TIOCOUTQ: bytes not yet acked).
    import fcntl, termios, array
    for _ in range(200):
        a = array.array('i', [0])
        fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, a, True)
        if a[0] == 0:
            break
        time.sleep(0.01)
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
    snd = struct.unpack('I', s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
    rcv = struct.unpack('I', s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    src, sport = s.getsockname()[:2]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    pkt = segment(src, sport, '127.0.0.1', proxy_port, (snd - OVER) & 0xffffffff, rcv, pattern(HEAD - OVER, OVER + NEW))
    raw.sendto(pkt, ('127.0.0.1', 0))
    raw.close()
    out['injected'] = True
    time.sleep(0.05)
    s.sendall(pattern(HEAD, TAIL))
    out['sent'] += TAIL
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
except Exception as e:  # reported, never retried
    out['error'] = repr(e)
print(json.dumps(out), flush=True)
