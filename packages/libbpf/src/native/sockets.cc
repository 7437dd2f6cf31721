// Inet sockets made the way ztunnel makes its in-pod sockets, which Node's net/dgram cannot:
// created inside a given netns (path or fd), with SO_MARK, SO_REUSEPORT, IP(V6)_TRANSPARENT,
// IPV6_V6ONLY, bound (also to a non-local address), then listening or connecting. The fd is
// handed to Node (net.Server.listen({fd}), new net.Socket({fd})), which owns it from then on.
//
// Only socket() runs inside the netns: a socket belongs to the netns it was created in for its
// whole life, so bind/listen/connect afterwards need no namespace switch. The switch is done on
// the calling (main) thread for the duration of one socket() call and always undone.
#include "common.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

namespace shunt {

// Parses "198.18.0.1" / "2001:db8::1" (family 4 or 6) into a sockaddr.
static bool ParseAddr(int family, const std::string& text, int port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  if (family == 4) {
    auto* sa = reinterpret_cast<sockaddr_in*>(ss);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, text.c_str(), &sa->sin_addr) != 1) return false;
    *len = sizeof(*sa);
    return true;
  }
  auto* sa = reinterpret_cast<sockaddr_in6*>(ss);
  sa->sin6_family = AF_INET6;
  sa->sin6_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET6, text.c_str(), &sa->sin6_addr) != 1) return false;
  *len = sizeof(*sa);
  return true;
}

Napi::Object SockaddrToJs(Napi::Env env, const sockaddr_storage& ss) {
  Napi::Object o = Napi::Object::New(env);
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* sa = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sa->sin_addr, text, sizeof(text));
    o.Set("family", 4);
    o.Set("address", text);
    o.Set("port", ntohs(sa->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* sa = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sa->sin6_addr, text, sizeof(text));
    o.Set("family", 6);
    o.Set("address", text);
    o.Set("port", ntohs(sa->sin6_port));
  } else {
    o.Set("family", static_cast<int>(ss.ss_family));
    o.Set("address", "");
    o.Set("port", 0);
  }
  return o;
}

// socket() inside the netns given by path (string) or fd (number), or here (undefined).
// Returns the fd or -errno; *where says which step failed.
static int SocketInNetns(const Napi::Value& netns, int domain, int type, std::string* where) {
  if (netns.IsUndefined() || netns.IsNull()) {
    int fd = socket(domain, type | SOCK_CLOEXEC, 0);
    if (fd < 0) *where = "socket()";
    return fd < 0 ? -errno : fd;
  }
  int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig < 0) {
    *where = "open the current netns";
    return -errno;
  }
  int target;
  bool ownTarget = false;
  if (netns.IsNumber()) {
    target = netns.As<Napi::Number>().Int32Value();
  } else {
    std::string path = netns.As<Napi::String>().Utf8Value();
    target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      int err = errno;
      close(orig);
      *where = "open netns";
      return -err;
    }
    ownTarget = true;
  }
  int r = setns(target, CLONE_NEWNET);
  int err = errno;
  if (ownTarget) close(target);
  if (r != 0) {
    close(orig);
    *where = "setns";
    return -err;
  }
  int fd = socket(domain, type | SOCK_CLOEXEC, 0);
  int sockErr = errno;
  if (setns(orig, CLONE_NEWNET) != 0) {
    perror("@shunt/libbpf: cannot return to the original network namespace");
    abort();
  }
  close(orig);
  if (fd < 0) {
    *where = "socket()";
    return -sockErr;
  }
  return fd;
}

static bool OptBool(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}
static int OptNum(const Napi::Object& o, const char* k, int dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}
static std::string OptString(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
}

// inetSocket(opts, target) -> {fd, inProgress}
//   opts: {netns?: string|number, family: 4|6, udp?: bool, mark?: number, reuseAddr?, reusePort?,
//          transparent?, v6Only?: bool|undefined, bindAddress?: string, bindPort?: number,
//          listen?: backlog, connectAddress?: string, connectPort?: number}
// A connect is started non-blocking; inProgress says the caller must wait for it (waitConnect).
static Napi::Value InetSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject()) ThrowArg(env, "inetSocket", "?", "inetSocket(opts, target)");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string target = ArgStr(info, 1);
  int family = OptNum(o, "family", 0);
  if (family != 4 && family != 6) ThrowArg(env, "inetSocket", target, "family must be 4 or 6");
  bool udp = OptBool(o, "udp");
  std::string where;
  int fd = SocketInNetns(o.Get("netns"), family == 4 ? AF_INET : AF_INET6, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK,
                         &where);
  if (fd < 0) ThrowBpf(env, -fd, "inetSocket", target, where);
  auto fail = [&](const std::string& step) {
    int err = errno;
    close(fd);
    ThrowBpf(env, err, "inetSocket", target, step);
  };
  int one = 1;
  int mark = OptNum(o, "mark", -1);
  if (mark >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) fail("setsockopt(SO_MARK) (needs CAP_NET_ADMIN)");
  if (OptBool(o, "reuseAddr") && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) fail("setsockopt(SO_REUSEADDR)");
  if (OptBool(o, "reusePort") && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) fail("setsockopt(SO_REUSEPORT)");
  if (OptBool(o, "transparent")) {
    int r = family == 4 ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))
                        : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
    if (r != 0) fail(family == 4 ? "setsockopt(IP_TRANSPARENT) (needs CAP_NET_ADMIN)" : "setsockopt(IPV6_TRANSPARENT) (needs CAP_NET_ADMIN)");
  }
  Napi::Value v6only = o.Get("v6Only");
  if (family == 6 && v6only.IsBoolean()) {
    int val = v6only.As<Napi::Boolean>().Value() ? 1 : 0;
    if (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &val, sizeof(val)) != 0) fail("setsockopt(IPV6_V6ONLY)");
  }
  if (!udp && OptBool(o, "noDelay") && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) fail("setsockopt(TCP_NODELAY)");
  std::string bindAddress = OptString(o, "bindAddress");
  int bindPort = OptNum(o, "bindPort", 0);
  if (!bindAddress.empty() || bindPort != 0) {
    if (bindAddress.empty()) bindAddress = family == 4 ? "0.0.0.0" : "::";
    sockaddr_storage ss;
    socklen_t len;
    if (!ParseAddr(family, bindAddress, bindPort, &ss, &len)) {
      close(fd);
      ThrowArg(env, "inetSocket", target, "bad bind address " + bindAddress + " for family " + std::to_string(family));
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) fail("bind(" + bindAddress + ":" + std::to_string(bindPort) + ")");
  }
  int backlog = OptNum(o, "listen", -1);
  if (!udp && backlog >= 0 && listen(fd, backlog) != 0) fail("listen()");
  bool inProgress = false;
  std::string connectAddress = OptString(o, "connectAddress");
  if (!connectAddress.empty()) {
    sockaddr_storage ss;
    socklen_t len;
    if (!ParseAddr(family, connectAddress, OptNum(o, "connectPort", 0), &ss, &len)) {
      close(fd);
      ThrowArg(env, "inetSocket", target, "bad connect address " + connectAddress + " for family " + std::to_string(family));
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      if (errno == EINPROGRESS)
        inProgress = true;
      else
        fail("connect(" + connectAddress + ")");
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", fd);
  out.Set("inProgress", inProgress);
  return out;
}

// Waits for a non-blocking connect on a worker thread (bounded by the timeout, so a libuv
// threadpool thread is never held longer than that) and reports SO_ERROR.
class ConnectWaiter : public Napi::AsyncWorker {
 public:
  ConnectWaiter(Napi::Env env, int fd, int timeoutMs, std::string target)
      : Napi::AsyncWorker(env), fd_(fd), timeoutMs_(timeoutMs), target_(std::move(target)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    pollfd p = {fd_, POLLOUT, 0};
    int r;
    do {
      r = poll(&p, 1, timeoutMs_);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      err_ = errno;
      step_ = "poll";
      return;
    }
    if (r == 0) {
      err_ = ETIMEDOUT;
      step_ = "connect timed out after " + std::to_string(timeoutMs_) + " ms";
      return;
    }
    int soErr = 0;
    socklen_t len = sizeof(soErr);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soErr, &len) != 0) {
      err_ = errno;
      step_ = "getsockopt(SO_ERROR)";
      return;
    }
    if (soErr != 0) {
      err_ = soErr;
      step_ = "connect";
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == 0) {
      deferred_.Resolve(env.Undefined());
      return;
    }
    // Build the BpfError through the registered factory by catching the throw.
    try {
      ThrowBpf(env, err_, "connect", target_, step_);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  int fd_;
  int timeoutMs_;
  std::string target_;
  Napi::Promise::Deferred deferred_;
  int err_ = 0;
  std::string step_;
};

// waitConnect(fd, timeoutMs, target) -> Promise<void>; rejects with the connect's errno.
static Napi::Value WaitConnect(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  int timeoutMs = ArgInt(info, 1);
  std::string target = ArgStr(info, 2);
  auto* w = new ConnectWaiter(info.Env(), fd, timeoutMs, target);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

static Napi::Value SockName(const Napi::CallbackInfo& info, bool peer) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) ThrowBpf(env, errno, peer ? "getpeername" : "getsockname", "socket fd " + std::to_string(fd));
  return SockaddrToJs(env, ss);
}

// socketInfo(fd) -> {mark, reusePort, transparent, type, family} for tests and doctor-style checks.
static Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  std::string target = "socket fd " + std::to_string(fd);
  auto get = [&](int level, int name, const char* what) {
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, level, name, &v, &len) != 0) ThrowBpf(env, errno, std::string("getsockopt(") + what + ")", target);
    return v;
  };
  int domain = get(SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN");
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", domain == AF_INET ? 4 : domain == AF_INET6 ? 6 : domain == AF_UNIX ? 0 : -domain);
  int type = get(SOL_SOCKET, SO_TYPE, "SO_TYPE");
  o.Set("type", type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : type == SOCK_SEQPACKET ? "seqpacket" : "other");
  if (domain == AF_INET || domain == AF_INET6) {
    o.Set("mark", get(SOL_SOCKET, SO_MARK, "SO_MARK"));
    o.Set("reusePort", get(SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") != 0);
    o.Set("transparent", (domain == AF_INET ? get(SOL_IP, IP_TRANSPARENT, "IP_TRANSPARENT")
                                            : get(SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT")) != 0);
    if (domain == AF_INET6) o.Set("v6Only", get(SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY") != 0);
    o.Set("listening", get(SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN") != 0);
  }
  return o;
}

static Napi::Value CloseRawFd(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  if (close(fd) != 0) ThrowBpf(info.Env(), errno, "close", "fd " + std::to_string(fd));
  return info.Env().Undefined();
}

void InitSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("inetSocket", Napi::Function::New(env, InetSocket));
  exports.Set("waitConnect", Napi::Function::New(env, WaitConnect));
  exports.Set("getSockName", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return SockName(i, false); }));
  exports.Set("getPeerName", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return SockName(i, true); }));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo));
  exports.Set("closeRawFd", Napi::Function::New(env, CloseRawFd));
}

}  // namespace shunt
