// Thread: what the services (Threads, Memory, Files) and the ThreadTable know
// of a thread handle, whatever runs behind it. Two backends implement it
// (docs/architecture.md, "The Thread interface"):
//  - AgentThread (agent_thread.h): a procwarp-agent process the daemon
//    started, driven over its socket; it runs as its owner;
//  - AttachedThread (attached_thread.h): a thread of a process procwarp did
//    not start, driven by ptrace from its own tracer thread; it is left
//    exactly as it was when released.
//
// The operations are the verbs the services need, not a transport: checked
// syscalls (single and batch), mmap/munmap, memory reads and writes,
// installing an fd into the thread and fetching one from it, liveness,
// authorised /proc access, Info() and Release(). Each takes the caller, so a
// backend that acts with the daemon's privileges (attached) can check the
// caller's authority at the time of use (daemon/security/ptrace_access.h);
// the agent backend acts as the owner and lets the kernel check.
//
// What only one backend can do is a capability query (agent()): Exec turns
// only an agent thread into a managed process, and only an agent can clone a
// child thread.
#ifndef PROCWARP_DAEMON_THREAD_THREAD_H_
#define PROCWARP_DAEMON_THREAD_THREAD_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

class AgentThread;

// One syscall to run in a thread.
struct ThreadSyscall {
  int64_t nr = 0;
  std::array<uint64_t, 6> args{};

  static ThreadSyscall Of(int64_t nr, std::initializer_list<uint64_t> args);
};

// Its outcome as the kernel returned it in the thread.
struct ThreadSyscallResult {
  // >= 0, or -errno.
  int64_t value = 0;
  // The thread's seccomp filter trapped the call; it did not run (attached
  // threads only; agents are never filtered).
  bool seccomp_refused = false;
};

// True when a raw syscall return value means failure (-4095..-1).
inline bool IsSyscallError(int64_t raw) { return raw < 0 && raw >= -4095; }

// The proto form of a raw result (>= 0, or -errno).
procwarp::v1::SyscallResult ToSyscallResult(const ThreadSyscallResult& raw);

// Returns true once the caller no longer wants the answer (e.g. its RPC was
// cancelled). Polled while waiting on the thread.
using CancelCheck = std::function<bool()>;

// Options of one operation.
struct OperationOptions {
  // Attached threads: stop every other thread of the process while the
  // operation runs (agents are single-threaded; ignored there).
  bool stop_all_threads = false;
  const CancelCheck* cancelled = nullptr;
};

// Why a thread is being let go; each backend decides what that means for its
// process (see Thread::Release).
enum class ReleaseReason {
  kExitThread,  // the owner asked (Threads.ExitThread)
  kSessionEnd,  // a non-persistent thread's connection ended
  kShutdown,    // the daemon is stopping (table destruction)
};

class Thread {
 public:
  enum class Kind { kAgent, kAttached };

  struct Handle {
    std::string id;
    Identity owner;
    uint64_t session_id = 0;
    bool persistent = false;
  };

  explicit Thread(Handle handle) : handle_(std::move(handle)) {}
  virtual ~Thread() = default;
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;

  virtual Kind kind() const = 0;
  // The agent backend, for what only an agent can do (Exec, cloning a child
  // thread); null for other backends.
  virtual AgentThread* agent() { return nullptr; }

  const std::string& id() const { return handle_.id; }
  const Identity& owner() const { return handle_.owner; }
  uint64_t session_id() const { return handle_.session_id; }
  bool persistent() const { return handle_.persistent; }
  // The process in the daemon's pid namespace (agent or target).
  virtual pid_t pid() const = 0;
  // "thread ID (pid N)", for messages.
  virtual std::string Name() const = 0;

  // --- Operations -------------------------------------------------------
  // Runs `calls` in order in the thread (one stop for an attached thread);
  // `results` gets one result per call. A syscall failing in the thread is
  // a result, not an error; errors mean the calls could not be made.
  virtual absl::Status Syscalls(const Identity& caller,
                                absl::Span<const ThreadSyscall> calls,
                                std::vector<ThreadSyscallResult>* results,
                                const OperationOptions& options = {}) = 0;

  // One syscall whose failure in the thread is an error naming `what`
  // ("close(3)") and the thread. Returns the (non-negative) result.
  absl::StatusOr<int64_t> CheckedSyscall(const Identity& caller,
                                         const ThreadSyscall& call,
                                         absl::string_view what,
                                         const OperationOptions& options = {});

  // Fresh anonymous memory (mmap) in the thread; `what` names the purpose.
  virtual absl::StatusOr<uint64_t> Map(const Identity& caller, uint64_t size,
                                       int prot, absl::string_view what);
  // munmap; a thread that is gone (CheckAlive fails) counts as done.
  virtual absl::Status Unmap(const Identity& caller, uint64_t address,
                             uint64_t size);
  // A page of the thread's memory the daemon writes syscall arguments into
  // (e.g. iovecs), mapped on first use and kept for the thread's lifetime.
  absl::StatusOr<uint64_t> ScratchPage(const Identity& caller);

  // Copies between the daemon and the thread's memory. An unreadable
  // (unwritable) range is FAILED_PRECONDITION naming the address.
  virtual absl::Status ReadMemory(const Identity& caller, uint64_t address,
                                  char* out, size_t length) = 0;
  virtual absl::Status WriteMemory(const Identity& caller, uint64_t address,
                                   absl::string_view data) = 0;

  // Installs `fd` (the daemon's) in the thread at `target_fd` (-1: the
  // lowest free number), close-on-exec if asked. The raw result, as for a
  // syscall: its number there, or -errno when the thread could not install
  // it. The fd must be one `caller` may hand the thread (its own, or one
  // fetched with FetchFd).
  virtual absl::StatusOr<int64_t> InstallFd(const Identity& caller, int fd,
                                        int target_fd, bool cloexec,
                                        const CancelCheck& cancelled = nullptr) = 0;
  // A copy (close-on-exec) of the thread's fd `fd` in the daemon, kept only
  // if `caller` could have fetched it itself (pidfd_getfd needs ptrace
  // access). `call` names the RPC in messages.
  absl::StatusOr<UniqueFd> FetchFd(const Identity& caller, int fd,
                                   absl::string_view call);

  // Runs `op` on the thread's process with the daemon's own privileges
  // (reading its maps or fd table, fetching one of its fds) for `caller`,
  // and then decides whether `caller` could have done it itself at that
  // moment; on denial `op`'s result must be discarded.
  virtual absl::Status ActOnProcess(
      const Identity& caller,
      const std::function<absl::Status(const ProcDir&)>& op) = 0;
  // The process's pidfd (valid while the handle lives).
  virtual int pidfd() const = 0;

  // OK while the thread can be used; otherwise why not (agent: UNAVAILABLE
  // naming how it ended; attached: the attachment's end). Waits up to
  // `grace` for a dying thread to finish dying.
  virtual absl::Status CheckAlive(absl::Duration grace = absl::ZeroDuration()) = 0;
  // `status` from an operation on this thread, with a dead thread's error
  // rewritten to say how it ended.
  absl::Status ExplainError(absl::Status status);

  virtual procwarp::v1::ThreadInfo Info() = 0;

  // --- Release ------------------------------------------------------------
  // Lets the thread go for `reason`: an agent exits (exit_group(exit_code),
  // then SIGKILL) or is killed; an attached process is detached, whatever
  // the reason, with the daemon's own mappings removed, never killed. False
  // when the process could not be ended (ReleaseRefusal says why); the
  // table then keeps it until Gone().
  virtual bool Release(ReleaseReason reason, int exit_code = 0) = 0;
  virtual absl::Status ReleaseRefusal() { return absl::OkStatus(); }
  // True once nothing of the thread is left for the daemon to collect.
  // Never blocks.
  virtual bool Gone() = 0;

 private:
  const Handle handle_;
  absl::Mutex scratch_mu_;
  uint64_t scratch_ ABSL_GUARDED_BY(scratch_mu_) = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_THREAD_H_
