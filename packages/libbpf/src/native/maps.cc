// Map element operations on a map fd. Sizes are checked on the TS side (it knows the map's
// key/value sizes) before any of these run; here we only talk to the kernel.
#include "common.h"

#include <cerrno>
#include <vector>

namespace shunt {

// mapLookup(fd, key, valueBytes, target) -> Buffer | null
static Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  auto key = ArgBuf(info, 1);
  int valueBytes = ArgInt(info, 2);
  std::string target = OptStr(info, 3);
  auto value = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(valueBytes));
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowBpf(env, errno, "lookup", target);
  }
  return value;
}

static Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  auto key = ArgBuf(info, 1);
  auto value = ArgBuf(info, 2);
  int flags = ArgInt(info, 3);
  std::string target = OptStr(info, 4);
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), static_cast<__u64>(flags)) != 0) {
    int err = errno;
    std::string why;
    if (err == EEXIST) why = "key exists and flag is 'noexist'";
    else if (err == ENOENT) why = "key missing and flag is 'exist'";
    else if (err == E2BIG) why = "map is full";
    ThrowBpf(env, err, "update", target, why);
  }
  return env.Undefined();
}

// -> true when deleted, false when the key was not there.
static Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  auto key = ArgBuf(info, 1);
  std::string target = OptStr(info, 2);
  if (bpf_map_delete_elem(fd, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowBpf(env, errno, "delete", target);
  }
  return Napi::Boolean::New(env, true);
}

// mapKeys(fd, keySize, limit, target) -> Buffer[]; bounded by limit because a map that
// changes under us (hash deletes restart iteration) must not loop forever.
static Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  size_t keySize = static_cast<size_t>(ArgInt(info, 1));
  int limit = ArgInt(info, 2);
  std::string target = OptStr(info, 3);
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> cur(keySize), next(keySize);
  const void* prev = nullptr;
  for (int n = 0; n < limit; n++) {
    if (bpf_map_get_next_key(fd, prev, next.data()) != 0) {
      if (errno == ENOENT) break;
      ThrowBpf(env, errno, "get_next_key", target);
    }
    out.Set(static_cast<uint32_t>(n), Napi::Buffer<uint8_t>::Copy(env, next.data(), keySize));
    cur.swap(next);
    prev = cur.data();
  }
  return out;
}

// One walk over a map with bpf_map_lookup_batch, shared by mapLookupBatch and mapCount: the
// in/out batch tokens (opaque, at least key-sized: hash maps use a bucket index) and whether
// this is the first round. Round() returns 0 or the call's errno (ENOENT: the walk is done, with
// *count holding the last elements); only a successful round moves the cursor on, so a round
// that failed (ENOSPC with nothing copied) can be retried from the same place.
class BatchWalk {
 public:
  explicit BatchWalk(size_t keySize) : in_(keySize < 8 ? 8 : keySize), out_(in_.size()) {}

  int Round(int fd, void* keys, void* values, __u32* count) {
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (bpf_map_lookup_batch(fd, first_ ? nullptr : in_.data(), out_.data(), keys, values, count, &opts) != 0) return errno;
    in_.swap(out_);
    first_ = false;
    return 0;
  }

 private:
  std::vector<uint8_t> in_, out_;
  bool first_ = true;
};

// mapLookupBatch(fd, keySize, valueBytes, maxEntries, target) -> {keys: Buffer, values: Buffer, count}
static Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  size_t keySize = static_cast<size_t>(ArgInt(info, 1));
  size_t valueBytes = static_cast<size_t>(ArgInt(info, 2));
  __u32 maxEntries = static_cast<__u32>(ArgInt(info, 3));
  std::string target = OptStr(info, 4);
  std::vector<uint8_t> keys(keySize * maxEntries), values(valueBytes * maxEntries);
  BatchWalk walk(keySize);
  __u32 total = 0;
  // Each round returns at least one element or ENOENT, so maxEntries+1 rounds suffice.
  for (__u32 round = 0; round <= maxEntries && total < maxEntries; round++) {
    __u32 count = maxEntries - total;
    int err = walk.Round(fd, keys.data() + total * keySize, values.data() + total * valueBytes, &count);
    if (err != 0 && err != ENOENT) ThrowBpf(env, err, "lookup_batch", target);
    total += count;
    if (err != 0) break;  // ENOENT: walked the whole map
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), total * keySize));
  o.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), total * valueBytes));
  o.Set("count", total);
  return o;
}

// mapCount(fd, keySize, valueBytes, limit, chunk, target) -> number of entries (chunk 0: no batch ops). Counting needs no
// key or value on the JS side: the kernel's answers land in one small buffer reused per chunk
// (batch types), or the next key is asked for one at a time (LPM tries, sockhash), so a scrape's
// count of a 100,000-entry map allocates nothing that outlives the call (no per-entry Buffers,
// no maxEntries-sized copies). Bounded by limit (a map changing under us must not loop forever).
static Napi::Value MapCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  size_t keySize = static_cast<size_t>(ArgInt(info, 1));
  size_t valueBytes = static_cast<size_t>(ArgInt(info, 2));
  __u32 limit = static_cast<__u32>(ArgInt(info, 3));
  __u32 chunk = static_cast<__u32>(ArgInt(info, 4));
  std::string target = OptStr(info, 5);
  __u32 total = 0;
  if (chunk > 0) {
    // A hash bucket larger than the chunk gives ENOSPC with nothing copied: grow and retry it.
    if (chunk > limit) chunk = limit == 0 ? 1 : limit;
    std::vector<uint8_t> keys(keySize * chunk), values(valueBytes * chunk);
    BatchWalk walk(keySize);
    for (__u32 round = 0; round <= limit && total < limit; round++) {
      __u32 count = chunk;
      int err = walk.Round(fd, keys.data(), values.data(), &count);
      if (err == ENOSPC && count == 0 && chunk < limit) {
        chunk = chunk * 4 < limit ? chunk * 4 : limit;
        keys.resize(keySize * chunk);
        values.resize(valueBytes * chunk);
        continue;
      }
      if (err != 0 && err != ENOENT) ThrowBpf(env, err, "lookup_batch", target);
      total += count;
      if (err != 0) break;  // ENOENT: walked the whole map
    }
    return Napi::Number::New(env, total > limit ? limit : total);
  }
  std::vector<uint8_t> cur(keySize), next(keySize);
  const void* prev = nullptr;
  for (; total < limit; total++) {
    if (bpf_map_get_next_key(fd, prev, next.data()) != 0) {
      if (errno == ENOENT) break;
      ThrowBpf(env, errno, "get_next_key", target);
    }
    cur.swap(next);
    prev = cur.data();
  }
  return Napi::Number::New(env, total);
}

// mapUpdateBatch(fd, keys, values, count, flags, target) -> number updated
static Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  auto keys = ArgBuf(info, 1);
  auto values = ArgBuf(info, 2);
  __u32 count = static_cast<__u32>(ArgInt(info, 3));
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  opts.elem_flags = static_cast<__u64>(ArgInt(info, 4));
  std::string target = OptStr(info, 5);
  if (bpf_map_update_batch(fd, keys.Data(), values.Data(), &count, &opts) != 0)
    ThrowBpf(env, errno, "update_batch", target, std::to_string(count) + " elements written before the failure");
  return Napi::Number::New(env, count);
}

// mapDeleteBatch(fd, keys, count, target) -> number deleted
static Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  auto keys = ArgBuf(info, 1);
  __u32 count = static_cast<__u32>(ArgInt(info, 2));
  std::string target = OptStr(info, 3);
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  if (bpf_map_delete_batch(fd, keys.Data(), &count, &opts) != 0)
    ThrowBpf(env, errno, "delete_batch", target, std::to_string(count) + " elements deleted before the failure");
  return Napi::Number::New(env, count);
}

// mapInfo / progInfo (fd, target): the kernel's info struct of the object behind fd.
template <typename Info>
static Info InfoByFd(const Napi::CallbackInfo& info, int (*get)(int, Info*, __u32*), const char* op) {
  int fd = ArgInt(info, 0);
  std::string target = OptStr(info, 1);
  Info out = {};
  __u32 len = sizeof(out);
  if (get(fd, &out, &len) != 0) ThrowBpf(info.Env(), errno, op, target);
  return out;
}

static Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map_info mi = InfoByFd<bpf_map_info>(info, bpf_map_get_info_by_fd, "map_get_info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", MapTypeName(static_cast<int>(mi.type)));
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  o.Set("btfId", mi.btf_id);
  return o;
}

static Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_prog_info pi = InfoByFd<bpf_prog_info>(info, bpf_prog_get_info_by_fd, "prog_get_info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", ProgTypeName(static_cast<int>(pi.type)));
  return o;
}

// objPin(fd, path, target): pins any bpf fd (map, program, link).
static Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  std::string path = ArgStr(info, 1);
  std::string target = OptStr(info, 2);
  if (bpf_obj_pin(fd, path.c_str()) != 0) ThrowBpf(env, errno, "pin", target, "at " + path);
  return env.Undefined();
}

// objGet(path) -> fd handle; objType(fd) tells what the pin holds.
static Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgStr(info, 0);
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowBpf(env, errno, "open pin", path);
  return WrapFd(env, fd);
}

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("mapLookupBatch", Napi::Function::New(env, MapLookupBatch));
  exports.Set("mapCount", Napi::Function::New(env, MapCount));
  exports.Set("mapUpdateBatch", Napi::Function::New(env, MapUpdateBatch));
  exports.Set("mapDeleteBatch", Napi::Function::New(env, MapDeleteBatch));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
}

}  // namespace shunt
