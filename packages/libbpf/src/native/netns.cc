// Network namespaces and socket options: switch the calling thread into a netns and back,
// read a netns cookie, and read SO_ORIGINAL_DST the way Envoy/HAProxy do.
#include "common.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace shunt {

// Restores the thread's original netns on scope exit. Failing to get back would leave
// the whole process in the wrong namespace, which no caller can recover from: abort.
class NetnsGuard {
 public:
  NetnsGuard(Napi::Env env, const std::string& path, const std::string& op) {
    orig_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig_ < 0) ThrowBpf(env, errno, op, path, "cannot open the current netns");
    int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      int err = errno;
      close(orig_);
      ThrowBpf(env, err, op, path, "cannot open netns");
    }
    int r = setns(target, CLONE_NEWNET);
    int err = errno;
    close(target);
    if (r != 0) {
      close(orig_);
      ThrowBpf(env, err, op, path, "setns failed");
    }
  }
  ~NetnsGuard() {
    if (setns(orig_, CLONE_NEWNET) != 0) {
      perror("@shunt/libbpf: cannot return to the original network namespace");
      abort();
    }
    close(orig_);
  }

 private:
  int orig_ = -1;
};

// netnsEnter(path) -> fd of the original netns (pass it to netnsRestore, always).
static Napi::Value NetnsEnter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig < 0) ThrowBpf(env, errno, "enter netns", path, "cannot open the current netns");
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(orig);
    ThrowBpf(env, err, "enter netns", path, "cannot open netns");
  }
  int r = setns(target, CLONE_NEWNET);
  int err = errno;
  close(target);
  if (r != 0) {
    close(orig);
    ThrowBpf(env, err, "enter netns", path, "setns failed");
  }
  return Napi::Number::New(env, orig);
}

static Napi::Value NetnsRestore(const Napi::CallbackInfo& info) {
  int orig = ArgInt(info, 0);
  if (setns(orig, CLONE_NEWNET) != 0) {
    perror("@shunt/libbpf: cannot return to the original network namespace");
    abort();
  }
  close(orig);
  return info.Env().Undefined();
}

// The cookie of a netns is what BPF programs see via bpf_get_netns_cookie(): read it
// from a socket created inside that netns.
static Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  int sock;
  {
    NetnsGuard guard(env, path, "netns cookie");
    sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) sock = -errno;
  }
  if (sock < 0) ThrowBpf(env, -sock, "netns cookie", path, "cannot create a socket in the netns");
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int r = getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int err = errno;
  close(sock);
  if (r != 0) ThrowBpf(env, err, "netns cookie", path, "getsockopt(SO_NETNS_COOKIE) (kernel >= 5.14)");
  return Napi::BigInt::New(env, cookie);
}

// originalDst(fd, 4|6) -> {address, port}
static Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  int family = ArgInt(info, 1);
  std::string target = "socket fd " + std::to_string(fd);
  char text[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (family == 4) {
    sockaddr_in sa = {};
    socklen_t len = sizeof(sa);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0)
      ThrowBpf(env, errno, "getsockopt(SOL_IP, SO_ORIGINAL_DST)", target);
    inet_ntop(AF_INET, &sa.sin_addr, text, sizeof(text));
    port = ntohs(sa.sin_port);
  } else if (family == 6) {
    sockaddr_in6 sa = {};
    socklen_t len = sizeof(sa);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) != 0)
      ThrowBpf(env, errno, "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)", target);
    inet_ntop(AF_INET6, &sa.sin6_addr, text, sizeof(text));
    port = ntohs(sa.sin6_port);
  } else {
    ThrowArg(env, "originalDst", target, "family must be 4 or 6, got " + std::to_string(family));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", text);
  o.Set("port", port);
  return o;
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsEnter", Napi::Function::New(env, NetnsEnter));
  exports.Set("netnsRestore", Napi::Function::New(env, NetnsRestore));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
  exports.Set("originalDst", Napi::Function::New(env, OriginalDst));
}

}  // namespace shunt
