/* Common prelude for every shunt BPF object: CO-RE types from the running kernel's BTF,
 * libbpf's helper declarations, and the few UAPI macros vmlinux.h cannot carry (it only
 * has types and enums, never #defines). */
#ifndef SHUNT_BPF_H
#define SHUNT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#ifndef TC_ACT_OK
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

/* tcx: TCX_NEXT lets the next program (or the legacy tc chain) decide, so a counting
 * program never changes the packet's fate. */
#ifndef TCX_NEXT
#define TCX_NEXT (-1)
#endif

#ifndef SOL_IP
#define SOL_IP 0
#endif
#ifndef SOL_IPV6
#define SOL_IPV6 41
#endif
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif

/* cgroup sock_addr / sockopt programs return 1 to let the call proceed. */
#define SHUNT_CGROUP_ALLOW 1

#endif /* SHUNT_BPF_H */
