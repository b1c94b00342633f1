// Copies between the daemon and an agent thread's memory (AgentThread's
// ReadMemory/WriteMemory; internal to the agent backend).
//
// The daemon's path is the agent's /proc/PID/mem, opened when the thread
// started (AgentThread::memory_fd): it pins the agent's own address space, so
// whatever the process does later (an execve of a setuid program, say), the
// daemon's root privileges only ever reach memory that was the owner's
// agent's, and no check per call is needed. After an execve the pinned space
// is gone: the copy fails with the reason (AgentThread::ExplainLostMemory).
// Like a debugger's writes, writes through it also reach read-only private
// pages (copy-on-write), as the owner's own writes to /proc/PID/mem would.
//
// Where the kernel refused the daemon that file (an LSM, a container without
// CAP_SYS_PTRACE) or refuses reads and writes on it (EPERM, e.g. a seccomp
// profile), the agent copies in-band with READ_MEM/WRITE_MEM over its socket:
// with its owner's credentials, so the kernel checks that path itself.
#ifndef PROCWARP_DAEMON_THREAD_AGENT_MEMORY_H_
#define PROCWARP_DAEMON_THREAD_AGENT_MEMORY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"

namespace procwarp {

class AgentThread;

// Reads `length` bytes at `address` of `thread` into `out` for `caller`. An
// unreadable range is FAILED_PRECONDITION (naming the address), a dead
// thread UNAVAILABLE, one that exec'd a setuid program PERMISSION_DENIED.
absl::Status ReadAgentMemory(AgentThread& thread, const Identity& caller,
                              uint64_t address, char* out, size_t length);

// Writes `data` at `address` of `thread` for `caller`.
absl::Status WriteAgentMemory(AgentThread& thread, const Identity& caller,
                               uint64_t address, absl::string_view data);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_MEMORY_H_
