// Feature probes: ask the running kernel (load a tiny program, create a tiny map, try an
// attach) instead of trusting its version. Each answer carries the evidence it rests on.
#include "common.h"

#include <bpf/btf.h>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace shunt {

static Napi::Value Answer(Napi::Env env, bool available, const std::string& evidence) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", available);
  o.Set("evidence", evidence);
  return o;
}

static std::string Result(int r) {
  if (r == 1) return "supported";
  if (r == 0) return "not supported";
  return ErrnoName(-r);
}

static Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgStr(info, 0);
  bpf_prog_type t;
  if (!ProgTypeFromName(name, &t))
    return Answer(env, false, "libbpf " + std::to_string(libbpf_major_version()) + "." +
                                  std::to_string(libbpf_minor_version()) + " has no program type '" + name + "'");
  int r = libbpf_probe_bpf_prog_type(t, nullptr);
  return Answer(env, r == 1, "libbpf_probe_bpf_prog_type(" + name + "): " + Result(r));
}

static Napi::Value ProbeMapType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgStr(info, 0);
  bpf_map_type t;
  if (!MapTypeFromName(name, &t)) return Answer(env, false, "libbpf has no map type '" + name + "'");
  int r = libbpf_probe_bpf_map_type(t, nullptr);
  return Answer(env, r == 1, "libbpf_probe_bpf_map_type(" + name + "): " + Result(r));
}

// Helper ids come from the kernel's own BTF (enum bpf_func_id), so helpers newer than
// the UAPI headers we were built with are still found.
static bool HelperId(const std::string& helper, int* id, std::string* why) {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) {
    *why = "cannot read kernel BTF: " + ErrnoName(errno);
    return false;
  }
  bool found = false;
  std::string want = "BPF_FUNC_" + helper;
  __s32 enumId = btf__find_by_name_kind(vmlinux, "bpf_func_id", BTF_KIND_ENUM);
  if (enumId > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, static_cast<__u32>(enumId));
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); i++, e++) {
      const char* n = btf__name_by_offset(vmlinux, e->name_off);
      if (n && want == n) {
        *id = e->val;
        found = true;
        break;
      }
    }
    if (!found) *why = "kernel BTF enum bpf_func_id has no " + want;
  } else {
    *why = "kernel BTF has no enum bpf_func_id";
  }
  btf__free(vmlinux);
  return found;
}

// Some program types refuse to load at all without a matching expected_attach_type.
static bpf_attach_type DefaultAttachType(bpf_prog_type t) {
  switch (t) {
    case BPF_PROG_TYPE_CGROUP_SOCK_ADDR: return BPF_CGROUP_INET4_CONNECT;
    case BPF_PROG_TYPE_CGROUP_SOCKOPT: return BPF_CGROUP_GETSOCKOPT;
    case BPF_PROG_TYPE_CGROUP_SOCK: return BPF_CGROUP_INET_SOCK_CREATE;
    case BPF_PROG_TYPE_SK_LOOKUP: return BPF_SK_LOOKUP;
    case BPF_PROG_TYPE_SK_MSG: return BPF_SK_MSG_VERDICT;
    case BPF_PROG_TYPE_SOCK_OPS: return BPF_CGROUP_SOCK_OPS;
    default: return static_cast<bpf_attach_type>(0);
  }
}

// Our own helper probe instead of libbpf_probe_bpf_helper: libbpf 1.4 recognises only
// the "unknown func"/"invalid func" verifier messages, while newer kernels say "program
// of this type cannot use helper", which libbpf then reports as supported. Load
// "call helper; exit" and read the verifier's verdict on the call itself: any later
// complaint (argument types, return range) means the call was allowed.
static Napi::Value ProbeHelper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string progName = ArgStr(info, 0);
  std::string helper = ArgStr(info, 1);
  if (helper.rfind("bpf_", 0) == 0) helper = helper.substr(4);
  bpf_prog_type t;
  if (!ProgTypeFromName(progName, &t)) return Answer(env, false, "libbpf has no program type '" + progName + "'");
  int id = 0;
  std::string why;
  if (!HelperId(helper, &id, &why)) return Answer(env, false, why);
  std::string call = "bpf_" + helper + " #" + std::to_string(id) + " from " + progName;

  bpf_insn insns[2] = {};
  insns[0].code = BPF_JMP | BPF_CALL;
  insns[0].imm = id;
  insns[1].code = BPF_JMP | BPF_EXIT;
  std::string log(64 * 1024, '\0');
  LIBBPF_OPTS(bpf_prog_load_opts, opts);
  opts.expected_attach_type = DefaultAttachType(t);
  opts.log_buf = log.data();
  opts.log_size = static_cast<__u32>(log.size());
  opts.log_level = 1;
  int fd = bpf_prog_load(t, nullptr, "GPL", insns, 2, &opts);
  int err = errno;
  if (fd >= 0) {
    close(fd);
    return Answer(env, true, call + ": program loaded");
  }
  log.resize(strnlen(log.data(), log.size()));
  for (const char* refusal : {"unknown func", "invalid func", "cannot use helper", "is not allowed", "not supported"}) {
    size_t at = log.find(refusal);
    if (at != std::string::npos) {
      size_t b = log.rfind('\n', at);
      size_t e = log.find('\n', at);
      std::string line = log.substr(b == std::string::npos ? 0 : b + 1, e == std::string::npos ? std::string::npos : e - (b == std::string::npos ? 0 : b + 1));
      return Answer(env, false, call + ": verifier refused the call: " + line);
    }
  }
  if (log.empty()) return Answer(env, false, call + ": load failed before verification: " + ErrnoName(err));
  // The verifier got past the call: the helper is available, the probe program is just
  // not a valid whole program (e.g. unchecked arguments).
  std::string tail;
  size_t end = log.size();
  while (end > 0) {  // last line that is not the verifier's statistics
    size_t nl = log.rfind('\n', end - 1);
    size_t start = nl == std::string::npos ? 0 : nl + 1;
    std::string line = log.substr(start, end - start);
    if (!line.empty() && line.rfind("processed ", 0) != 0 && line.rfind("verification time", 0) != 0 &&
        line.rfind("stack depth", 0) != 0) {
      tail = line;
      break;
    }
    if (nl == std::string::npos) break;
    end = nl;
  }
  return Answer(env, true, call + ": call accepted (later verifier complaint: " + tail + ")");
}

// The smallest valid program: r0 = 1; exit.
static int LoadTrivial(bpf_prog_type type, bpf_attach_type expected, bool setExpected) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].imm = 1;
  insns[1].code = BPF_JMP | BPF_EXIT;
  LIBBPF_OPTS(bpf_prog_load_opts, opts);
  if (setExpected) opts.expected_attach_type = expected;
  return bpf_prog_load(type, nullptr, "GPL", insns, 2, &opts);
}

// The kernel validates expected_attach_type at load for the program types whose attach
// types differ in context access (cgroup sock_addr, sockopt, sock...): loading with it is
// the cheapest proof that the kernel knows the hook.
static Napi::Value ProbeAttachType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string progName = ArgStr(info, 0);
  std::string attachName = ArgStr(info, 1);
  bpf_prog_type pt;
  bpf_attach_type at;
  if (!ProgTypeFromName(progName, &pt)) return Answer(env, false, "libbpf has no program type '" + progName + "'");
  if (!AttachTypeFromName(attachName, &at)) return Answer(env, false, "libbpf has no attach type '" + attachName + "'");
  int fd = LoadTrivial(pt, at, true);
  if (fd < 0) {
    int err = errno;
    return Answer(env, false,
                  "bpf_prog_load(" + progName + ", expected_attach_type=" + attachName + "): " + ErrnoName(err));
  }
  close(fd);
  return Answer(env, true, "bpf_prog_load(" + progName + ", expected_attach_type=" + attachName + "): ok");
}

// tcx: create a link towards ifindex 0. A kernel with tcx looks the device up and says
// ENODEV; one without rejects the attach type itself with EINVAL. Nothing gets attached.
static Napi::Value ProbeTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = LoadTrivial(BPF_PROG_TYPE_SCHED_CLS, BPF_CGROUP_INET_INGRESS, false);
  if (prog < 0) return Answer(env, false, "cannot load a sched_cls program: " + ErrnoName(errno));
  int link = bpf_link_create(prog, 0, BPF_TCX_INGRESS, nullptr);
  int err = errno;
  close(prog);
  if (link >= 0) {
    close(link);
    return Answer(env, true, "bpf_link_create(tcx_ingress, ifindex 0) unexpectedly succeeded");
  }
  bool ok = err == ENODEV;
  return Answer(env, ok,
                "bpf_link_create(sched_cls, ifindex 0, tcx_ingress): " + ErrnoName(err) +
                    (ok ? " (the kernel knows tcx and looked for the device)" : " (the kernel rejects the tcx attach type)"));
}

// sockmap/sockhash links (kernel 6.10+); older kernels only take bpf_prog_attach there.
static Napi::Value ProbeSockmapLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog = LoadTrivial(BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, true);
  if (prog < 0) return Answer(env, false, "cannot load an sk_msg program: " + ErrnoName(errno));
  int map = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "shunt_probe", 4, 4, 1, nullptr);
  if (map < 0) {
    int err = errno;
    close(prog);
    return Answer(env, false, "cannot create a sockhash: " + ErrnoName(err));
  }
  int link = bpf_link_create(prog, map, BPF_SK_MSG_VERDICT, nullptr);
  int err = errno;
  if (link >= 0) close(link);
  close(map);
  close(prog);
  return Answer(env, link >= 0, "bpf_link_create(sk_msg, sockhash, sk_msg_verdict): " + (link >= 0 ? std::string("ok") : ErrnoName(err)));
}

// sk_lookup steering needs three things: the program type, bpf_sk_assign from it (checked
// on the TS side with probeHelper), and netns links for it. The link is asked for on fd
// -1: a kernel with sk_lookup netns links goes looking for the netns and says EBADF,
// without anything being attached anywhere.
static Napi::Value ProbeNetnsLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string progName = ArgStr(info, 0);
  std::string attachName = ArgStr(info, 1);
  bpf_prog_type pt;
  bpf_attach_type at;
  if (!ProgTypeFromName(progName, &pt)) return Answer(env, false, "libbpf has no program type '" + progName + "'");
  if (!AttachTypeFromName(attachName, &at)) return Answer(env, false, "libbpf has no attach type '" + attachName + "'");
  int prog = LoadTrivial(pt, at, true);
  if (prog < 0) return Answer(env, false, "cannot load a " + progName + " program: " + ErrnoName(errno));
  int link = bpf_link_create(prog, -1, at, nullptr);
  int err = errno;
  close(prog);
  std::string call = "bpf_link_create(" + progName + ", netns fd -1, " + attachName + "): ";
  if (link >= 0) {
    close(link);
    return Answer(env, false, call + "unexpectedly succeeded");
  }
  bool ok = err == EBADF;
  return Answer(env, ok,
                call + ErrnoName(err) +
                    (ok ? " (the kernel takes netns links of this type and looked for the netns)"
                        : " (the kernel rejects netns links of this type)"));
}

void InitProbes(Napi::Env env, Napi::Object exports) {
  exports.Set("probeProgType", Napi::Function::New(env, ProbeProgType));
  exports.Set("probeMapType", Napi::Function::New(env, ProbeMapType));
  exports.Set("probeHelper", Napi::Function::New(env, ProbeHelper));
  exports.Set("probeAttachType", Napi::Function::New(env, ProbeAttachType));
  exports.Set("probeTcx", Napi::Function::New(env, ProbeTcx));
  exports.Set("probeSockmapLink", Napi::Function::New(env, ProbeSockmapLink));
  exports.Set("probeNetnsLink", Napi::Function::New(env, ProbeNetnsLink));
}

}  // namespace shunt
