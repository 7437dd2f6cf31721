// Entry point of the shunt_libbpf addon: each Init* registers one area's functions.
#include "common.h"

namespace shunt {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallPrintCallback();
  InitErrors(env, exports);
  InitObject(env, exports);
  InitMaps(env, exports);
  InitLinks(env, exports);
  InitProbes(env, exports);
  InitNetns(env, exports);
  InitPidfd(env, exports);
  InitSockets(env, exports);
  InitUnix(env, exports);
  InitRtnl(env, exports);
  InitTcx(env, exports);
  InitDiag(env, exports);
  InitRingbuf(env, exports);
  exports.Set("libbpfVersion", Napi::String::New(env, std::to_string(libbpf_major_version()) + "." +
                                                           std::to_string(libbpf_minor_version())));
  exports.Set("numPossibleCpus", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                int n = libbpf_num_possible_cpus();
                if (n < 0) ThrowBpf(info.Env(), -n, "libbpf_num_possible_cpus", "/sys/devices/system/cpu/possible");
                return Napi::Number::New(info.Env(), n);
              }));
  return exports;
}

}  // namespace shunt

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return shunt::Init(env, exports); }

NODE_API_MODULE(shunt_libbpf, InitAddon)
