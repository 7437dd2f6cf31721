// TCP listeners of the calling thread's netns through NETLINK_SOCK_DIAG (what `ss -ltn` does).
// Cheaper than /proc/<pid>/net/tcp{,6}, whose every read walks the node-wide TCP hash tables
// and prints every socket of the netns: the dump asks for LISTEN sockets on one port only, so
// the kernel skips the established table and formats one or two records.
#include "common.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace shunt {

namespace {
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};
}  // namespace

// tcpListeners(port, family 4|6, wildcardOnly) -> [{inode, address, port, family}] for the current
// netns. wildcardOnly asks for the one socket a connection to this port with any address would
// find (an exact request: the kernel looks it up in its listener hash, O(1) in the node's
// sockets); otherwise a dump of every listener on the port (the kernel walks the node's
// listening hash, filtered by netns and port).
static Napi::Value TcpListeners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int port = ArgInt(info, 0);
  int family = ArgInt(info, 1);
  bool wildcardOnly = info.Length() > 2 && info[2].ToBoolean().Value();
  std::string target = "tcp listeners on port " + std::to_string(port);
  if (port < 1 || port > 65535) ThrowArg(env, "sock_diag", target, "port must be 1..65535");
  if (family != 4 && family != 6) ThrowArg(env, "sock_diag", target, "family must be 4 or 6");
  Fd s{socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)};
  if (s.fd < 0) ThrowBpf(env, errno, "sock_diag socket", target);

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg = {};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = wildcardOnly ? NLM_F_REQUEST : NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = family == 4 ? AF_INET : AF_INET6;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1u << TCP_LISTEN;
  // The kernel filters listeners by source port itself when one is given.
  msg.req.id.idiag_sport = htons(static_cast<uint16_t>(port));
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl sa = {};
  sa.nl_family = AF_NETLINK;
  if (sendto(s.fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
    ThrowBpf(env, errno, "sock_diag send", target);

  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  std::vector<char> buf(32768);
  // Bounded: a dump ends with NLMSG_DONE; 4096 reads of 32 KiB is far beyond one port's listeners.
  for (int round = 0; round < 4096; round++) {
    ssize_t len = recv(s.fd, buf.data(), buf.size(), 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      ThrowBpf(env, errno, "sock_diag recv", target);
    }
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(len)); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return out;                          // ack
        if (wildcardOnly && e->error == -ENOENT) return out;  // no such socket
        ThrowBpf(env, -e->error, "sock_diag dump", target);
      }
      auto* r = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (r->idiag_state != TCP_LISTEN || ntohs(r->id.idiag_sport) != port) continue;
      char text[INET6_ADDRSTRLEN] = {};
      inet_ntop(r->idiag_family, r->id.idiag_src, text, sizeof(text));
      Napi::Object o = Napi::Object::New(env);
      o.Set("inode", static_cast<double>(r->idiag_inode));
      o.Set("address", text);
      o.Set("port", port);
      o.Set("family", r->idiag_family == AF_INET6 ? 6 : 4);
      out.Set(n++, o);
      if (wildcardOnly) return out;  // one answer, no NLMSG_DONE follows
    }
  }
  ThrowBpf(env, EOVERFLOW, "sock_diag dump", target, "dump did not end");
  return out;
}

// tcpDestroy(family 4|6, local Buffer(16), localPort, remote Buffer(16), remotePort, cookie bigint
// (0n: any), target) -> true when destroyed, false when no such socket. SOCK_DESTROY over
// NETLINK_SOCK_DIAG in the calling thread's netns (CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN):
// the kernel looks the exact 4-tuple up (time-wait sockets included), checks the cookie, and
// runs tcp_abort(): a RST from every state that needs one (ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1/2,
// SYN-RECV), the socket closed with ECONNABORTED; a time-wait socket is just removed.
// Addresses are 16 bytes in network order (an IPv4 address in the first 4).
static Napi::Value TcpDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = ArgInt(info, 0);
  auto local = ArgBuf(info, 1);
  int lport = ArgInt(info, 2);
  auto remote = ArgBuf(info, 3);
  int rport = ArgInt(info, 4);
  bool lossless = true;
  uint64_t cookie = info.Length() > 5 && info[5].IsBigInt() ? info[5].As<Napi::BigInt>().Uint64Value(&lossless) : 0;
  std::string target = OptStr(info, 6);
  if (family != 4 && family != 6) ThrowArg(env, "sock_diag destroy", target, "family must be 4 or 6");
  if (local.Length() != 16 || remote.Length() != 16) ThrowArg(env, "sock_diag destroy", target, "addresses must be 16 bytes");
  if (lport < 1 || lport > 65535 || rport < 1 || rport > 65535) ThrowArg(env, "sock_diag destroy", target, "ports must be 1..65535");
  Fd s{socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)};
  if (s.fd < 0) ThrowBpf(env, errno, "sock_diag socket", target);
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg = {};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DESTROY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = family == 4 ? AF_INET : AF_INET6;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u;
  memcpy(msg.req.id.idiag_src, local.Data(), family == 4 ? 4 : 16);
  memcpy(msg.req.id.idiag_dst, remote.Data(), family == 4 ? 4 : 16);
  msg.req.id.idiag_sport = htons(static_cast<uint16_t>(lport));
  msg.req.id.idiag_dport = htons(static_cast<uint16_t>(rport));
  if (cookie == 0) {
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  } else {
    msg.req.id.idiag_cookie[0] = static_cast<uint32_t>(cookie);
    msg.req.id.idiag_cookie[1] = static_cast<uint32_t>(cookie >> 32);
  }
  sockaddr_nl sa = {};
  sa.nl_family = AF_NETLINK;
  if (sendto(s.fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
    ThrowBpf(env, errno, "sock_diag destroy send", target);
  std::vector<char> buf(4096);
  for (int round = 0; round < 16; round++) {
    ssize_t len = recv(s.fd, buf.data(), buf.size(), 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      ThrowBpf(env, errno, "sock_diag destroy recv", target);
    }
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(len)); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      int e = -static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      if (e == 0) return Napi::Boolean::New(env, true);
      // No such socket (closed meanwhile), or the cookie names another socket on that tuple.
      if (e == ENOENT || e == ESTALE) return Napi::Boolean::New(env, false);
      ThrowBpf(env, e, "sock_diag destroy", target, e == EOPNOTSUPP ? "kernel built without CONFIG_INET_DIAG_DESTROY" : "");
    }
  }
  ThrowBpf(env, EPROTO, "sock_diag destroy", target, "no answer from the kernel");
  return env.Undefined();
}

void InitDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpListeners", Napi::Function::New(env, TcpListeners));
  exports.Set("tcpDestroy", Napi::Function::New(env, TcpDestroy));
}

}  // namespace shunt
