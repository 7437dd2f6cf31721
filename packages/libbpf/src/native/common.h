// Shared pieces of the addon: error reporting into JS (BpfError via a factory the TS side
// registers), fd ownership handles, and the libbpf log capture used for verifier logs.
#pragma once

#include <napi.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <string>

#if LIBBPF_MAJOR_VERSION < 1 || (LIBBPF_MAJOR_VERSION == 1 && LIBBPF_MINOR_VERSION < 3)
#error "@shunt/libbpf needs libbpf >= 1.3 (tcx attach); install libbpf-dev from bookworm-backports"
#endif

namespace shunt {

// Throws the registered BpfError (or a plain Error before registration).
// err is a positive errno (or libbpf's 4000+ codes).
[[noreturn]] void ThrowBpf(Napi::Env env, int err, const std::string& op, const std::string& target,
                           const std::string& detail = "", const std::string& verifierLog = "");
// For errors that are not errno-shaped (bad arguments from JS).
[[noreturn]] void ThrowArg(Napi::Env env, const std::string& op, const std::string& target,
                           const std::string& detail);
std::string ErrnoName(int err);

// libbpf's print callback appends here while a capture is active.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string text() const;
};
void InstallPrintCallback();

// An owned file descriptor that JS holds as an External; closed explicitly or on GC.
struct FdHandle {
  int fd;
};
Napi::Value WrapFd(Napi::Env env, int fd);
FdHandle* UnwrapFd(const Napi::Value& v);

// Argument helpers.
int ArgInt(const Napi::CallbackInfo& info, size_t i);
std::string ArgStr(const Napi::CallbackInfo& info, size_t i);
std::string OptStr(const Napi::CallbackInfo& info, size_t i);  // "" if missing/undefined
Napi::Buffer<uint8_t> ArgBuf(const Napi::CallbackInfo& info, size_t i);

// name <-> enum via libbpf's own string tables (libbpf_bpf_*_type_str).
bool ProgTypeFromName(const std::string& name, bpf_prog_type* out);
bool MapTypeFromName(const std::string& name, bpf_map_type* out);
bool AttachTypeFromName(const std::string& name, bpf_attach_type* out);
std::string ProgTypeName(int t);
std::string MapTypeName(int t);
std::string AttachTypeName(int t);
std::string LinkTypeName(int t);

void InitErrors(Napi::Env env, Napi::Object exports);
void InitObject(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitLinks(Napi::Env env, Napi::Object exports);
void InitProbes(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitPidfd(Napi::Env env, Napi::Object exports);
void InitSockets(Napi::Env env, Napi::Object exports);
void InitUnix(Napi::Env env, Napi::Object exports);
void InitRtnl(Napi::Env env, Napi::Object exports);
void InitTcx(Napi::Env env, Napi::Object exports);
void InitDiag(Napi::Env env, Napi::Object exports);
void InitRingbuf(Napi::Env env, Napi::Object exports);

}  // namespace shunt
