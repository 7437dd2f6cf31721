// Policy rules and routes over a raw NETLINK_ROUTE socket created inside a network namespace.
// Why not iproute2 (@shunt/netlink): the tc backend must install its fwmark rule and local route
// on every ambient pod enroll, and spawning `nsenter ip` costs tens of milliseconds on a busy
// node (enroll p99 goal: 5 ms). Only the two message shapes the backend needs are built here:
//   rule  : fwmark <mark>/<mask> [iif <dev>] lookup <table> priority <prio> (RTM_NEWRULE/DELRULE)
//   route : local default dev lo table <table>                            (RTM_NEWROUTE/DELROUTE)
#include "common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace shunt {

// A NETLINK_ROUTE socket of the netns at path: the thread enters the netns only to create it
// (a socket stays in the netns it was made in) and always returns, or the process aborts.
static int NetlinkSocketIn(Napi::Env env, const std::string& path) {
  int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig < 0) ThrowBpf(env, errno, "rtnetlink", path, "cannot open the current netns");
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(orig);
    ThrowBpf(env, err, "rtnetlink", path, "cannot open netns");
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(orig);
    ThrowBpf(env, err, "rtnetlink", path, "setns failed");
  }
  close(target);
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int err = errno;
  if (setns(orig, CLONE_NEWNET) != 0) {
    perror("@shunt/libbpf: cannot return to the original network namespace");
    abort();
  }
  close(orig);
  if (fd < 0) ThrowBpf(env, err, "rtnetlink", path, "socket(AF_NETLINK, NETLINK_ROUTE)");
  struct timeval tv = {2, 0};  // never hang on a lost answer
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

struct Msg {
  alignas(NLMSG_ALIGNTO) char buf[256];
  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf); }
  // A NUL-terminated string attribute (bounded: IFNAMSIZ, checked by the caller).
  void attrStr(unsigned short type, const std::string& v) {
    nlmsghdr* n = hdr();
    rtattr* a = reinterpret_cast<rtattr*>(buf + NLMSG_ALIGN(n->nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(v.size() + 1);
    memcpy(RTA_DATA(a), v.c_str(), v.size() + 1);
    n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(a->rta_len);
  }
  void attr32(unsigned short type, __u32 v) {
    nlmsghdr* n = hdr();
    rtattr* a = reinterpret_cast<rtattr*>(buf + NLMSG_ALIGN(n->nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(sizeof(v));
    memcpy(RTA_DATA(a), &v, sizeof(v));
    n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(a->rta_len);
  }
};

// Sends one request and returns the kernel's answer as a positive errno (0: done).
static int Transact(int fd, Msg& m, __u32 seq) {
  m.hdr()->nlmsg_seq = seq;
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, m.buf, m.hdr()->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
  alignas(NLMSG_ALIGNTO) char rbuf[8192];
  for (int tries = 0; tries < 16; tries++) {
    ssize_t n = recv(fd, rbuf, sizeof(rbuf), 0);
    if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(rbuf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      auto* e = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h));
      return -e->error;
    }
  }
  return EPROTO;
}

static __u32 Prop(const Napi::Object& o, const char* k, __u32 dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
}

// rtnlApply(netnsPath, ops[]) -> errno per op (0 = ok). op: {kind: 'rule'|'route', op: 'add'|'del',
// family: 4|6, table, priority?, mark?, mask?, iif?}. 'route add' replaces (idempotent); 'rule add'
// answers EEXIST when the same rule exists; 'del' answers ENOENT/ESRCH when it is not there.
static Napi::Value RtnlApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) ThrowArg(env, "rtnetlink", path, "ops must be an array");
  Napi::Array ops = info[1].As<Napi::Array>();
  int fd = NetlinkSocketIn(env, path);
  Napi::Array out = Napi::Array::New(env, ops.Length());
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Object o = ops.Get(i).As<Napi::Object>();
    std::string kind = o.Get("kind").ToString().Utf8Value();
    bool add = o.Get("op").ToString().Utf8Value() == "add";
    unsigned char family = Prop(o, "family", 4) == 6 ? AF_INET6 : AF_INET;
    __u32 table = Prop(o, "table", 0);
    Msg m = {};
    nlmsghdr* n = m.hdr();
    if (kind == "rule") {
      n->nlmsg_len = NLMSG_LENGTH(sizeof(fib_rule_hdr));
      n->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
      n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
      auto* r = reinterpret_cast<fib_rule_hdr*>(NLMSG_DATA(n));
      r->family = family;
      r->action = FR_ACT_TO_TBL;
      r->table = table < 256 ? table : RT_TABLE_UNSPEC;
      m.attr32(FRA_TABLE, table);
      m.attr32(FRA_PRIORITY, Prop(o, "priority", 0));
      m.attr32(FRA_FWMARK, Prop(o, "mark", 0));
      m.attr32(FRA_FWMASK, Prop(o, "mask", 0xffffffff));
      // Only packets arriving on this interface (a delete without it matches either shape).
      Napi::Value iif = o.Get("iif");
      if (iif.IsString()) {
        std::string name = iif.As<Napi::String>().Utf8Value();
        if (name.empty() || name.size() >= 16) {
          close(fd);
          ThrowArg(env, "rtnetlink", path, "iif must be an interface name (1-15 characters), got '" + name + "'");
        }
        m.attrStr(FRA_IIFNAME, name);
      }
    } else if (kind == "route") {
      n->nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
      n->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
      n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
      auto* r = reinterpret_cast<rtmsg*>(NLMSG_DATA(n));
      r->rtm_family = family;
      r->rtm_table = table < 256 ? table : RT_TABLE_UNSPEC;
      r->rtm_protocol = RTPROT_BOOT;
      r->rtm_scope = RT_SCOPE_HOST;
      r->rtm_type = RTN_LOCAL;
      m.attr32(RTA_TABLE, table);
      m.attr32(RTA_OIF, 1);  // lo is ifindex 1 in every netns
    } else {
      close(fd);
      ThrowArg(env, "rtnetlink", path, "op kind must be 'rule' or 'route', got '" + kind + "'");
    }
    out.Set(i, Napi::Number::New(env, Transact(fd, m, i + 1)));
  }
  close(fd);
  return out;
}

void InitRtnl(Napi::Env env, Napi::Object exports) { exports.Set("rtnlApply", Napi::Function::New(env, RtnlApply)); }

}  // namespace shunt
