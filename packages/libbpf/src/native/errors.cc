// Error plumbing: errno names, the BpfError factory, libbpf log capture, fd handles,
// argument helpers and enum-name tables.
#include "common.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace shunt {

static Napi::FunctionReference g_errorFactory;

std::string ErrnoName(int err) {
  if (err >= 4000 && err < 4100) {
    static const char* names[] = {"LIBBPF_ERRNO__LIBELF", "LIBBPF_ERRNO__FORMAT", "LIBBPF_ERRNO__KVERSION",
                                  "LIBBPF_ERRNO__ENDIAN", "LIBBPF_ERRNO__INTERNAL", "LIBBPF_ERRNO__RELOC",
                                  "LIBBPF_ERRNO__LOAD", "LIBBPF_ERRNO__VERIFY", "LIBBPF_ERRNO__PROG2BIG",
                                  "LIBBPF_ERRNO__KVER", "LIBBPF_ERRNO__PROGTYPE", "LIBBPF_ERRNO__WRNGPID",
                                  "LIBBPF_ERRNO__INVSEQ", "LIBBPF_ERRNO__NLPARSE"};
    size_t idx = static_cast<size_t>(err - 4000);
    if (idx < sizeof(names) / sizeof(names[0])) return names[idx];
  }
  if (err == 524) return "ENOTSUPP";  // kernel-internal, leaks out of some bpf() paths
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

static std::string Describe(int err) {
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof(buf)) == 0) return buf;
  return strerror(err);
}

void ThrowBpf(Napi::Env env, int err, const std::string& op, const std::string& target, const std::string& detail,
              const std::string& verifierLog) {
  if (err < 0) err = -err;
  if (err == 0) err = EIO;  // libbpf failed without setting errno; never report "success"
  std::string desc = Describe(err);
  if (!g_errorFactory.IsEmpty()) {
    Napi::Value e = g_errorFactory.Call(
        {Napi::Number::New(env, err), Napi::String::New(env, ErrnoName(err)), Napi::String::New(env, desc),
         Napi::String::New(env, op), Napi::String::New(env, target), Napi::String::New(env, detail),
         verifierLog.empty() ? env.Undefined() : Napi::String::New(env, verifierLog)});
    throw Napi::Error(env, e);
  }
  throw Napi::Error::New(env, op + " " + target + ": " + ErrnoName(err) + " (" + desc + ") " + detail);
}

void ThrowArg(Napi::Env env, const std::string& op, const std::string& target, const std::string& detail) {
  ThrowBpf(env, EINVAL, op, target, detail);
}

// --- libbpf log capture -------------------------------------------------------------
static int g_captureDepth = 0;
static std::string g_captured;
static bool g_debug = false;

static int PrintCallback(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (g_captureDepth > 0 && n > 0) {
    if (n >= static_cast<int>(sizeof(buf))) {
      // Long verifier logs come through in one call: format again at full length.
      std::string big(static_cast<size_t>(n) + 1, '\0');
      vsnprintf(big.data(), big.size(), fmt, args);
      big.resize(static_cast<size_t>(n));
      g_captured += big;
    } else {
      g_captured.append(buf, static_cast<size_t>(n));
    }
  }
  if (g_debug || (level == LIBBPF_WARN && getenv("SHUNT_LIBBPF_WARN"))) fputs(buf, stderr);
  return 0;
}

void InstallPrintCallback() {
  g_debug = getenv("SHUNT_LIBBPF_DEBUG") != nullptr;
  libbpf_set_print(PrintCallback);
}

LogCapture::LogCapture() {
  if (g_captureDepth++ == 0) g_captured.clear();
}
LogCapture::~LogCapture() { --g_captureDepth; }
std::string LogCapture::text() const { return g_captured; }

// --- fd handles -----------------------------------------------------------------------
Napi::Value WrapFd(Napi::Env env, int fd) {
  auto* h = new FdHandle{fd};
  return Napi::External<FdHandle>::New(env, h, [](Napi::Env, FdHandle* p) {
    if (p->fd >= 0) close(p->fd);
    delete p;
  });
}

FdHandle* UnwrapFd(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected an fd handle");
  return v.As<Napi::External<FdHandle>>().Data();
}

// --- argument helpers -------------------------------------------------------------------
int ArgInt(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}
std::string ArgStr(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}
std::string OptStr(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) return "";
  return info[i].As<Napi::String>().Utf8Value();
}
Napi::Buffer<uint8_t> ArgBuf(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsBuffer())
    throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// --- enum names ------------------------------------------------------------------------
// libbpf knows the names of every enum value it was built with; walk until it stops.
template <typename F>
static bool FindByName(const std::string& name, F str, int* out) {
  for (int t = 0; t < 256; t++) {
    const char* s = str(t);
    if (s && name == s) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool ProgTypeFromName(const std::string& name, bpf_prog_type* out) {
  int t;
  if (!FindByName(name, [](int v) { return libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(v)); }, &t)) return false;
  *out = static_cast<bpf_prog_type>(t);
  return true;
}
bool MapTypeFromName(const std::string& name, bpf_map_type* out) {
  int t;
  if (!FindByName(name, [](int v) { return libbpf_bpf_map_type_str(static_cast<bpf_map_type>(v)); }, &t)) return false;
  *out = static_cast<bpf_map_type>(t);
  return true;
}
bool AttachTypeFromName(const std::string& name, bpf_attach_type* out) {
  int t;
  if (!FindByName(name, [](int v) { return libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(v)); }, &t))
    return false;
  *out = static_cast<bpf_attach_type>(t);
  return true;
}
static std::string OrNumber(const char* s, int t) { return s ? s : "unknown(" + std::to_string(t) + ")"; }
std::string ProgTypeName(int t) { return OrNumber(libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(t)), t); }
std::string MapTypeName(int t) { return OrNumber(libbpf_bpf_map_type_str(static_cast<bpf_map_type>(t)), t); }
std::string AttachTypeName(int t) { return OrNumber(libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(t)), t); }
std::string LinkTypeName(int t) {
  const char* s = libbpf_bpf_link_type_str(static_cast<bpf_link_type>(t));
  if (s) return s;
  // Link types newer than the libbpf we were built with, named as the kernel's UAPI does.
  switch (t) {
    case BPF_LINK_TYPE_TCX: return "tcx";
    case BPF_LINK_TYPE_UPROBE_MULTI: return "uprobe_multi";
    case BPF_LINK_TYPE_NETKIT: return "netkit";
    case BPF_LINK_TYPE_SOCKMAP: return "sockmap";
    default: return OrNumber(nullptr, t);
  }
}

static Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorFactory(fn)");
  g_errorFactory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  FdHandle* h = UnwrapFd(info[0]);
  if (h->fd >= 0) {
    close(h->fd);
    h->fd = -1;
  }
  return info.Env().Undefined();
}

static Napi::Value FdOf(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), UnwrapFd(info[0])->fd);
}

// Takes its own copy of an fd (e.g. one owned by a bpf_object) so the JS wrapper's
// lifetime is independent of the object's.
static Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) ThrowBpf(info.Env(), errno, "dup", OptStr(info, 1));
  return WrapFd(info.Env(), copy);
}

void InitErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("fdOf", Napi::Function::New(env, FdOf));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
}

}  // namespace shunt
