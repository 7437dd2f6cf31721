// An in-netns L4 relay engine: the data path of the testbed's ztunnel stand-in, in native code
// so that the stand-in is not what bounds a benchmark (a Node.js proxy costs ~1 ms of CPU per
// connection, the redirect being measured a few tens of µs). One engine = one thread that
// setns()es into a pod netns once (every socket it creates is in that netns) and serves the
// listeners it is handed (15001 outbound, 15006 inbound, 15008 tunnel) with epoll:
//  - 15001: original destination from SO_ORIGINAL_DST when the accepted socket's local port is
//    the listener's (REDIRECT), else its local address (sk_assign / TPROXY keep the address);
//    then a tunnel to <dst>:15008 (pooled per destination address: an idle tunnel is reused by
//    the next connection, as ztunnel pools its HBONE connections), or, when nothing listens on
//    15008 there, a plain connection to the destination (passthrough);
//  - 15008: one stream at a time per tunnel connection; the app is reached at the stream's
//    authority from the client's address (IP(V6)_TRANSPARENT bind), as ztunnel does;
//  - 15006: the app at the original destination from the client's address.
// Every socket carries SO_MARK `mark` and TCP_NODELAY. Per connection one JSON line is appended
// to the log fd (one write(), O_APPEND): client, local address, original destination and how it
// was learnt, where it went, the upstream socket's source, or the error.
//
// Tunnel framing ("HBONE-lite", both directions): 1 byte type + 4 bytes big-endian length +
// payload. OPEN(authority) -> OK | FAIL(text); then DATA* and one FIN per direction; when both
// FINs are through, the tunnel carries the next OPEN. A tunnel closed mid-stream aborts it.
#include <napi.h>

#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

namespace shunt {
namespace {

// Errors into JS: plain Errors named by errno (this addon is test-only, without @shunt/libbpf's
// BpfError factory).
std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : ("errno " + std::to_string(err));
}
[[noreturn]] void ThrowArg(Napi::Env env, const std::string& op, const std::string& target, const std::string& detail) {
  throw Napi::TypeError::New(env, op + " " + target + ": " + detail);
}
[[noreturn]] void ThrowBpf(Napi::Env env, int err, const std::string& op, const std::string& target) {
  Napi::Error e = Napi::Error::New(env, op + " " + target + ": " + ErrnoName(err) + " " + strerror(err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  throw e;
}

constexpr uint8_t FR_OPEN = 1, FR_DATA = 2, FR_FIN = 3, FR_OK = 4, FR_FAIL = 5;
constexpr size_t HDR = 5;
constexpr size_t CHUNK = 65536;
constexpr size_t HIGH = 256 * 1024;  // stop reading a side while the other has this much unsent
constexpr size_t MAX_FRAME = 1 << 20;
constexpr size_t LOG_FLUSH_BYTES = 64 * 1024;
constexpr size_t MAX_IDLE_PER_DST = 64;  // idle tunnels kept per destination; more are closed
constexpr int LOG_FLUSH_MS = 20;  // a line is in the file at most this long after its connection

struct Ep {
  int fam = 0;  // 4 or 6
  uint8_t a[16] = {0};
  uint16_t port = 0;
};

Ep FromSockaddr(const sockaddr_storage& ss) {
  Ep e;
  if (ss.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    e.fam = 4;
    memcpy(e.a, &s->sin_addr, 4);
    e.port = ntohs(s->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.port = ntohs(s->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      e.fam = 4;
      memcpy(e.a, reinterpret_cast<const uint8_t*>(&s->sin6_addr) + 12, 4);
    } else {
      e.fam = 6;
      memcpy(e.a, &s->sin6_addr, 16);
    }
  }
  return e;
}

socklen_t ToSockaddr(const Ep& e, sockaddr_storage* ss) {
  memset(ss, 0, sizeof(*ss));
  if (e.fam == 4) {
    auto* s = reinterpret_cast<sockaddr_in*>(ss);
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, e.a, 4);
    s->sin_port = htons(e.port);
    return sizeof(sockaddr_in);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(ss);
  s->sin6_family = AF_INET6;
  memcpy(&s->sin6_addr, e.a, 16);
  s->sin6_port = htons(e.port);
  return sizeof(sockaddr_in6);
}

std::string AddrStr(const Ep& e) {
  char b[INET6_ADDRSTRLEN] = {0};
  inet_ntop(e.fam == 4 ? AF_INET : AF_INET6, e.a, b, sizeof(b));
  return b;
}

std::string Authority(const Ep& e) {
  return e.fam == 6 ? "[" + AddrStr(e) + "]:" + std::to_string(e.port) : AddrStr(e) + ":" + std::to_string(e.port);
}

bool ParseAuthority(const std::string& s, Ep* out) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find("]:");
    if (close == std::string::npos) return false;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    out->fam = 6;
    if (inet_pton(AF_INET6, host.c_str(), out->a) != 1) return false;
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    out->fam = 4;
    if (inet_pton(AF_INET, host.c_str(), out->a) != 1) return false;
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  int p = std::stoi(port);
  if (p <= 0 || p > 65535) return false;
  out->port = static_cast<uint16_t>(p);
  return true;
}

std::string JsonStr(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", c);
      o += b;
    } else {
      o += ch;
    }
  }
  return o + "\"";
}

std::string JsonEp(const Ep& e) { return "{\"address\":" + JsonStr(AddrStr(e)) + ",\"port\":" + std::to_string(e.port) + "}"; }

Ep SockName(int fd, bool peer) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if ((peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)) != 0) return Ep{};
  return FromSockaddr(ss);
}

std::string ErrText(int err) { return ErrnoName(err) + " " + strerror(err); }

enum class Leg { Outbound, Inbound, Hbone };
enum class St { TunnelConnecting, WaitOk, PassConnecting, WaitOpen, AppConnecting, Forward };

struct Relay;
struct Conn;

struct Handler {
  virtual ~Handler() = default;
  virtual void OnEvent(uint32_t ev) = 0;
};

struct Side : Handler {
  Conn* c = nullptr;
  int which = 0;  // 0: down (accepted), 1: up (connected)
  int fd = -1;
  bool framed = false;
  std::string in;  // framed: bytes received, not yet parsed
  std::string out;  // bytes to write to fd
  size_t outOff = 0;
  bool rdEof = false;   // no more data will come from this side (EOF or FIN frame)
  bool finQueued = false;  // the end of the other direction was queued towards this side
  bool wrShut = false;  // raw: shutdown(SHUT_WR) done
  uint32_t mask = 0;
  bool registered = false;
  void OnEvent(uint32_t ev) override;
  size_t pending() const { return out.size() - outOff; }
};

struct Conn {
  Relay* r;
  Leg leg;
  St st;
  Side down, up;
  Ep client, local, orig, upSrc;
  std::string how;
  std::string via;
  bool pooledTunnel = false;  // up is a reused tunnel (an EOF before OK: retry on a new one)
  int64_t deadline = 0;
  bool dead = false;
};

// An idle tunnel (client side) waiting in the pool; readable = closed by the peer: dropped.
struct Idle : Handler {
  Relay* r;
  int fd;
  std::string key;
  Ep src;
  void OnEvent(uint32_t) override;
};

struct Listener : Handler {
  Relay* r;
  int fd;
  Leg leg;
  uint16_t port;
  void OnEvent(uint32_t) override;
};

struct StopFd : Handler {
  bool* stop;
  void OnEvent(uint32_t) override { *stop = true; }
};

int64_t NowMs(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct Relay {
  int netnsFd = -1;
  int logFd = -1;
  int ep = -1;
  int evfd = -1;
  uint32_t mark = 0;
  uint16_t tunnelPort = 15008;
  int connectTimeoutMs = 3000;
  std::string zt, pod, uid;
  std::vector<Listener*> listeners;
  std::unordered_set<Conn*> conns;
  std::multimap<std::string, Idle*> idle;
  std::thread th;
  bool stopFlag = false;
  StopFd stopH;
  std::string startError;
  std::string logBuf;
  int64_t logSince = 0;

  void Ctl(int op, int fd, uint32_t events, Handler* h) {
    epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = events;
    e.data.ptr = h;
    epoll_ctl(ep, op, fd, &e);
  }

  void Log(Conn* c, const std::string& error) {
    const char* legName = c->leg == Leg::Outbound ? "outbound" : c->leg == Leg::Inbound ? "inbound" : "hbone";
    std::string s = "{\"event\":\"conn\",\"pod\":" + JsonStr(pod) + ",\"uid\":" + JsonStr(uid) + ",\"leg\":\"" + legName +
                    "\",\"client\":" + JsonEp(c->client) + ",\"local\":" + JsonEp(c->local) + ",\"origDst\":" + JsonEp(c->orig) +
                    ",\"how\":" + JsonStr(c->how);
    if (!c->via.empty()) s += ",\"via\":" + JsonStr(c->via);
    if (c->upSrc.fam != 0) s += ",\"upstreamSource\":" + JsonEp(c->upSrc);
    if (!error.empty()) s += ",\"error\":" + JsonStr(error);
    s += ",\"at\":" + std::to_string(NowMs(CLOCK_REALTIME)) + ",\"zt\":" + JsonStr(zt) + "}\n";
    if (logFd < 0) return;
    if (logBuf.empty()) logSince = NowMs(CLOCK_MONOTONIC);
    logBuf += s;
    if (logBuf.size() >= LOG_FLUSH_BYTES) FlushLog();
  }

  // Lines are appended in batches (whole lines, one write): a write per connection cost ~6 % of
  // the engine and woke every inotify watcher of the log's directory once per connection.
  void FlushLog() {
    if (logBuf.empty() || logFd < 0) return;
    ssize_t w = write(logFd, logBuf.data(), logBuf.size());
    (void)w;
    logBuf.clear();
  }

  // A non-blocking TCP socket in this thread's netns, connecting to `to` (from `from` when set).
  int Connect(const Ep& to, const Ep* from, int* err) {
    int fd = socket(to.fam == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *err = errno;
      return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
      *err = errno;
      close(fd);
      return -1;
    }
    sockaddr_storage ss;
    if (from) {
      int ok = to.fam == 4 ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
      Ep b = *from;
      b.port = 0;
      socklen_t bl = ToSockaddr(b, &ss);
      if (ok != 0 || bind(fd, reinterpret_cast<sockaddr*>(&ss), bl) != 0) {
        *err = errno;
        close(fd);
        return -1;
      }
    }
    socklen_t l = ToSockaddr(to, &ss);
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), l) != 0 && errno != EINPROGRESS) {
      *err = errno;
      close(fd);
      return -1;
    }
    return fd;
  }

  void Attach(Side& s, int fd, bool framed) {
    s.fd = fd;
    s.framed = framed;
    s.in.clear();
    s.out.clear();
    s.outOff = 0;
    s.rdEof = s.finQueued = s.wrShut = false;
    s.mask = 0;
    s.registered = false;
  }

  void Watch(Side& s, uint32_t mask) {
    if (s.fd < 0) return;
    if (mask == 0 && s.rdEof) {
      // Nothing more to read or write here for now: out of epoll, else a hung-up socket (EPOLLHUP
      // is always reported) would wake the loop until the other side drains.
      if (s.registered) Ctl(EPOLL_CTL_DEL, s.fd, 0, nullptr);
      s.registered = false;
      s.mask = 0;
      return;
    }
    if (!s.registered) {
      Ctl(EPOLL_CTL_ADD, s.fd, mask, &s);
      s.registered = true;
      s.mask = mask;
    } else if (s.mask != mask) {
      Ctl(EPOLL_CTL_MOD, s.fd, mask, &s);
      s.mask = mask;
    }
  }

  void CloseSide(Side& s, bool reset) {
    if (s.fd < 0) return;
    if (s.registered) Ctl(EPOLL_CTL_DEL, s.fd, 0, nullptr);
    if (reset) {
      linger lg = {1, 0};
      setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(s.fd);
    s.fd = -1;
    s.registered = false;
  }

  void Abort(Conn* c, const std::string& error, bool log) {
    if (c->dead) return;
    if (log) Log(c, error);
    CloseSide(c->down, true);
    CloseSide(c->up, true);
    c->dead = true;
  }

  static void Frame(std::string& out, uint8_t type, const char* p, size_t n) {
    char h[HDR];
    h[0] = static_cast<char>(type);
    uint32_t be = htonl(static_cast<uint32_t>(n));
    memcpy(h + 1, &be, 4);
    out.append(h, HDR);
    if (n) out.append(p, n);
  }

  // One complete frame at the front of s.in, or false.
  static bool NextFrame(Side& s, uint8_t* type, std::string* payload, bool* bad) {
    *bad = false;
    if (s.in.size() < HDR) return false;
    uint32_t be;
    memcpy(&be, s.in.data() + 1, 4);
    size_t n = ntohl(be);
    if (n > MAX_FRAME) {
      *bad = true;
      return false;
    }
    if (s.in.size() < HDR + n) return false;
    *type = static_cast<uint8_t>(s.in[0]);
    payload->assign(s.in, HDR, n);
    s.in.erase(0, HDR + n);
    return true;
  }

  // Reads what is there into s.in (framed sides); returns false on EOF/error (errno in *err, 0 = EOF).
  static bool ReadIn(Side& s, int* err) {
    char buf[CHUNK];
    for (int i = 0; i < 16; i++) {
      ssize_t n = read(s.fd, buf, sizeof(buf));
      if (n > 0) {
        s.in.append(buf, static_cast<size_t>(n));
        if (s.in.size() > HIGH) return true;
        continue;
      }
      if (n == 0) {
        *err = 0;
        return false;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    return true;
  }

  // Writes s.out; false on error.
  static bool Flush(Side& s) {
    while (s.pending() > 0) {
      ssize_t n = send(s.fd, s.out.data() + s.outOff, s.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        s.outOff += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    if (s.pending() == 0) {
      s.out.clear();
      s.outOff = 0;
    }
    return true;
  }

  // Moves data src -> dst while it can. false: the stream is broken (abort).
  bool Move(Conn* c, Side& src, Side& dst) {
    if (!src.rdEof && dst.pending() < HIGH) {
      if (src.framed) {
        int err = 0;
        bool open = ReadIn(src, &err);
        uint8_t type;
        std::string payload;
        bool bad;
        while (!src.rdEof && NextFrame(src, &type, &payload, &bad)) {
          if (type == FR_DATA) dst.out += payload;
          else if (type == FR_FIN) src.rdEof = true;
          else return false;
        }
        if (bad) return false;
        if (!open && !src.rdEof) return false;  // tunnel gone mid-stream
      } else {
        char buf[CHUNK];
        for (int i = 0; i < 16 && dst.pending() < HIGH; i++) {
          ssize_t n = read(src.fd, buf, sizeof(buf));
          if (n > 0) {
            if (dst.framed) Frame(dst.out, FR_DATA, buf, static_cast<size_t>(n));
            else dst.out.append(buf, static_cast<size_t>(n));
            continue;
          }
          if (n == 0) {
            src.rdEof = true;
            break;
          }
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          return false;
        }
      }
    }
    if (src.rdEof && !dst.finQueued) {
      dst.finQueued = true;
      if (dst.framed) Frame(dst.out, FR_FIN, nullptr, 0);
    }
    if (!Flush(dst)) return false;
    if (dst.finQueued && !dst.framed && !dst.wrShut && dst.pending() == 0) {
      shutdown(dst.fd, SHUT_WR);
      dst.wrShut = true;
    }
    (void)c;
    return true;
  }

  void Pump(Conn* c) {
    if (!Move(c, c->down, c->up) || !Move(c, c->up, c->down)) return Abort(c, "", false);
    bool doneDown = c->down.rdEof && c->up.finQueued && c->up.pending() == 0;
    bool doneUp = c->up.rdEof && c->down.finQueued && c->down.pending() == 0;
    if (doneDown && doneUp) return Finish(c);
    Watch(c->down, (!c->down.rdEof && c->up.pending() < HIGH ? (uint32_t)EPOLLIN : 0u) | (c->down.pending() ? (uint32_t)EPOLLOUT : 0u));
    Watch(c->up, (!c->up.rdEof && c->down.pending() < HIGH ? (uint32_t)EPOLLIN : 0u) | (c->up.pending() ? (uint32_t)EPOLLOUT : 0u));
  }

  // Both directions are through: raw sides are closed; a tunnel is kept for the next stream.
  void Finish(Conn* c) {
    if (c->leg == Leg::Outbound && c->up.framed) {
      Side& t = c->up;
      if (t.registered) Ctl(EPOLL_CTL_DEL, t.fd, 0, nullptr);
      t.registered = false;
      if (t.in.empty() && idle.count(AddrStr(c->orig) + (c->orig.fam == 6 ? "/6" : "/4")) < MAX_IDLE_PER_DST) {
        auto* i = new Idle();
        i->r = this;
        i->fd = t.fd;
        i->key = AddrStr(c->orig) + (c->orig.fam == 6 ? "/6" : "/4");
        i->src = c->upSrc;
        idle.emplace(i->key, i);
        Ctl(EPOLL_CTL_ADD, i->fd, EPOLLIN | EPOLLRDHUP, i);
      } else {
        close(t.fd);
      }
      t.fd = -1;
      CloseSide(c->down, false);
      c->dead = true;
      return;
    }
    if (c->leg == Leg::Hbone) {
      // The tunnel waits for its next OPEN in a new Conn (this one is done).
      Side& t = c->down;
      if (t.registered) Ctl(EPOLL_CTL_DEL, t.fd, 0, nullptr);
      t.registered = false;
      int fd = t.fd;
      std::string rest = t.in;
      t.fd = -1;
      CloseSide(c->up, false);
      c->dead = true;
      Conn* n = NewHboneConn(fd);
      n->down.in = rest;
      HboneOpen(n);
      return;
    }
    CloseSide(c->down, false);
    CloseSide(c->up, false);
    c->dead = true;
  }

  Conn* NewConn(Leg leg) {
    Conn* c = new Conn();
    c->r = this;
    c->leg = leg;
    c->down.c = c;
    c->down.which = 0;
    c->up.c = c;
    c->up.which = 1;
    conns.insert(c);
    return c;
  }

  Conn* NewHboneConn(int fd) {
    Conn* c = NewConn(Leg::Hbone);
    Attach(c->down, fd, true);
    c->client = SockName(fd, true);
    c->local = SockName(fd, false);
    c->how = "hbone-authority";
    c->st = St::WaitOpen;
    return c;
  }

  void StartOutbound(Conn* c) {
    std::string key = AddrStr(c->orig) + (c->orig.fam == 6 ? "/6" : "/4");
    auto it = idle.find(key);
    if (it != idle.end()) {
      Idle* i = it->second;
      idle.erase(it);
      Ctl(EPOLL_CTL_DEL, i->fd, 0, nullptr);
      Attach(c->up, i->fd, true);
      c->upSrc = i->src;
      delete i;
      c->pooledTunnel = true;
      SendOpen(c);
      return;
    }
    c->pooledTunnel = false;
    Ep t = c->orig;
    t.port = tunnelPort;
    int err = 0;
    int fd = Connect(t, nullptr, &err);
    if (fd < 0) return Abort(c, "tunnel socket: " + ErrText(err), true);
    Attach(c->up, fd, true);
    c->st = St::TunnelConnecting;
    c->deadline = NowMs(CLOCK_MONOTONIC) + connectTimeoutMs;
    Watch(c->up, EPOLLOUT);
  }

  void SendOpen(Conn* c) {
    std::string a = Authority(c->orig);
    Frame(c->up.out, FR_OPEN, a.data(), a.size());
    if (!Flush(c->up)) return RetryOrFail(c, "tunnel write failed");
    c->st = St::WaitOk;
    c->deadline = NowMs(CLOCK_MONOTONIC) + connectTimeoutMs;
    Watch(c->up, EPOLLIN | EPOLLRDHUP | (c->up.pending() ? (uint32_t)EPOLLOUT : 0u));
  }

  void RetryOrFail(Conn* c, const std::string& why) {
    if (c->pooledTunnel) {
      CloseSide(c->up, false);
      c->upSrc = Ep{};
      return StartOutbound(c);  // a pooled tunnel the peer closed meanwhile: once more on a new one
    }
    c->via = "hbone";
    Abort(c, why, true);
  }

  void Accept(Listener* l) {
    for (int i = 0; i < 64; i++) {
      int fd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or an error the next readiness retries
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (l->leg == Leg::Hbone) {
        HboneOpen(NewHboneConn(fd));
        continue;
      }
      Conn* c = NewConn(l->leg);
      Attach(c->down, fd, false);
      c->client = SockName(fd, true);
      c->local = SockName(fd, false);
      c->orig = c->local;
      c->how = "local-address";
      if (c->local.port == l->port) {
        // Redirected by NAT (the local port is the listener's): the conntrack entry has it.
        sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int r = c->local.fam == 4 ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len);
        if (r == 0) {
          c->orig = FromSockaddr(ss);
          c->how = "SO_ORIGINAL_DST";
        }
      }
      if (l->leg == Leg::Outbound) {
        StartOutbound(c);
      } else {
        c->via = "app";
        ConnectApp(c);
      }
    }
  }

  // Inbound (15006) and tunnel streams: the app at the original destination, from the client's address.
  void ConnectApp(Conn* c) {
    int err = 0;
    const Ep* from = c->client.fam == c->orig.fam ? &c->client : nullptr;
    int fd = Connect(c->orig, from, &err);
    if (fd < 0) return AppFailed(c, err);
    Attach(c->up, fd, false);
    c->st = St::AppConnecting;
    c->deadline = NowMs(CLOCK_MONOTONIC) + connectTimeoutMs;
    Watch(c->up, EPOLLOUT);
  }

  void AppFailed(Conn* c, int err) {
    std::string e = "connect " + ErrText(err);
    if (c->leg == Leg::Hbone) {
      std::string t = "503 " + e;
      Frame(c->down.out, FR_FAIL, t.data(), t.size());
      Flush(c->down);
    }
    Abort(c, e, true);
  }

  // A tunnel stream: waits for OPEN(authority).
  void HboneOpen(Conn* c) {
    uint8_t type;
    std::string payload;
    bool bad;
    if (!NextFrame(c->down, &type, &payload, &bad)) {
      if (bad) return Abort(c, "", false);
      Watch(c->down, EPOLLIN | EPOLLRDHUP);
      return;
    }
    Ep target;
    if (type != FR_OPEN || !ParseAuthority(payload, &target)) {
      c->orig = c->local;
      std::string t = "400 bad HBONE request";
      Frame(c->down.out, FR_FAIL, t.data(), t.size());
      Flush(c->down);
      return Abort(c, "bad HBONE request " + std::to_string(type) + " " + payload, true);
    }
    c->orig = target;
    c->via = "app";
    Watch(c->down, 0);
    ConnectApp(c);
  }

  void OnSide(Side& s, uint32_t ev) {
    Conn* c = s.c;
    if (c->dead) return;
    switch (c->st) {
      case St::TunnelConnecting:
      case St::PassConnecting:
      case St::AppConnecting: {
        if (s.which != 1) {
          // Early data or a close from the accepted side while connecting: read later (or abort on HUP).
          if (ev & (EPOLLHUP | EPOLLERR)) Abort(c, "", false);
          return;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0 && !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (err != 0) {
          if (c->st == St::TunnelConnecting && err == ECONNREFUSED) {
            // Nothing on 15008 there: not a mesh workload, passed through as ztunnel does.
            CloseSide(c->up, false);
            int e2 = 0;
            int fd = Connect(c->orig, nullptr, &e2);
            c->via = "passthrough";
            if (fd < 0) return Abort(c, "connect " + ErrText(e2), true);
            Attach(c->up, fd, false);
            c->st = St::PassConnecting;
            c->deadline = NowMs(CLOCK_MONOTONIC) + connectTimeoutMs;
            Watch(c->up, EPOLLOUT);
            return;
          }
          if (c->st == St::AppConnecting) return AppFailed(c, err);
          if (c->st == St::TunnelConnecting) c->via = "hbone";
          return Abort(c, "connect " + ErrText(err), true);
        }
        c->upSrc = SockName(s.fd, false);
        if (c->st == St::TunnelConnecting) return SendOpen(c);
        if (c->st == St::AppConnecting && c->leg == Leg::Hbone) Frame(c->down.out, FR_OK, nullptr, 0);
        Log(c, "");
        c->st = St::Forward;
        return Pump(c);
      }
      case St::WaitOk: {
        if (s.which != 1) {
          if (ev & (EPOLLHUP | EPOLLERR)) Abort(c, "", false);
          return;
        }
        if (!Flush(c->up)) return RetryOrFail(c, "tunnel write failed");
        int err = 0;
        bool open = ReadIn(c->up, &err);
        uint8_t type;
        std::string payload;
        bool bad;
        if (NextFrame(c->up, &type, &payload, &bad)) {
          c->via = "hbone";
          if (type != FR_OK) {
            Abort(c, "HBONE CONNECT answered " + (type == FR_FAIL ? payload : std::to_string(type)), true);
            return;
          }
          Log(c, "");
          c->st = St::Forward;
          return Pump(c);
        }
        if (bad) return Abort(c, "bad tunnel frame", true);
        if (!open) return RetryOrFail(c, err ? "tunnel: " + ErrText(err) : "tunnel closed before an answer");
        Watch(c->up, EPOLLIN | EPOLLRDHUP | (c->up.pending() ? (uint32_t)EPOLLOUT : 0u));
        return;
      }
      case St::WaitOpen: {
        int err = 0;
        bool open = ReadIn(c->down, &err);
        if (!open && c->down.in.size() < HDR) return Abort(c, "", false);  // an idle tunnel closed
        return HboneOpen(c);
      }
      case St::Forward:
        return Pump(c);
    }
  }

  void Reap() {
    int64_t now = NowMs(CLOCK_MONOTONIC);
    for (auto it = conns.begin(); it != conns.end();) {
      Conn* c = *it;
      if (!c->dead && c->st != St::Forward && c->st != St::WaitOpen && c->deadline && now > c->deadline) {
        if (c->st == St::TunnelConnecting || c->st == St::WaitOk) c->via = "hbone";
        if (c->st == St::PassConnecting) c->via = "passthrough";
        if (c->st == St::AppConnecting && c->leg == Leg::Hbone) {
          std::string t = "503 connect timeout";
          Frame(c->down.out, FR_FAIL, t.data(), t.size());
          Flush(c->down);
        }
        Abort(c, "connect ETIMEDOUT timed out", true);
      }
      if (c->dead) {
        it = conns.erase(it);
        delete c;
      } else {
        ++it;
      }
    }
  }

  void Run() {
    if (setns(netnsFd, CLONE_NEWNET) != 0) return;  // checked in Start() before the thread runs
    epoll_event evs[128];
    int64_t lastReap = NowMs(CLOCK_MONOTONIC);
    while (!stopFlag) {
      int n = epoll_wait(ep, evs, 128, logBuf.empty() ? 100 : LOG_FLUSH_MS);
      for (int i = 0; i < n; i++) static_cast<Handler*>(evs[i].data.ptr)->OnEvent(evs[i].events);
      int64_t now = NowMs(CLOCK_MONOTONIC);
      if (!logBuf.empty() && now - logSince >= LOG_FLUSH_MS) FlushLog();
      // Dead connections are freed here, never inside a handler that may still use them.
      bool anyDead = false;
      for (Conn* c : conns)
        if (c->dead) {
          anyDead = true;
          break;
        }
      if (anyDead || now - lastReap > 100) {
        Reap();
        lastReap = now;
      }
    }
    FlushLog();
    for (Conn* c : conns) {
      CloseSide(c->down, false);
      CloseSide(c->up, false);
      delete c;
    }
    conns.clear();
    for (auto& kv : idle) {
      close(kv.second->fd);
      delete kv.second;
    }
    idle.clear();
    for (Listener* l : listeners) {
      close(l->fd);
      delete l;
    }
    listeners.clear();
  }
};

void Side::OnEvent(uint32_t ev) { c->r->OnSide(*this, ev); }
void Listener::OnEvent(uint32_t) { r->Accept(this); }
void Idle::OnEvent(uint32_t) {
  // An idle tunnel has nothing to say: readable means the peer closed it (or broke the protocol).
  Relay* rr = r;
  for (auto it = rr->idle.lower_bound(key); it != rr->idle.end() && it->first == key; ++it)
    if (it->second == this) {
      rr->idle.erase(it);
      break;
    }
  epoll_ctl(rr->ep, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  delete this;
}

struct RelayHandle {
  Relay* relay = nullptr;
};

void StopRelay(Relay* r) {
  if (!r) return;
  uint64_t one = 1;
  ssize_t w = write(r->evfd, &one, sizeof(one));
  (void)w;
  if (r->th.joinable()) r->th.join();
  close(r->ep);
  close(r->evfd);
  if (r->logFd >= 0) close(r->logFd);
  delete r;
}

// relayStart({netns: fd, logPath, zt, pod, uid, mark, tunnelPort, connectTimeoutMs,
//             listeners: [{fd, leg: 'outbound'|'inbound'|'hbone', port}]}) -> External.
// The listener fds are owned by the engine from here on (closed by relayStop).
Napi::Value RelayStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowArg(env, "relayStart", "relay", "options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  auto str = [&](const char* k) { return o.Get(k).IsString() ? o.Get(k).As<Napi::String>().Utf8Value() : std::string(); };
  auto num = [&](const char* k, int d) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Int32Value() : d; };
  std::string target = "relay for " + str("pod");
  int netnsFd = num("netns", -1);
  if (netnsFd < 0) ThrowArg(env, "relayStart", target, "netns fd expected");
  if (!o.Get("listeners").IsArray()) ThrowArg(env, "relayStart", target, "listeners array expected");
  auto* r = new Relay();
  r->netnsFd = netnsFd;
  r->zt = str("zt");
  r->pod = str("pod");
  r->uid = str("uid");
  r->mark = static_cast<uint32_t>(num("mark", 0));
  r->tunnelPort = static_cast<uint16_t>(num("tunnelPort", 15008));
  r->connectTimeoutMs = num("connectTimeoutMs", 3000);
  std::string logPath = str("logPath");
  if (!logPath.empty()) {
    r->logFd = open(logPath.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (r->logFd < 0) {
      int e = errno;
      delete r;
      ThrowBpf(env, e, "open", logPath);
    }
  }
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  r->stopH.stop = &r->stopFlag;
  r->Ctl(EPOLL_CTL_ADD, r->evfd, EPOLLIN, &r->stopH);
  Napi::Array ls = o.Get("listeners").As<Napi::Array>();
  for (uint32_t i = 0; i < ls.Length(); i++) {
    Napi::Object l = ls.Get(i).As<Napi::Object>();
    auto* h = new Listener();
    h->r = r;
    h->fd = l.Get("fd").As<Napi::Number>().Int32Value();
    std::string leg = l.Get("leg").As<Napi::String>().Utf8Value();
    h->leg = leg == "outbound" ? Leg::Outbound : leg == "inbound" ? Leg::Inbound : Leg::Hbone;
    h->port = static_cast<uint16_t>(l.Get("port").As<Napi::Number>().Int32Value());
    int fl = fcntl(h->fd, F_GETFL);
    fcntl(h->fd, F_SETFL, fl | O_NONBLOCK);
    r->listeners.push_back(h);
    r->Ctl(EPOLL_CTL_ADD, h->fd, EPOLLIN, h);
  }
  // The netns must be enterable by the thread: checked here so that a bad fd is an error now.
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0 || setns(netnsFd, CLONE_NEWNET) != 0) {
    int e = errno;
    if (self >= 0) close(self);
    StopRelay(r);
    ThrowBpf(env, e, "setns", target);
  }
  setns(self, CLONE_NEWNET);
  close(self);
  r->th = std::thread([r] { r->Run(); });
  auto* handle = new RelayHandle{r};
  return Napi::External<RelayHandle>::New(env, handle, [](Napi::Env, RelayHandle* h) {
    StopRelay(h->relay);
    delete h;
  });
}

Napi::Value RelayStop(const Napi::CallbackInfo& info) {
  auto* h = info[0].As<Napi::External<RelayHandle>>().Data();
  StopRelay(h->relay);
  h->relay = nullptr;
  return info.Env().Undefined();
}

}  // namespace

}  // namespace shunt

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("relayStart", Napi::Function::New(env, shunt::RelayStart));
  exports.Set("relayStop", Napi::Function::New(env, shunt::RelayStop));
  return exports;
}

NODE_API_MODULE(shunt_relay, Init)
