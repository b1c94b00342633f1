// Copies between the daemon and an agent thread's memory.
//
// The fast path is process_vm_readv/writev on the agent's pid (the daemon may
// ptrace its own children); where the kernel refuses it (EPERM, e.g. under a
// stricter LSM, or ENOSYS), the agent copies in-band with READ_MEM/WRITE_MEM
// over its socket. The choice is made per call: a refused process_vm_* is
// one cheap failed syscall, and nothing has to be remembered.
#ifndef PROCWARP_DAEMON_MEMORY_THREAD_MEMORY_H_
#define PROCWARP_DAEMON_MEMORY_THREAD_MEMORY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/thread/agent_thread.h"

namespace procwarp {

// Reads `length` bytes at `address` of `thread` into `out`. An unreadable
// range is FAILED_PRECONDITION (naming the address), a dead thread
// UNAVAILABLE.
absl::Status ReadThreadMemory(AgentThread& thread, uint64_t address,
                              char* out, size_t length);

// Writes `data` at `address` of `thread`.
absl::Status WriteThreadMemory(AgentThread& thread, uint64_t address,
                               absl::string_view data);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_MEMORY_THREAD_MEMORY_H_
