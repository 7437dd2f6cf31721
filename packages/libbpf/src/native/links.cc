// Attaching programs. Everything that can be a bpf_link is one (cgroup, sk_msg, tcx, netns), so
// it can be pinned and adopted; legacy attachments (cls_bpf filters, prog_attach on a
// sockmap for kernels without sockmap links) are returned as plain descriptions the TS
// side detaches explicitly.
#include "common.h"

#include <cerrno>
#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

namespace shunt {

static bpf_attach_type AttachTypeArg(const Napi::CallbackInfo& info, size_t i, const std::string& target) {
  std::string name = ArgStr(info, i);
  bpf_attach_type t;
  if (!AttachTypeFromName(name, &t)) ThrowArg(info.Env(), "attach", target, "unknown attach type '" + name + "'");
  return t;
}

// linkCgroup(progFd, cgroupPath, attachType, target) -> fd handle
static Napi::Value LinkCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  std::string cgroup = ArgStr(info, 1);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = AttachTypeArg(info, 2, target);
  int cgFd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgFd < 0) ThrowBpf(env, errno, "attach " + AttachTypeName(type), target, "cannot open cgroup " + cgroup);
  int link = bpf_link_create(progFd, cgFd, type, nullptr);
  int err = errno;
  close(cgFd);
  if (link < 0) {
    std::string hint = "to cgroup " + cgroup;
    if (err == EPERM) hint += " (a legacy non-multi attachment of this type may already be on the cgroup)";
    ThrowBpf(env, err, "attach " + AttachTypeName(type), target, hint);
  }
  return WrapFd(env, link);
}

// linkMap(progFd, mapFd, attachType, target) -> fd handle (sk_msg / sk_skb verdicts)
static Napi::Value LinkMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int mapFd = ArgInt(info, 1);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = AttachTypeArg(info, 2, target);
  int link = bpf_link_create(progFd, mapFd, type, nullptr);
  if (link < 0) ThrowBpf(env, errno, "attach " + AttachTypeName(type), target);
  return WrapFd(env, link);
}

// progAttachLegacy(progFd, targetFd, attachType, target): bpf_prog_attach without a link.
static Napi::Value ProgAttachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int targetFd = ArgInt(info, 1);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = AttachTypeArg(info, 2, target);
  if (bpf_prog_attach(progFd, targetFd, type, 0) != 0) ThrowBpf(env, errno, "prog_attach " + AttachTypeName(type), target);
  return env.Undefined();
}

static Napi::Value ProgDetachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int targetFd = ArgInt(info, 1);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = AttachTypeArg(info, 2, target);
  if (bpf_prog_detach2(progFd, targetFd, type) != 0) ThrowBpf(env, errno, "prog_detach " + AttachTypeName(type), target);
  return env.Undefined();
}

// linkTcx(progFd, ifindex, 'ingress'|'egress', target) -> fd handle. Uses bpf_link_create
// directly so a program from a plain SEC("tc") can go on either side (libbpf's
// bpf_program__attach_tcx takes the direction from the section name).
static Napi::Value LinkTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int ifindex = ArgInt(info, 1);
  std::string dir = ArgStr(info, 2);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = dir == "egress" ? BPF_TCX_EGRESS : BPF_TCX_INGRESS;
  LIBBPF_OPTS(bpf_link_create_opts, opts);
  int link = bpf_link_create(progFd, ifindex, type, &opts);
  if (link < 0) ThrowBpf(env, errno, "attach tcx " + dir, target, "on ifindex " + std::to_string(ifindex));
  return WrapFd(env, link);
}

// linkNetns(progFd, netnsPath, attachType, target) -> fd handle. The same kernel call as
// bpf_program__attach_netns (a netns bpf_link on an fd of the netns), taking a program fd
// so programs adopted from a pin attach the same way. sk_lookup and flow_dissector only.
static Napi::Value LinkNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  std::string netns = ArgStr(info, 1);
  std::string target = OptStr(info, 3);
  bpf_attach_type type = AttachTypeArg(info, 2, target);
  int nsFd = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsFd < 0) ThrowBpf(env, errno, "attach " + AttachTypeName(type), target, "cannot open netns " + netns);
  int link = bpf_link_create(progFd, nsFd, type, nullptr);
  int err = errno;
  close(nsFd);
  if (link < 0) {
    std::string hint = "to netns " + netns;
    if (err == EINVAL) hint += " (is the path a network namespace?)";
    if (err == EEXIST) hint += " (a flow_dissector is already attached there or to the root netns)";
    ThrowBpf(env, err, "attach " + AttachTypeName(type), target, hint);
  }
  return WrapFd(env, link);
}

static bpf_tc_attach_point TcPoint(const std::string& dir) {
  return dir == "egress" ? BPF_TC_EGRESS : BPF_TC_INGRESS;
}

// tcAttachLegacy(progFd, ifindex, dir, target) -> {handle, priority, createdQdisc}
static Napi::Value TcAttachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgInt(info, 0);
  int ifindex = ArgInt(info, 1);
  std::string dir = ArgStr(info, 2);
  std::string target = OptStr(info, 3);
  LIBBPF_OPTS(bpf_tc_hook, hook);
  hook.ifindex = ifindex;
  hook.attach_point = TcPoint(dir);
  int r = bpf_tc_hook_create(&hook);
  bool created = r == 0;
  if (r != 0 && r != -EEXIST) ThrowBpf(env, -r, "create clsact qdisc", target, "on ifindex " + std::to_string(ifindex));
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.prog_fd = progFd;
  r = bpf_tc_attach(&hook, &opts);
  if (r != 0) ThrowBpf(env, -r, "attach tc " + dir, target, "on ifindex " + std::to_string(ifindex));
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", opts.handle);
  o.Set("priority", opts.priority);
  o.Set("createdQdisc", created);
  return o;
}

// tcDetachLegacy(ifindex, dir, handle, priority, target)
static Napi::Value TcDetachLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ifindex = ArgInt(info, 0);
  std::string dir = ArgStr(info, 1);
  int handle = ArgInt(info, 2);
  int priority = ArgInt(info, 3);
  std::string target = OptStr(info, 4);
  LIBBPF_OPTS(bpf_tc_hook, hook);
  hook.ifindex = ifindex;
  hook.attach_point = TcPoint(dir);
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.handle = static_cast<__u32>(handle);
  opts.priority = static_cast<__u32>(priority);
  int r = bpf_tc_detach(&hook, &opts);
  if (r != 0) ThrowBpf(env, -r, "detach tc " + dir, target, "on ifindex " + std::to_string(ifindex));
  return env.Undefined();
}

// tcQueryLegacy(ifindex, dir, handle, priority) -> prog id or 0 when the filter is gone.
static Napi::Value TcQueryLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LIBBPF_OPTS(bpf_tc_hook, hook);
  hook.ifindex = ArgInt(info, 0);
  hook.attach_point = TcPoint(ArgStr(info, 1));
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.handle = static_cast<__u32>(ArgInt(info, 2));
  opts.priority = static_cast<__u32>(ArgInt(info, 3));
  int r = bpf_tc_query(&hook, &opts);
  if (r == -ENOENT || r == -EINVAL) return Napi::Number::New(env, 0);
  if (r != 0) ThrowBpf(env, -r, "query tc", OptStr(info, 4));
  return Napi::Number::New(env, opts.prog_id);
}

static Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  std::string target = OptStr(info, 1);
  if (bpf_link_detach(fd) != 0) ThrowBpf(env, errno, "detach", target);
  return env.Undefined();
}

static Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  std::string target = OptStr(info, 1);
  bpf_link_info li = {};
  __u32 len = sizeof(li);
  if (bpf_link_get_info_by_fd(fd, &li, &len) != 0) ThrowBpf(env, errno, "link_get_info", target);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", LinkTypeName(static_cast<int>(li.type)));
  o.Set("progId", li.prog_id);
  switch (li.type) {
    case BPF_LINK_TYPE_CGROUP:
      o.Set("attachType", AttachTypeName(static_cast<int>(li.cgroup.attach_type)));
      o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(li.cgroup.cgroup_id)));
      break;
    case BPF_LINK_TYPE_TCX:
      o.Set("attachType", AttachTypeName(static_cast<int>(li.tcx.attach_type)));
      o.Set("ifindex", li.tcx.ifindex);
      break;
    case BPF_LINK_TYPE_SOCKMAP:
      o.Set("attachType", AttachTypeName(static_cast<int>(li.sockmap.attach_type)));
      o.Set("mapId", li.sockmap.map_id);
      break;
    case BPF_LINK_TYPE_NETNS:
      o.Set("attachType", AttachTypeName(static_cast<int>(li.netns.attach_type)));
      // 0 once the netns is gone: the link is then defunct, nothing runs.
      o.Set("netnsIno", li.netns.netns_ino);
      break;
    default:
      break;
  }
  return o;
}

static Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgStr(info, 0);
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) ThrowBpf(env, errno, "find interface", name, OptStr(info, 1));
  return Napi::Number::New(env, idx);
}

void InitLinks(Napi::Env env, Napi::Object exports) {
  exports.Set("linkCgroup", Napi::Function::New(env, LinkCgroup));
  exports.Set("linkMap", Napi::Function::New(env, LinkMap));
  exports.Set("progAttachLegacy", Napi::Function::New(env, ProgAttachLegacy));
  exports.Set("progDetachLegacy", Napi::Function::New(env, ProgDetachLegacy));
  exports.Set("linkTcx", Napi::Function::New(env, LinkTcx));
  exports.Set("linkNetns", Napi::Function::New(env, LinkNetns));
  exports.Set("tcAttachLegacy", Napi::Function::New(env, TcAttachLegacy));
  exports.Set("tcDetachLegacy", Napi::Function::New(env, TcDetachLegacy));
  exports.Set("tcQueryLegacy", Napi::Function::New(env, TcQueryLegacy));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
}

}  // namespace shunt
