// ManagedProcess: one child the daemon spawned, held by its pidfd.
//
// It owns the child's stdio ends and output ring, and knows its state. Two
// kinds of methods: the loop-side ones (ReadOutput, Reap) run only on the
// IoLoop thread; everything else is thread-safe and used by RPC handlers.
#ifndef PROCWARP_DAEMON_PROCESS_MANAGED_PROCESS_H_
#define PROCWARP_DAEMON_PROCESS_MANAGED_PROCESS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/process/output_ring.h"
#include "daemon/process/spawner.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/state/v1/state.pb.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

class ManagedProcess {
 public:
  // `info` carries id, argv, owner, uid/gid, labels; pid/state/times are
  // filled in here.
  ManagedProcess(procwarp::v1::ProcessInfo info, const Identity& owner,
                 SpawnedChild child, size_t output_buffer_bytes);

  // A process the previous daemon managed (docs/architecture.md, "Restart
  // without loss"): `record` as it was persisted, `child` with whatever fds
  // survived (any may be invalid). It is not the daemon's child: its exit
  // comes from the keeper (MarkExited), or is unknown.
  static std::shared_ptr<ManagedProcess> Restore(
      const procwarp::state::v1::ProcessRecord& record, SpawnedChild child,
      size_t output_buffer_bytes, bool keeper_reports_exit);

  const std::string& id() const { return id_; }
  const Identity& owner() const { return owner_; }
  int pidfd() const { return child_.pidfd.get(); }
  procwarp::v1::ProcessInfo Info() const;
  bool exited() const;
  // Whether the daemon is its parent (it spawned it in this run), so it can
  // reap it itself.
  bool own_child() const { return own_child_; }
  // For a restored process: whether a keeper is its parent and reports its
  // exit (else its exit status is lost).
  bool keeper_reports_exit() const { return keeper_reports_exit_; }
  // Reads when it started (/proc/PID/stat), the proof of identity a
  // restarted daemon falls back on without a pidfd; only while it runs, and
  // only for those who keep restart state (it costs a /proc read).
  void NoteStartTime() const;
  // What the state file keeps of it.
  procwarp::state::v1::ProcessRecord Record() const;
  // Record(), serialized; kept until the record changes (its exit), so that
  // rewriting the state file costs a copy per process, not an encoding.
  std::string EncodedRecord() const;
  // Its fds worth keeping across a restart, with what each is.
  std::vector<std::pair<procwarp::state::v1::FdKind, int>> KeptFds() const;

  // The fds the IoLoop watches for output, with the stream each carries.
  std::vector<std::pair<int, procwarp::v1::OutputStream>> OutputFds() const;

  // Loop side. Reads what `fd` has now into the ring; returns false at EOF
  // (or EIO on a pty whose other side is closed).
  bool ReadOutput(int fd, procwarp::v1::OutputStream stream);
  // Loop side, when the pidfd is readable: drains the output still buffered
  // in the kernel, reaps the child and records how it ended. Returns false
  // when it has not exited after all.
  bool Reap();
  // Loop side, for a process that is not the daemon's child: drains its
  // output and records that it ended with `status` (nullopt: unknown).
  void MarkExited(const std::optional<procwarp::v1::ExitStatus>& status);

  // Blocks until the child has exited or `timeout` passes; true if exited.
  bool AwaitExit(absl::Duration timeout) const;

  // What an attacher following the output from `cursor` gets next: new
  // chunks, or the exit status once every chunk before the exit was taken.
  struct OutputUpdate {
    std::vector<procwarp::v1::OutputChunk> chunks;
    uint64_t next_cursor = 0;
    bool finished = false;  // chunks are the last ones; exit is final
    procwarp::v1::ExitStatus exit;
  };
  // Waits up to `timeout` for something past `cursor`.
  OutputUpdate AwaitOutput(uint64_t cursor, absl::Duration timeout) const;
  // Where a new attacher starts: the oldest held chunk, or the end.
  uint64_t OutputCursor(bool replay) const;

  // Writes all of `data` to the child's stdin (pipe or pty), waiting for
  // room as long as `cancelled` returns false.
  absl::Status WriteStdin(absl::string_view data,
                          const std::function<bool()>& cancelled);
  // Closes the stdin pipe, or sends EOF (^D) on a pty.
  absl::Status CloseStdin();

  // pidfd_send_signal: never reaches a recycled pid. FAILED_PRECONDITION
  // once the child has exited.
  absl::Status Signal(int signal) const;
  // Signal for `caller`, only where the caller could send it itself now:
  // the kernel's kill rule, checked through the pidfd just before the
  // signal (CheckCallerMayKill, daemon/security/ptrace_access.h). The
  // process runs as its owner, who can make it another uid's (exec a setuid
  // program that sets all its uids): then PERMISSION_DENIED and nothing is
  // sent (docs/security.md, "Signals follow the kernel's kill rule").
  absl::Status SignalFor(const Identity& caller, int signal) const;
  absl::Status ResizePty(uint32_t rows, uint32_t cols) const;

 private:
  // The fd stdin writes go to (-1 if stdin is not a pipe or pty).
  int StdinFdLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(stdin_mu_);

  const std::string id_;
  const Identity owner_;
  SpawnedChild child_;
  bool own_child_ = true;
  bool keeper_reports_exit_ = false;
  // /proc/PID/stat starttime, 0 if unknown.
  mutable std::atomic<uint64_t> start_time_ticks_{0};
  bool stdin_is_pty_ = false;
  bool pty_carries_output_ = false;

  mutable absl::Mutex mu_;
  procwarp::v1::ProcessInfo info_ ABSL_GUARDED_BY(mu_);
  OutputRing ring_ ABSL_GUARDED_BY(mu_);
  uint64_t exit_cursor_ ABSL_GUARDED_BY(mu_) = 0;  // ring end when reaped
  // EncodedRecord() as of the last change of info_ or the start time;
  // empty: to be encoded again.
  mutable std::string encoded_record_ ABSL_GUARDED_BY(mu_);
  mutable uint64_t record_version_ ABSL_GUARDED_BY(mu_) = 0;
  void RecordChangedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex stdin_mu_ ABSL_ACQUIRED_AFTER(mu_);
  bool stdin_closed_ ABSL_GUARDED_BY(stdin_mu_) = false;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_MANAGED_PROCESS_H_
