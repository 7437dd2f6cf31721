// Message sockets Node has no handle for: AF_UNIX SOCK_SEQPACKET (ZDS, with SCM_RIGHTS fd
// passing) and datagram sockets made natively (UDP created in another netns with our options).
//
// Readiness: each FdReader owns one fd and one dedicated native thread that poll()s it together
// with an eventfd (the stop signal), does the accept()/recvmsg() itself, and hands each result
// to JS through a ThreadSafeFunction. Why a thread per socket and not libuv: libuv cannot wrap a
// SEQPACKET fd (uv_guess_handle says UNKNOWN) and has no public "poll this fd" handle reachable
// from N-API; a threadpool worker blocked in poll() would pin one of only 4 libuv threads for the
// socket's whole life. A shunt agent has one ZDS listener and one connection per ztunnel (one per
// node), and the stand-in a handful per pod, so a thread each is cheap and never blocks others.
// The TSFN queue is bounded: when JS falls behind, the reader thread waits, the kernel buffer
// fills, and the peer is pushed back (no unbounded buffering here).
#include "common.h"

#include <arpa/inet.h>
#include <atomic>
#include <cstddef>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace shunt {

Napi::Object SockaddrToJs(Napi::Env env, const sockaddr_storage& ss);  // sockets.cc

static constexpr size_t kMaxMessage = 65536;
static constexpr size_t kMaxFds = 16;

enum class ReaderMode { Accept = 0, Seqpacket = 1, Datagram = 2 };

struct ReaderEvent {
  enum Kind { Accepted, Message, End, Error } kind;
  int fd = -1;
  std::vector<uint8_t> data;
  std::vector<int> fds;
  sockaddr_storage from = {};
  bool hasFrom = false;
  bool truncated = false;
  int err = 0;
  std::string op;
  ~ReaderEvent() {
    // Fds never delivered to JS (env gone, TSFN closing) must not leak.
    if (fd >= 0) close(fd);
    for (int f : fds)
      if (f >= 0) close(f);
  }
};

struct ReaderState {
  int fd;
  int efd;
  ReaderMode mode;
  std::string target;
  Napi::ThreadSafeFunction tsfn;
  std::atomic<bool> stopping{false};
  // The reader thread closes fd when it ends; after that the number may belong to another
  // socket, so the main thread touches fd (shutdown) only under this lock while !fdClosed.
  std::mutex fdMutex;
  bool fdClosed = false;
  bool finalized = false;  // main thread only
  ~ReaderState() {
    if (efd >= 0) close(efd);
  }
};

static void Deliver(Napi::Env env, Napi::Function cb, ReaderEvent* ev) {
  std::unique_ptr<ReaderEvent> owned(ev);
  if (env == nullptr || cb.IsEmpty()) return;
  Napi::Object o = Napi::Object::New(env);
  switch (ev->kind) {
    case ReaderEvent::Accepted:
      o.Set("type", "accept");
      o.Set("fd", ev->fd);
      ev->fd = -1;  // JS owns it now
      break;
    case ReaderEvent::Message: {
      o.Set("type", "message");
      o.Set("data", Napi::Buffer<uint8_t>::Copy(env, ev->data.data(), ev->data.size()));
      Napi::Array fds = Napi::Array::New(env, ev->fds.size());
      for (size_t i = 0; i < ev->fds.size(); i++) fds.Set(i, ev->fds[i]);
      ev->fds.clear();
      o.Set("fds", fds);
      o.Set("truncated", ev->truncated);
      if (ev->hasFrom) o.Set("from", SockaddrToJs(env, ev->from));
      break;
    }
    case ReaderEvent::End:
      o.Set("type", "end");
      break;
    case ReaderEvent::Error: {
      o.Set("type", "error");
      Napi::Value err;
      try {
        ThrowBpf(env, ev->err, ev->op, "fd reader");
      } catch (const Napi::Error& e) {
        err = e.Value();
      }
      o.Set("error", err);
      break;
    }
  }
  cb.Call({o});
}

static void ReaderLoop(std::shared_ptr<ReaderState> st) {
  std::vector<uint8_t> buf(kMaxMessage);
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  auto post = [&](ReaderEvent* ev) {
    if (st->tsfn.BlockingCall(ev, Deliver) != napi_ok) delete ev;
  };
  bool done = false;
  while (!done && !st->stopping.load()) {
    pollfd p[2] = {{st->fd, POLLIN, 0}, {st->efd, POLLIN, 0}};
    int r = poll(p, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      post(new ReaderEvent{ReaderEvent::Error, -1, {}, {}, {}, false, false, errno, "poll"});
      break;
    }
    if (p[1].revents || st->stopping.load()) break;
    if (st->mode == ReaderMode::Accept) {
      int c = accept4(st->fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
        post(new ReaderEvent{ReaderEvent::Error, -1, {}, {}, {}, false, false, errno, "accept"});
        break;
      }
      auto* ev = new ReaderEvent{ReaderEvent::Accepted};
      ev->fd = c;
      post(ev);
      continue;
    }
    iovec iov = {buf.data(), buf.size()};
    msghdr msg = {};
    sockaddr_storage from = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    if (st->mode == ReaderMode::Datagram) {
      msg.msg_name = &from;
      msg.msg_namelen = sizeof(from);
    }
    ssize_t n = recvmsg(st->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ECONNRESET && st->mode == ReaderMode::Seqpacket) {
        post(new ReaderEvent{ReaderEvent::End});
        break;
      }
      post(new ReaderEvent{ReaderEvent::Error, -1, {}, {}, {}, false, false, errno, "recvmsg"});
      break;
    }
    auto* ev = new ReaderEvent{ReaderEvent::Message};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int* p2 = reinterpret_cast<const int*>(CMSG_DATA(c));
        for (size_t i = 0; i < count; i++) {
          int f;
          memcpy(&f, p2 + i, sizeof(int));
          ev->fds.push_back(f);
        }
      }
    }
    // A zero-length read on a connected seqpacket socket with no fds is the peer's close.
    if (n == 0 && st->mode == ReaderMode::Seqpacket && ev->fds.empty()) {
      delete ev;
      post(new ReaderEvent{ReaderEvent::End});
      break;
    }
    ev->data.assign(buf.begin(), buf.begin() + n);
    ev->truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    if (st->mode == ReaderMode::Datagram) {
      ev->from = from;
      ev->hasFrom = true;
    }
    post(ev);
  }
  {
    std::lock_guard<std::mutex> lock(st->fdMutex);
    close(st->fd);
    st->fdClosed = true;
  }
  st->tsfn.Release();
}

// sendMsg(fd, data, fds[], target, toAddr?) -> bytes sent. Never blocks: EAGAIN (peer not reading,
// buffer full) is an error for the caller to report.
static Napi::Value SendOn(const Napi::CallbackInfo& info, int fd, size_t a) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> data = ArgBuf(info, a);
  if (!info[a + 1].IsArray()) throw Napi::TypeError::New(env, "send(data, fds[], target, to?)");
  Napi::Array arr = info[a + 1].As<Napi::Array>();
  std::string target = OptStr(info, a + 2);
  if (arr.Length() > kMaxFds) ThrowArg(env, "sendmsg", target, "at most 16 fds per message");
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber()) ThrowArg(env, "sendmsg", target, "fds must be numbers");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  iovec iov = {data.Data(), data.Length()};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  sockaddr_storage to = {};
  if (info.Length() > a + 3 && info[a + 3].IsObject()) {
    Napi::Object t = info[a + 3].As<Napi::Object>();
    std::string addr = t.Get("address").ToString().Utf8Value();
    int port = t.Get("port").ToNumber().Int32Value();
    int family = t.Get("family").ToNumber().Int32Value();
    if (family == 4) {
      auto* sa = reinterpret_cast<sockaddr_in*>(&to);
      sa->sin_family = AF_INET;
      sa->sin_port = htons(static_cast<uint16_t>(port));
      if (inet_pton(AF_INET, addr.c_str(), &sa->sin_addr) != 1) ThrowArg(env, "sendmsg", target, "bad address " + addr);
      msg.msg_namelen = sizeof(sockaddr_in);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&to);
      sa->sin6_family = AF_INET6;
      sa->sin6_port = htons(static_cast<uint16_t>(port));
      if (inet_pton(AF_INET6, addr.c_str(), &sa->sin6_addr) != 1) ThrowArg(env, "sendmsg", target, "bad address " + addr);
      msg.msg_namelen = sizeof(sockaddr_in6);
    }
    msg.msg_name = &to;
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowBpf(env, errno, "sendmsg", target, errno == EAGAIN ? "the peer is not reading (socket buffer full)" : "");
  return Napi::Number::New(env, static_cast<double>(n));
}

// sendMsg(fd, data, fds[], target, to?) on an fd no reader owns.
static Napi::Value SendMsg(const Napi::CallbackInfo& info) { return SendOn(info, ArgInt(info, 0), 1); }

// new FdReader(fd, mode, callback, target): takes ownership of fd (closed when the reader stops).
class FdReader : public Napi::ObjectWrap<FdReader> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdReader",
                       {InstanceMethod("stop", &FdReader::Stop), InstanceMethod("send", &FdReader::Send), InstanceMethod("ref", &FdReader::Ref),
                        InstanceMethod("unref", &FdReader::Unref)});
  }
  explicit FdReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdReader>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0);
    int mode = ArgInt(info, 1);
    if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "FdReader(fd, mode, callback, target)");
    std::string target = OptStr(info, 3);
    if (mode < 0 || mode > 2) ThrowArg(env, "FdReader", target, "mode must be 0 (accept), 1 (seqpacket) or 2 (datagram)");
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) ThrowBpf(env, errno, "FdReader", target, "fcntl(O_NONBLOCK)");
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) ThrowBpf(env, errno, "FdReader", target, "eventfd");
    state_ = std::make_shared<ReaderState>();
    state_->fd = fd;
    state_->efd = efd;
    state_->mode = static_cast<ReaderMode>(mode);
    state_->target = target;
    std::shared_ptr<ReaderState> st = state_;
    state_->tsfn = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "shunt-fd-reader", 64, 1,
                                                 [st](Napi::Env) { st->finalized = true; });
    std::thread(ReaderLoop, state_).detach();
  }
  ~FdReader() override { Signal(); }

 private:
  void Signal() {
    if (!state_ || state_->stopping.exchange(true)) return;
    uint64_t one = 1;
    if (write(state_->efd, &one, sizeof(one)) < 0) { /* the eventfd cannot be full: nothing to do */ }
  }
  // stop(): the thread closes the fd and ends; no further callbacks after those already queued.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    // shutdown first so a seqpacket peer sees EOF now, not when the thread gets to close().
    if (state_ && !state_->stopping.load() && state_->mode == ReaderMode::Seqpacket) {
      std::lock_guard<std::mutex> lock(state_->fdMutex);
      if (!state_->fdClosed) shutdown(state_->fd, SHUT_RDWR);
    }
    Signal();
    return info.Env().Undefined();
  }
  // send(data, fds[], target, to?): under the fd lock, so never onto a number the thread has closed.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(state_->fdMutex);
    if (state_->fdClosed || state_->stopping.load()) ThrowBpf(info.Env(), EPIPE, "sendmsg", OptStr(info, 2), "the socket is closed");
    return SendOn(info, state_->fd, 0);
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (state_ && !state_->finalized) state_->tsfn.Ref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (state_ && !state_->finalized) state_->tsfn.Unref(info.Env());
    return info.Env().Undefined();
  }
  std::shared_ptr<ReaderState> state_;
};

static int UnixType(Napi::Env env, const std::string& t, const std::string& target) {
  if (t == "seqpacket") return SOCK_SEQPACKET;
  if (t == "stream") return SOCK_STREAM;
  if (t == "dgram") return SOCK_DGRAM;
  ThrowArg(env, "unix socket", target, "type must be seqpacket, stream or dgram, got " + t);
}

static sockaddr_un UnixAddr(Napi::Env env, const std::string& path, socklen_t* len) {
  sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path))
    ThrowArg(env, "unix socket", path, "path must be 1.." + std::to_string(sizeof(sa.sun_path) - 1) + " bytes");
  memcpy(sa.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return sa;
}

// unixListen(path, type, backlog, mode) -> fd. The caller removes a stale file first.
static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  int type = UnixType(env, ArgStr(info, 1), path);
  int backlog = ArgInt(info, 2);
  int mode = ArgInt(info, 3);
  socklen_t len;
  sockaddr_un sa = UnixAddr(env, path, &len);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowBpf(env, errno, "unix listen", path, "socket()");
  auto fail = [&](const std::string& step) {
    int err = errno;
    close(fd);
    ThrowBpf(env, err, "unix listen", path, step);
  };
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) fail("bind");
  if (chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) fail("chmod");
  if (type != SOCK_DGRAM && listen(fd, backlog) != 0) fail("listen");
  return Napi::Number::New(env, fd);
}

// unixConnect(path, type) -> fd (connected; a unix connect completes or fails at once).
static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  int type = UnixType(env, ArgStr(info, 1), path);
  socklen_t len;
  sockaddr_un sa = UnixAddr(env, path, &len);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowBpf(env, errno, "unix connect", path, "socket()");
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    int err = errno;
    close(fd);
    ThrowBpf(env, err, "unix connect", path,
             err == ENOENT ? "no socket at that path" : err == ECONNREFUSED ? "nobody is listening" : err == EAGAIN ? "the listener's backlog is full" : "");
  }
  return Napi::Number::New(env, fd);
}

// unixSocketPair(type) -> [fd, fd]
static Napi::Value UnixSocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = UnixType(env, ArgStr(info, 0), "socketpair");
  int sv[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) ThrowBpf(env, errno, "socketpair", "unix");
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, sv[0]);
  a.Set(1u, sv[1]);
  return a;
}

// unixPeerCred(fd, target) -> {pid, uid, gid}: SO_PEERCRED, the process that connected (or made
// the pair), as the kernel recorded it at connect() time. The ZDS server uses it to learn where
// ztunnel runs (its cgroup decides whether tc splicing can pair its sockets).
static Napi::Value UnixPeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  std::string target = ArgStr(info, 1);
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) ThrowBpf(env, errno, "getsockopt(SO_PEERCRED)", target);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

void InitUnix(Napi::Env env, Napi::Object exports) {
  exports.Set("unixPeerCred", Napi::Function::New(env, UnixPeerCred));
  exports.Set("FdReader", FdReader::Define(env));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("unixSocketPair", Napi::Function::New(env, UnixSocketPair));
}

}  // namespace shunt
