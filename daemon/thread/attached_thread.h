// AttachedThread: the attached backend of the Thread interface (thread.h): a
// thread of a process procwarp did not start, seized with ptrace and driven
// from its own tracer thread (daemon/ptrace/tracer_thread.h; docs/attach.md).
//
// The daemon acts here with its own privileges (it is the tracer), so every
// operation is authorised at the time of use: the caller's authority over the
// target (the kernel's ptrace rule for its uid, daemon/security/
// ptrace_access.h) is checked through the target's pidfd at attach and again
// inside each operation, while the target is stopped (docs/security.md).
//
// An exec in the target ends the attachment (the tracer detaches before the
// new program runs: a root tracer would let a setuid exec keep its new
// credentials); the handle then answers FAILED_PRECONDITION naming why, and
// the end is audited once. Release always detaches, whatever the reason,
// after removing the memory the daemon mapped in the target: the target is
// never killed and is left as it was.
#ifndef PROCWARP_DAEMON_THREAD_ATTACHED_THREAD_H_
#define PROCWARP_DAEMON_THREAD_ATTACHED_THREAD_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/ptrace/tracer_thread.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/thread/thread.h"

namespace procwarp {

class AttachedThread final : public Thread {
 public:
  struct Target {
    pid_t pid = 0;
    pid_t tid = 0;  // 0: the main thread
    // Stop every thread of the process for every operation on this handle.
    bool stop_all_threads = false;
    std::map<std::string, std::string> labels;
  };

  // Checks that `handle.owner` may ptrace `target.pid` now, seizes the
  // thread and checks again. NOT_FOUND (no such process or thread),
  // PERMISSION_DENIED (the ptrace rule; non-dumpable targets for
  // non-admins), FAILED_PRECONDITION (procwarpd itself or one of its
  // children, already traced, job-control stopped, a zombie).
  static absl::StatusOr<std::shared_ptr<AttachedThread>> Attach(
      Handle handle, const Target& target, absl::Time deadline);
  ~AttachedThread() override;  // detaches if still attached

  Kind kind() const override { return Kind::kAttached; }
  pid_t pid() const override { return target_.pid; }
  pid_t tid() const { return tracer_->tid(); }
  int pidfd() const override { return pidfd_.get(); }
  std::string Name() const override;

  absl::Status Syscalls(const Identity& caller,
                        absl::Span<const ThreadSyscall> calls,
                        std::vector<ThreadSyscallResult>* results,
                        const OperationOptions& options = {}) override;
  absl::StatusOr<uint64_t> Map(const Identity& caller, uint64_t size, int prot,
                               absl::string_view what) override;
  absl::Status Unmap(const Identity& caller, uint64_t address,
                     uint64_t size) override;
  absl::Status ReadMemory(const Identity& caller, uint64_t address, char* out,
                          size_t length) override;
  absl::Status WriteMemory(const Identity& caller, uint64_t address,
                           absl::string_view data) override;
  // The daemon makes a socketpair in the target (injected), sends `fd` into
  // one end from outside (its copy via pidfd_getfd) and has the target
  // recvmsg it from the other, all in one stop; then moves it to
  // `target_fd` if asked and closes the pair.
  absl::StatusOr<int64_t> InstallFd(const Identity& caller, int fd,
                                    int target_fd, bool cloexec,
                                    const CancelCheck& cancelled = nullptr) override;
  absl::Status ActOnProcess(
      const Identity& caller,
      const std::function<absl::Status(const ProcDir&)>& op) override;
  absl::Status CheckAlive(absl::Duration grace = absl::ZeroDuration()) override;
  procwarp::v1::ThreadInfo Info() override;
  bool Release(ReleaseReason reason, int exit_code = 0) override;
  bool Gone() override;

  // Runs `work` on this attachment's tracer thread in one stop of the
  // target, after checking (target stopped) that `caller` may still ptrace
  // it: the Exec service's remote calls and library loads on an attached
  // thread (daemon/exec/exec_target.h). Bounded by `deadline`;
  // options.cancelled is polled (TracerThread::Run). The caller must have
  // been allowed to use this handle (ThreadTable::Find).
  absl::Status Operate(const Identity& caller,
                       absl::FunctionRef<absl::Status(ptrace::Operation&)> work,
                       absl::Time deadline, const OperationOptions& options = {});

 private:
  AttachedThread(Handle handle, const Target& target, UniqueFd pidfd,
                 ProcDir proc);

  // Operate() bounded by the per-operation bound of the Thread calls.
  absl::Status Run(const Identity& caller,
                   absl::FunctionRef<absl::Status(ptrace::Operation&)> work,
                   const OperationOptions& options = {});
  // FAILED_PRECONDITION once released or the attachment ended (audited the
  // first time it is noticed).
  absl::Status CheckAttached();
  // Records (and audits, once) that the attachment ended for `why`.
  void NoteEnded(const absl::Status& why);

  const Target target_;
  const UniqueFd pidfd_;
  const ProcDir proc_;
  const int64_t created_unix_ns_;
  std::string exe_;
  pid_t namespace_pid_ = 0;
  pid_t namespace_tid_ = 0;
  std::unique_ptr<ptrace::TracerThread> tracer_;

  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  // Why the attachment ended (OK while attached).
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
  // Memory the daemon mapped in the target (address -> size), removed at
  // release.
  std::map<uint64_t, uint64_t> mappings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_ATTACHED_THREAD_H_
