// tcx with a chosen position: bpf_link_create with BPF_F_BEFORE/BPF_F_AFTER (no anchor: head or
// tail of the hook) and expected_revision, so an attach that raced with another attacher (a CNI
// adding its program at the same moment) fails with ESTALE instead of landing somewhere
// unplanned; and the query that reads a hook's programs, links and revision. Both act on an
// ifindex of the calling thread's netns (callers enter the pod netns first).
#include "common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>
#include <vector>

namespace shunt {

static bpf_attach_type TcxType(const std::string& dir) { return dir == "egress" ? BPF_TCX_EGRESS : BPF_TCX_INGRESS; }

// linkTcxAt(progFd, ifindex, dir, position 'first'|'last', expectedRevision (0: any), target) -> fd handle
static Napi::Value LinkTcxAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int ifindex = ArgInt(info, 1);
  std::string dir = ArgStr(info, 2);
  std::string pos = ArgStr(info, 3);
  double rev = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : 0;
  std::string target = OptStr(info, 5);
  if (pos != "first" && pos != "last") ThrowArg(env, "attach tcx", target, "position must be 'first' or 'last', got '" + pos + "'");
  LIBBPF_OPTS(bpf_link_create_opts, opts);
  opts.flags = pos == "first" ? BPF_F_BEFORE : BPF_F_AFTER;
  opts.tcx.expected_revision = static_cast<__u64>(rev);
  int link = bpf_link_create(progFd, ifindex, TcxType(dir), &opts);
  if (link < 0) {
    int err = errno;
    std::string hint = "on ifindex " + std::to_string(ifindex) + " (" + pos + ")";
    if (err == ESTALE) hint += ": the hook changed since revision " + std::to_string(static_cast<uint64_t>(rev));
    ThrowBpf(env, err, "attach tcx " + dir, target, hint);
  }
  return WrapFd(env, link);
}

// tcxQuery(ifindex, dir, target) -> {revision, progIds, linkIds} in hook order (linkIds[i] 0: not a link)
static Napi::Value TcxQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = ArgInt(info, 0);
  std::string dir = ArgStr(info, 1);
  std::string target = OptStr(info, 2);
  std::vector<__u32> progs(64), links(64);
  LIBBPF_OPTS(bpf_prog_query_opts, q);
  q.prog_ids = progs.data();
  q.link_ids = links.data();
  q.count = static_cast<__u32>(progs.size());
  if (bpf_prog_query_opts(ifindex, TcxType(dir), &q) != 0)
    ThrowBpf(env, errno, "query tcx " + dir, target, "on ifindex " + std::to_string(ifindex));
  Napi::Object o = Napi::Object::New(env);
  o.Set("revision", Napi::Number::New(env, static_cast<double>(q.revision)));
  Napi::Array p = Napi::Array::New(env, q.count), l = Napi::Array::New(env, q.count);
  for (__u32 i = 0; i < q.count && i < progs.size(); i++) {
    p.Set(i, progs[i]);
    l.Set(i, links[i]);
  }
  o.Set("progIds", p);
  o.Set("linkIds", l);
  return o;
}


// linkTcxAtAsync(progFd, netnsPath, ifname, dir, position, target) -> Promise<fd handle>.
// The same attach as linkTcxAt, appended at the revision read just before (retried on ESTALE),
// on a libuv pool thread that enters the netns itself. Why: every tcx attach waits for an RCU
// grace period (tcx_entry_sync -> synchronize_rcu, 10-20 ms on a loaded node). Off the main
// thread, a pod's ingress and egress attach wait for the same grace period, and the agent's
// event loop (other pods, ZDS) never blocks on them.
class TcxAttachWork : public Napi::AsyncWorker {
 public:
  TcxAttachWork(Napi::Env env, int progFd, std::string netns, std::string ifname, std::string dir, std::string pos, std::string target)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), progFd_(progFd), netns_(std::move(netns)),
        ifname_(std::move(ifname)), dir_(std::move(dir)), pos_(std::move(pos)), target_(std::move(target)) {}
  ~TcxAttachWork() override {
    if (progFd_ >= 0) close(progFd_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig < 0) return Fail(errno, "cannot open the current netns");
    int ns = open(netns_.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      close(orig);
      return Fail(errno, "cannot open netns " + netns_);
    }
    int r = setns(ns, CLONE_NEWNET);
    int serr = errno;
    close(ns);
    if (r != 0) {
      close(orig);
      return Fail(serr, "setns into " + netns_);
    }
    Attach();
    if (setns(orig, CLONE_NEWNET) != 0) {
      perror("@shunt/libbpf: a pool thread cannot return to the original network namespace");
      abort();
    }
    close(orig);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == 0) return deferred_.Resolve(WrapFd(env, link_));
    try {
      ThrowBpf(env, err_, "attach tcx " + dir_, target_, detail_);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  void Fail(int err, const std::string& detail) {
    err_ = err ? err : EIO;
    detail_ = detail;
  }
  void Attach() {
    unsigned ifindex = if_nametoindex(ifname_.c_str());
    if (ifindex == 0) return Fail(errno, "no interface " + ifname_ + " in netns " + netns_);
    for (int attempt = 0; attempt < 5; attempt++) {
      std::vector<__u32> ids(64);
      LIBBPF_OPTS(bpf_prog_query_opts, q);
      q.prog_ids = ids.data();
      q.count = static_cast<__u32>(ids.size());
      if (bpf_prog_query_opts(static_cast<int>(ifindex), TcxType(dir_), &q) != 0) return Fail(errno, "query tcx " + dir_ + " of " + ifname_);
      LIBBPF_OPTS(bpf_link_create_opts, opts);
      opts.flags = pos_ == "first" ? BPF_F_BEFORE : BPF_F_AFTER;
      opts.tcx.expected_revision = q.revision;
      int link = bpf_link_create(progFd_, static_cast<int>(ifindex), TcxType(dir_), &opts);
      if (link >= 0) {
        link_ = link;
        return;
      }
      if (errno != ESTALE) return Fail(errno, "on " + ifname_ + " (ifindex " + std::to_string(ifindex) + ", " + pos_ + ") in netns " + netns_);
    }
    Fail(ESTALE, "the hook kept changing under us (5 attempts)");
  }

  Napi::Promise::Deferred deferred_;
  int progFd_;
  std::string netns_, ifname_, dir_, pos_, target_;
  int link_ = -1;
  int err_ = 0;
  std::string detail_;
};

static Napi::Value LinkTcxAtAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  std::string netns = ArgStr(info, 1), ifname = ArgStr(info, 2), dir = ArgStr(info, 3), pos = ArgStr(info, 4), target = OptStr(info, 5);
  if (pos != "first" && pos != "last") ThrowArg(env, "attach tcx", target, "position must be 'first' or 'last', got '" + pos + "'");
  int dup = fcntl(progFd, F_DUPFD_CLOEXEC, 0);  // the program stays alive while the work runs
  if (dup < 0) ThrowBpf(env, errno, "attach tcx " + dir, target, "dup program fd");
  auto* w = new TcxAttachWork(env, dup, netns, ifname, dir, pos, target);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// tcAttachLegacyAt(progFd, ifindex, dir, handle, priority, target) -> {createdQdisc}: a
// direct-action cls_bpf filter at an explicit handle/priority on clsact (created if missing). No
// BPF_TC_F_REPLACE: a filter already there (anyone's) makes it fail with EEXIST, never replaced.
static Napi::Value TcAttachLegacyAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int ifindex = ArgInt(info, 1);
  std::string dir = ArgStr(info, 2);
  int handle = ArgInt(info, 3);
  int priority = ArgInt(info, 4);
  std::string target = OptStr(info, 5);
  if (handle <= 0 || priority <= 0 || priority > 0xffff) ThrowArg(env, "attach tc " + dir, target, "handle must be > 0 and priority 1..65535");
  LIBBPF_OPTS(bpf_tc_hook, hook);
  hook.ifindex = ifindex;
  hook.attach_point = dir == "egress" ? BPF_TC_EGRESS : BPF_TC_INGRESS;
  int r = bpf_tc_hook_create(&hook);
  bool created = r == 0;
  if (r != 0 && r != -EEXIST) ThrowBpf(env, -r, "create clsact qdisc", target, "on ifindex " + std::to_string(ifindex));
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.prog_fd = progFd;
  opts.handle = static_cast<__u32>(handle);
  opts.priority = static_cast<__u32>(priority);
  r = bpf_tc_attach(&hook, &opts);
  if (r != 0)
    ThrowBpf(env, -r, "attach tc " + dir, target,
             "on ifindex " + std::to_string(ifindex) + " handle " + std::to_string(handle) + " priority " + std::to_string(priority) +
                 (r == -EEXIST ? " (a filter is already there; it is not replaced)" : ""));
  Napi::Object o = Napi::Object::New(env);
  o.Set("createdQdisc", created);
  return o;
}

// tcHookDestroy(ifindex, target): deletes the clsact qdisc (and every filter on it). Callers
// make sure it is theirs and empty first.
static Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LIBBPF_OPTS(bpf_tc_hook, hook);
  hook.ifindex = ArgInt(info, 0);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  int r = bpf_tc_hook_destroy(&hook);
  if (r != 0 && r != -ENOENT && r != -EINVAL) ThrowBpf(env, -r, "delete clsact qdisc", OptStr(info, 1));
  return env.Undefined();
}

// linkDetachAsync(linkFd, target) -> Promise<void>: bpf_link_detach on a pool thread. A tcx link
// detach waits for an RCU grace period under rtnl_lock (like attach); the event loop must not.
// The caller keeps the fd open until the promise settles (then closes it).
class LinkDetachWork : public Napi::AsyncWorker {
 public:
  LinkDetachWork(Napi::Env env, int fd, std::string target)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), target_(std::move(target)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    if (bpf_link_detach(fd_) != 0) err_ = errno;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == 0) return deferred_.Resolve(env.Undefined());
    try {
      ThrowBpf(env, err_, "detach", target_);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  std::string target_;
  int err_ = 0;
};

static Napi::Value LinkDetachAsync(const Napi::CallbackInfo& info) {
  auto* w = new LinkDetachWork(info.Env(), ArgInt(info, 0), OptStr(info, 1));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

void InitTcx(Napi::Env env, Napi::Object exports) {
  exports.Set("linkDetachAsync", Napi::Function::New(env, LinkDetachAsync));
  exports.Set("tcAttachLegacyAt", Napi::Function::New(env, TcAttachLegacyAt));
  exports.Set("tcHookDestroy", Napi::Function::New(env, TcHookDestroy));
  exports.Set("linkTcxAtAsync", Napi::Function::New(env, LinkTcxAtAsync));
  exports.Set("linkTcxAt", Napi::Function::New(env, LinkTcxAt));
  exports.Set("tcxQuery", Napi::Function::New(env, TcxQuery));
}

}  // namespace shunt
