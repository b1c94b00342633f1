// RestartState: keeps the process table restorable across daemon restarts
// (docs/architecture.md, "Restart without loss"). It is the table's
// ProcessJournal: every change rewrites the state file (group commit: one
// write covers every change made before it started) and the keeper gets
// duplicates of each process's fds (the keeper process or systemd's fd
// store: FdHolder). At start-up, Restore() re-adopts what
// the previous daemon managed.
#ifndef PROCWARP_DAEMON_RESTART_RESTART_STATE_H_
#define PROCWARP_DAEMON_RESTART_RESTART_STATE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "daemon/process/process_journal.h"
#include "daemon/process/process_table.h"
#include "daemon/restart/fd_holder.h"
#include "daemon/thread/thread_journal.h"
#include "daemon/thread/thread_table.h"

namespace procwarp {

// Creates `dir` (0700, owned by the daemon's uid) or checks an existing one
// is that and not a symlink: the state file and keeper sockets trust it.
absl::Status PrepareStateDir(const std::string& dir);

class RestartState final : public ProcessJournal, public ThreadJournal {
 public:
  RestartState(std::string state_dir, std::unique_ptr<FdHolder> keeper,
               ProcessTable* table);
  ~RestartState() override;

  // Re-adopts the processes of the state file into the table: with the
  // pidfd and stdio ends a keeper held, or else by pid + start time (its
  // stdio lost). A process neither proves to be the recorded one is listed
  // as exited with an unknown status and never signalled. Logs each process
  // it could not re-adopt, and an unreadable, corrupt or foreign-version
  // state file. Then journals the table. Call once, before serving.
  void Restore();

  // Reconnects to the persistent agent threads of the state file (their
  // pidfd and socket end from a keeper, the pidfd checked to be the
  // recorded pid), puts them in `threads` under their ids and owners, and
  // journals `threads` from then on (SetJournal). A thread it cannot
  // reconnect to is logged and let go: its keeper drops the socket end, so
  // the agent reads EOF and exits by itself (nothing signals it). Call once,
  // after Restore, before serving; the caller detaches the journal
  // (threads->SetJournal(nullptr)) before destroying this object.
  void AdoptThreads(ThreadTable* threads);

  void Added(const ManagedProcess& process) override;
  absl::Status Changed() override;
  void Forget(const std::string& id) override;

  absl::Status ThreadAdded(AgentThread& thread) override;
  void ThreadForgotten(const std::string& id) override;

 private:
  const std::string dir_;
  std::unique_ptr<FdHolder> keeper_;
  ProcessTable* table_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one writer at a time
  absl::Mutex mu_;
  uint64_t requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  // How the write that reached `written_` went: what Changed() answers the
  // calls it covered.
  absl::Status last_write_ ABSL_GUARDED_BY(mu_);
  bool write_failing_ ABSL_GUARDED_BY(write_mu_) = false;
  // Journalled threads, each an encoded ThreadRecord, by id.
  std::map<std::string, std::string> thread_records_ ABSL_GUARDED_BY(mu_);
  // From Restore to AdoptThreads: the recorded threads and what the keepers
  // hold for them.
  std::vector<procwarp::state::v1::ThreadRecord> threads_to_adopt_;
  std::map<std::string, KeptProcess> kept_threads_;
  std::atomic<ThreadTable*> threads_{nullptr};
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_RESTART_STATE_H_
