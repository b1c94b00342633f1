// ExecTarget: the process an Exec RPC acts on, as its `Target` names it, and
// how work runs in it. Every Exec RPC that touches a process (Call,
// InjectLibrary, UnloadLibrary, and later ones such as RunPython) resolves
// its target here, so the rules below hold for all of them
// (docs/attach.md, "The Exec service"; docs/security.md, "Exec").
//
//  - `target.pid`: the process is attached for this one piece of work and
//    detached before it returns (transient_attach.h). The pidfd is opened at
//    Resolve(), so everything the RPC does names the same process.
//  - `target.thread_id`: an attached thread of the caller (Threads.
//    AttachThread). Ids the caller may not use answer NOT_FOUND, exactly like
//    unknown ones (ThreadTable::Find; admins see all); an agent thread is
//    FAILED_PRECONDITION (it is procwarpd's child running procwarp-agent).
//    The work runs on that attachment's own tracer thread — no second attach
//    (the kernel allows one tracer) — with the caller's ptrace rule checked
//    again while the target is stopped.
// Either way the work is bounded by `deadline` and abandoned (the target put
// back) once `cancelled()` turns true.
#ifndef PROCWARP_DAEMON_EXEC_EXEC_TARGET_H_
#define PROCWARP_DAEMON_EXEC_EXEC_TARGET_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/ptrace/operation.h"
#include "daemon/server/identity.h"
#include "daemon/thread/attached_thread.h"
#include "daemon/thread/thread_table.h"
#include "daemon/util/unique_fd.h"
#include "proto/procwarp/exec/v1/exec.pb.h"

namespace procwarp::exec {

class ExecTarget {
 public:
  // Resolves `target` for `caller`. `threads` may be null (no thread
  // handles: thread_id answers NOT_FOUND). INVALID_ARGUMENT when neither is
  // set or the pid is not a process id; NOT_FOUND for no such process or
  // thread handle.
  static absl::StatusOr<ExecTarget> Resolve(
      const procwarp::exec::v1::Target& target, const Identity& caller,
      const ThreadTable* threads);

  // The attached thread `thread_id` of `caller` when it still is attached to
  // `pid`, else `pid` by itself: for work on a process named earlier (a
  // library handle), which must not try a second attach while the caller
  // holds one.
  static absl::StatusOr<ExecTarget> ForProcess(pid_t pid, int pidfd,
                                               absl::string_view thread_id,
                                               const Identity& caller,
                                               const ThreadTable* threads);

  ExecTarget(ExecTarget&&) = default;
  ExecTarget& operator=(ExecTarget&&) = default;

  pid_t pid() const { return pid_; }
  // Empty for a pid target.
  const std::string& thread_id() const { return thread_id_; }
  // A new pidfd of the process (to keep beyond the RPC).
  absl::StatusOr<UniqueFd> DupPidfd() const;

  // Runs `work` with the target thread stopped, after checking (stopped)
  // that `caller` may ptrace it; see the file comment.
  absl::Status Run(const Identity& caller, absl::Time deadline,
                   const std::function<bool()>& cancelled,
                   absl::FunctionRef<absl::Status(ptrace::Operation&)> work) const;

 private:
  ExecTarget(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  explicit ExecTarget(std::shared_ptr<AttachedThread> thread);

  pid_t pid_ = 0;
  UniqueFd pidfd_;  // a pid target
  std::shared_ptr<AttachedThread> thread_;  // a thread_id target
  std::string thread_id_;
};

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_EXEC_TARGET_H_
