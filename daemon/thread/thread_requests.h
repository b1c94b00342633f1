// The checks of Threads requests that need no thread: pure functions of the
// request (and the caller's identity), run by each handler before it looks
// anything up, and fuzzed as they are (thread_requests_fuzzer.cc). Turning
// requested syscalls into thread syscalls is here too, since that is where
// their shape is checked.
#ifndef PROCWARP_DAEMON_THREAD_THREAD_REQUESTS_H_
#define PROCWARP_DAEMON_THREAD_THREAD_REQUESTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"
#include "daemon/thread/thread.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

// One Execute message may not hold more than this many syscalls: the
// replies must fit a gRPC message and the agent's socket buffers.
inline constexpr int kMaxExecuteBatch = 65536;
// Most bytes of path, argv and env strings Exec writes into a thread (the
// kernel's own limit is a quarter of the stack rlimit).
inline constexpr size_t kMaxExecStrings = 1 << 20;

// Labels within record_bounds.h. Without an origin: share_fd_table only
// with a parent thread. With one: namespaces, parent_thread_id and
// share_fd_table unset outside it; a clone names its parent; an attach as
// CheckAttachThreadRequest.
absl::Status CheckCreateThreadRequest(
    const procwarp::v1::CreateThreadRequest& request);

// The two shapes a CreateThreadRequest (that passed CheckCreateThreadRequest)
// takes in the daemon, so each origin has one code path:
// - launch, clone, or no origin: the agent thread's request in the fields
//   of before `origin` (no origin set), which ThreadTable::Create and the
//   restart state's ThreadRecord take;
procwarp::v1::CreateThreadRequest ToAgentThreadRequest(
    const procwarp::v1::CreateThreadRequest& request);
// - attach: the AttachThreadRequest it stands for.
procwarp::v1::AttachThreadRequest ToAttachThreadRequest(
    const procwarp::v1::CreateThreadRequest& request);

// pid names a process (> 0), tid if given a thread (> 0); labels within
// record_bounds.h.
absl::Status CheckAttachThreadRequest(
    const procwarp::v1::AttachThreadRequest& request);

// `syscall` (number `index` of its message, for messages) as a thread
// syscall: at most 6 arguments.
absl::Status ToThreadSyscall(const procwarp::v1::Syscall& syscall, int index,
                             ThreadSyscall* call);

// Message number `batch` of an Execute stream for `stream_thread_id`: names
// no other thread, holds at most kMaxExecuteBatch syscalls, each a valid
// thread syscall; `calls` gets them (reused across messages).
absl::Status ToThreadSyscalls(const procwarp::v1::ExecuteRequest& request,
                              uint64_t batch, absl::string_view stream_thread_id,
                              std::vector<ThreadSyscall>* calls);

// argv not empty; no NUL inside path, argv and env strings; all of them
// within kMaxExecStrings; labels within record_bounds.h.
absl::Status CheckExecRequest(const procwarp::v1::ExecRequest& request);

// The strings and pointer arrays execve needs, laid out for one block of
// thread memory at `base`: argv[] and envp[] (NULL-terminated), then the
// NUL-terminated path, args and env strings. Its size does not depend on
// `base`.
std::string ExecBlock(uint64_t base, const std::string& path,
                      const procwarp::v1::ExecRequest& request);

// Only admins list every identity's threads.
absl::Status CheckListThreadsRequest(
    const procwarp::v1::ListThreadsRequest& request, const Identity& caller);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_THREAD_REQUESTS_H_
