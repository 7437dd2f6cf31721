// Taking a file descriptor out of another process (pidfd_open + pidfd_getfd, kernel 5.6+):
// how the agent gets the proxy's listening socket to put into a sockmap, since the
// proxy is a separate process that will not hand it over itself.
#include "common.h"

#include <cerrno>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace shunt {

static std::string Hint(int err) {
  switch (err) {
    case ESRCH: return "the process does not exist";
    case EBADF: return "the process has no such open fd";
    case EPERM: return "needs ptrace access to the process (root or CAP_SYS_PTRACE)";
    case ENOSYS: return "the kernel has no pidfd_open/pidfd_getfd (needs >= 5.6)";
    default: return "";
  }
}

// pidfdGetfd(pid, targetFd) -> a new fd in this process for the same open file
// (close-on-exec). The caller owns it.
static Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid = ArgInt(info, 0);
  int targetFd = ArgInt(info, 1);
  std::string target = "fd " + std::to_string(targetFd) + " of pid " + std::to_string(pid);
  if (pid <= 0) ThrowArg(env, "pidfd_getfd", target, "pid must be a positive integer");
  if (targetFd < 0) ThrowArg(env, "pidfd_getfd", target, "fd must be a non-negative integer");
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int err = errno;
    ThrowBpf(env, err, "pidfd_open", target, Hint(err));
  }
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, targetFd, 0));
  int err = errno;
  close(pidfd);
  if (fd < 0) ThrowBpf(env, err, "pidfd_getfd", target, Hint(err));
  return Napi::Number::New(env, fd);
}

void InitPidfd(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd));
}

}  // namespace shunt
