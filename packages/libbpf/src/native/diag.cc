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

void InitDiag(Napi::Env env, Napi::Object exports) { exports.Set("tcpListeners", Napi::Function::New(env, TcpListeners)); }

}  // namespace shunt
