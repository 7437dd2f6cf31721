// bpf_object lifecycle: open + load (reusing pinned maps), enumerate programs and maps,
// close explicitly or when the JS handle is collected.
#include "common.h"

#include <bpf/btf.h>
#include <cerrno>
#include <csignal>
#include <pthread.h>

namespace shunt {

struct ObjectHandle {
  bpf_object* obj;
  std::string path;
};

static ObjectHandle* UnwrapObject(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected an object handle");
  ObjectHandle* h = v.As<Napi::External<ObjectHandle>>().Data();
  if (!h->obj) ThrowBpf(v.Env(), EBADF, "use", h->path, "the object is closed");
  return h;
}

// Pulls "-- BEGIN PROG LOAD LOG --" ... "-- END PROG LOAD LOG --" out of libbpf's output,
// and the name of the program libbpf reports as failing.
static void ParseLoadFailure(const std::string& log, std::string* prog, std::string* verifier) {
  const std::string begin = "-- BEGIN PROG LOAD LOG --", end = "-- END PROG LOAD LOG --";
  size_t b = log.find(begin);
  if (b != std::string::npos) {
    size_t start = log.find('\n', b);
    size_t e = log.find(end, b);
    if (start != std::string::npos && e != std::string::npos && e > start) *verifier = log.substr(start + 1, e - start - 1);
  }
  const std::string marker = "prog '";
  size_t p = log.find(marker);
  while (p != std::string::npos) {
    size_t q = log.find('\'', p + marker.size());
    if (q == std::string::npos) break;
    *prog = log.substr(p + marker.size(), q - p - marker.size());
    if (log.compare(q, 20, "': failed to load: ") == 0 || log.compare(q, 12, "': BPF progr") == 0 ||
        log.find("failed to load", q) != std::string::npos)
      break;
    p = log.find(marker, q);
  }
}

// The last few lines libbpf printed: the "what went wrong" for non-verifier failures
// (BTF mismatch, pinned map incompatible, ELF format...).
static std::string Tail(const std::string& log, size_t lines) {
  size_t pos = log.size();
  size_t count = 0;
  while (pos > 0 && count <= lines) {
    pos = log.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    count++;
  }
  // One line per libbpf message, without the "libbpf: " prefix, joined with "; ".
  std::string out;
  size_t start = pos;
  while (start < log.size()) {
    size_t nl = log.find('\n', start);
    std::string line = log.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? log.size() : nl + 1;
    if (line.rfind("libbpf: ", 0) == 0) line.erase(0, 8);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.erase(0, 1);
    if (line.empty()) continue;
    if (!out.empty()) out += "; ";
    out += line;
  }
  return out;
}

// openObject(path, pinRoot?) -> External<ObjectHandle>
static Napi::Value OpenObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  std::string pinRoot = OptStr(info, 1);
  LogCapture capture;

  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (!pinRoot.empty()) opts.pin_root_path = pinRoot.c_str();
  errno = 0;
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (!obj) {
    int err = errno;
    ThrowBpf(env, err, "open", path, Tail(capture.text(), 3));
  }

  // Without a pin root libbpf would pin "pinning" maps straight under /sys/fs/bpf, where
  // nothing would ever clean them up: make the caller choose a directory.
  if (pinRoot.empty()) {
    bpf_map* m;
    bpf_object__for_each_map(m, obj) {
      if (bpf_map__pin_path(m)) {
        std::string name = bpf_map__name(m);
        bpf_object__close(obj);
        ThrowBpf(env, EINVAL, "open", path,
                 "map '" + name + "' is declared with LIBBPF_PIN_BY_NAME; pass pinMaps: <bpffs directory>");
      }
    }
  }

  // Map sizes chosen at run time (e.g. from the agent's maxPods) replace the compiled-in ones;
  // a map reused from a pin keeps the pinned size (libbpf refuses a mismatch: the caller sizes
  // from the pin when one exists).
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object sizes = info[2].As<Napi::Object>();
    bpf_map* m;
    bpf_object__for_each_map(m, obj) {
      const char* name = bpf_map__name(m);
      if (!sizes.Has(name)) continue;
      Napi::Value v = sizes.Get(name);
      if (!v.IsNumber()) {
        bpf_object__close(obj);
        ThrowArg(env, "open", path, std::string("max entries of map '") + name + "' must be a number");
      }
      int r = bpf_map__set_max_entries(m, v.As<Napi::Number>().Uint32Value());
      if (r) {
        bpf_object__close(obj);
        ThrowBpf(env, -r, "set max entries", path + " map " + name);
      }
    }
  }

  // The verifier stops with EAGAIN when a signal is pending for this thread (a profiler's SIGPROF
  // every millisecond makes a large program fail every time): hold signals back during the load;
  // they are delivered when the mask is restored.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(obj);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err) {
    std::string log = capture.text();
    std::string prog, verifier;
    ParseLoadFailure(log, &prog, &verifier);
    bpf_object__close(obj);
    std::string target = prog.empty() ? path : path + " program " + prog;
    std::string detail = verifier.empty() ? Tail(log, 4) : "the verifier rejected the program";
    ThrowBpf(env, -err, "load", target, detail, verifier);
  }

  auto* h = new ObjectHandle{obj, path};
  return Napi::External<ObjectHandle>::New(env, h, [](Napi::Env, ObjectHandle* p) {
    if (p->obj) bpf_object__close(p->obj);
    delete p;
  });
}

static Napi::Value CloseObject(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "expected an object handle");
  ObjectHandle* h = info[0].As<Napi::External<ObjectHandle>>().Data();
  if (h->obj) {
    bpf_object__close(h->obj);
    h->obj = nullptr;
  }
  return info.Env().Undefined();
}

static std::string BtfTypeName(const btf* b, __u32 id) {
  if (!b || id == 0) return "";
  const btf_type* t = btf__type_by_id(b, id);
  // Skip const/volatile so "const struct x" reads as "struct x"; keep typedef names.
  while (t && (btf_is_const(t) || btf_is_volatile(t) || btf_is_restrict(t))) t = btf__type_by_id(b, t->type);
  if (!t) return "";
  const char* name = btf__name_by_offset(b, t->name_off);
  std::string n = name ? name : "";
  if (btf_is_struct(t)) return "struct " + n;
  if (btf_is_union(t)) return "union " + n;
  return n;
}

static Napi::Value ObjectPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = UnwrapObject(info[0]);
  Napi::Array out = Napi::Array::New(env);
  bpf_program* p;
  uint32_t i = 0;
  bpf_object__for_each_program(p, h->obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("section", bpf_program__section_name(p));
    o.Set("type", ProgTypeName(bpf_program__type(p)));
    o.Set("expectedAttachType", AttachTypeName(bpf_program__expected_attach_type(p)));
    o.Set("fd", bpf_program__fd(p));
    out.Set(i++, o);
  }
  return out;
}

static Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = UnwrapObject(info[0]);
  const btf* b = bpf_object__btf(h->obj);
  Napi::Array out = Napi::Array::New(env);
  bpf_map* m;
  uint32_t i = 0;
  bpf_object__for_each_map(m, h->obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    o.Set("type", MapTypeName(bpf_map__type(m)));
    o.Set("keySize", bpf_map__key_size(m));
    o.Set("valueSize", bpf_map__value_size(m));
    o.Set("maxEntries", bpf_map__max_entries(m));
    o.Set("flags", bpf_map__map_flags(m));
    o.Set("fd", bpf_map__fd(m));
    o.Set("internal", bpf_map__is_internal(m));
    const char* pin = bpf_map__pin_path(m);
    if (pin) o.Set("pinPath", pin);
    o.Set("btfKeyType", BtfTypeName(b, bpf_map__btf_key_type_id(m)));
    o.Set("btfValueType", BtfTypeName(b, bpf_map__btf_value_type_id(m)));
    out.Set(i++, o);
  }
  return out;
}

void InitObject(Napi::Env env, Napi::Object exports) {
  exports.Set("openObject", Napi::Function::New(env, OpenObject));
  exports.Set("closeObject", Napi::Function::New(env, CloseObject));
  exports.Set("objectPrograms", Napi::Function::New(env, ObjectPrograms));
  exports.Set("objectMaps", Napi::Function::New(env, ObjectMaps));
}

}  // namespace shunt
