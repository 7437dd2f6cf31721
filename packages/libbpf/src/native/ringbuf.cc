// BPF ring buffer consumer on the Node event loop: libbpf's ring_buffer over a map fd, its epoll
// fd watched by a libuv poll handle, so samples reach JS as soon as the kernel writes them (no
// timer, no thread). Each wake-up drains the buffer and hands JS one array of Buffers.
#include "common.h"

#include <cerrno>
#include <uv.h>
#include <vector>

namespace shunt {

namespace {
struct RingBuf {
  ring_buffer* rb = nullptr;
  uv_poll_t* poll = nullptr;
  napi_env env = nullptr;
  Napi::FunctionReference cb;
  std::vector<std::vector<uint8_t>> pending;
};

int OnSample(void* ctx, void* data, size_t size) {
  auto* r = static_cast<RingBuf*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  r->pending.emplace_back(p, p + size);
  return 0;
}

// Drains the ring buffer and calls the JS callback once with what it held (nothing: no call).
// -> samples delivered, or -errno from libbpf.
int Deliver(RingBuf* r) {
  int n = ring_buffer__consume(r->rb);
  if (n < 0 || r->pending.empty()) return n;
  Napi::Env env(r->env);
  Napi::HandleScope scope(env);
  Napi::Array arr = Napi::Array::New(env, r->pending.size());
  for (size_t i = 0; i < r->pending.size(); i++) arr.Set(i, Napi::Buffer<uint8_t>::Copy(env, r->pending[i].data(), r->pending[i].size()));
  r->pending.clear();
  r->cb.MakeCallback(env.Global(), {arr});
  return n;
}

void OnPoll(uv_poll_t* h, int status, int) {
  auto* r = static_cast<RingBuf*>(h->data);
  if (!r || status < 0) return;
  try {
    Deliver(r);
  } catch (const Napi::Error& e) {
    // The callback threw: report it as an uncaught exception of the process, as a JS timer would.
    napi_fatal_exception(r->env, e.Value());
  }
}

void Release(RingBuf* r) {
  if (r->poll) {
    uv_poll_stop(r->poll);
    r->poll->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(r->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    r->poll = nullptr;
  }
  if (r->rb) {
    ring_buffer__free(r->rb);
    r->rb = nullptr;
  }
  r->cb.Reset();
}

RingBuf* Unwrap(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a ring buffer handle");
  return v.As<Napi::External<RingBuf>>().Data();
}
}  // namespace

// ringbufOpen(mapFd, callback(samples: Buffer[]), target) -> handle. The handle does not keep the
// process alive (unref'd); close it with ringbufClose.
static Napi::Value RingbufOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "argument 1 must be a function");
  std::string target = OptStr(info, 2);
  auto* r = new RingBuf();
  r->env = env;
  r->rb = ring_buffer__new(fd, OnSample, r, nullptr);
  if (!r->rb) {
    int err = errno;
    delete r;
    ThrowBpf(env, err, "ring_buffer__new", target);
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    ring_buffer__free(r->rb);
    delete r;
    ThrowBpf(env, EINVAL, "ring buffer poll", target, "no event loop");
  }
  r->poll = new uv_poll_t();
  int rc = uv_poll_init(loop, r->poll, ring_buffer__epoll_fd(r->rb));
  if (rc != 0) {
    delete r->poll;
    ring_buffer__free(r->rb);
    delete r;
    ThrowBpf(env, -rc, "ring buffer poll", target, uv_strerror(rc));
  }
  rc = uv_poll_start(r->poll, UV_READABLE, OnPoll);
  if (rc != 0) {
    // Registered with the loop by uv_poll_init: closed through it.
    r->poll->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(r->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    ring_buffer__free(r->rb);
    delete r;
    ThrowBpf(env, -rc, "ring buffer poll", target, uv_strerror(rc));
  }
  r->poll->data = r;
  uv_unref(reinterpret_cast<uv_handle_t*>(r->poll));
  r->cb = Napi::Persistent(info[1].As<Napi::Function>());
  return Napi::External<RingBuf>::New(env, r, [](Napi::Env, RingBuf* p) {
    Release(p);
    delete p;
  });
}

// ringbufConsume(handle) -> samples delivered now (through the callback, synchronously).
static Napi::Value RingbufConsume(const Napi::CallbackInfo& info) {
  RingBuf* r = Unwrap(info[0]);
  if (!r->rb) return Napi::Number::New(info.Env(), 0);
  int n = Deliver(r);
  if (n < 0) ThrowBpf(info.Env(), -n, "ring_buffer__consume", OptStr(info, 1));
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value RingbufClose(const Napi::CallbackInfo& info) {
  Release(Unwrap(info[0]));
  return info.Env().Undefined();
}

void InitRingbuf(Napi::Env env, Napi::Object exports) {
  exports.Set("ringbufOpen", Napi::Function::New(env, RingbufOpen));
  exports.Set("ringbufConsume", Napi::Function::New(env, RingbufConsume));
  exports.Set("ringbufClose", Napi::Function::New(env, RingbufClose));
}

}  // namespace shunt
