# Sender of splice-short-read.e2e.test.ts: connects to host:port, writes `count` messages of `size`
# pattern bytes (byte i == i % 251), `gap_ms` apart, then shuts its side and waits (bounded) for the
# receiver to close. Prints {sent, error?}. argv: host port count size gap_ms [sizes]; sizes, a
# comma-separated list of message sizes, replaces count x size.
import json, socket, sys, time

host, port, count, size, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sizes = [int(x) for x in sys.argv[6].split(',')] if len(sys.argv) > 6 else [size] * count
out = {'sent': 0}
try:
    s = socket.create_connection((host, port), timeout=20)
    for n in sizes:
        off = out['sent']
        s.sendall(bytes((off + i) % 251 for i in range(n)))
        out['sent'] += n
        time.sleep(gap / 1000)
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass  # the 'rdhup' reader closes with bytes unread: RST
    s.close()
except Exception as e:  # reported, never retried
    out['error'] = repr(e)
print(json.dumps(out), flush=True)
