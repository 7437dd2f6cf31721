// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Failure control for the bulk-safety suite (packages/backend-sockops/src/splice-safety.e2e.test.ts):
 * sockops/redir.bpf.c built with SHUNT_REDIR_CONTROL=1 (unguarded redirect: ENOMEM or loss).
 * Never attached by the agent.
 */
#define SHUNT_REDIR_CONTROL 1
#include "../sockops/redir.bpf.c"
