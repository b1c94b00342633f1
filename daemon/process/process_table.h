// ProcessTable: every process the daemon manages, by handle id, with the
// authorisation and per-identity limits that apply to them.
//
// The ids, owners and limits are a HandleTable's (daemon/handles/
// handle_table.h): lookups answer NOT_FOUND both for ids that do not exist
// and for ids the caller may not access, so a handle id reveals nothing to
// anyone but its owner (and admins); a spawn's place in its owner's limit is
// reserved before the clone. Processes are persistent: they outlive the
// connection that spawned them. What is this table's own: spawning, the
// exit watch, events, the restart journal.
#ifndef PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_
#define PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/handles/handle_table.h"
#include "daemon/process/event_bus.h"
#include "daemon/process/io_loop.h"
#include "daemon/process/managed_process.h"
#include "daemon/process/process_journal.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/process/spawner.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct ProcessLimits {
  size_t max_processes_per_identity = 1024;
  size_t output_buffer_bytes = 1 << 20;
  // RLIMIT_NOFILE children start with unless they ask for another (the
  // daemon's own limit is raised).
  struct rlimit children_nofile = {1024, 4096};
  // How long a spawn child may take to reach execve (it may be opening the
  // caller's FIFO); then it is killed.
  absl::Duration spawn_timeout = kDefaultSpawnTimeout;
  // Spawns (and Exec adoptions) in flight per identity. Each holds a daemon
  // thread until its child reaches execve, for up to spawn_timeout, so this
  // bounds the threads one identity can pin that way, well below the
  // process limit.
  size_t max_starting_per_identity = 16;
};

// A place in one identity's process limit, held while a process is being
// started or adopted, so that concurrent starts cannot go past the limit.
// Move-only; dropped unused, it gives the place back (handle_table.h).
using ProcessSlot = HandleTable<ManagedProcess>::Reservation;

class ProcessTable {
 public:
  ProcessTable(ProcessLimits limits, EventBus* events);
  ~ProcessTable();

  // Counts a process about to start for `owner` toward its limits (a spawn
  // or adoption in flight counts like a process, and against
  // max_starting_per_identity), or RESOURCE_EXHAUSTED.
  absl::StatusOr<ProcessSlot> ReserveSlot(const Identity& owner);

  // Spawns `request` for `caller` (see spawner.h for the errors) and starts
  // watching it. RESOURCE_EXHAUSTED when the caller has too many (spawns in
  // flight included). The spawn gives up (and kills the child) when
  // `cancelled` returns true or after limits.spawn_timeout.
  absl::StatusOr<std::shared_ptr<ManagedProcess>> Spawn(
      const procwarp::v1::SpawnRequest& request, const Identity& caller,
      std::function<bool()> cancelled = {});

  // Takes over a running child of the daemon that was not spawned here (an
  // agent thread that execve()d): `pidfd` refers to it and the daemon must
  // be its parent, so it can be reaped. It has no stdio pipes; its output
  // goes wherever its fds 1 and 2 point. `info` carries argv and labels.
  // `slot` is `owner`'s, reserved before the program was started, so the
  // adoption itself cannot fail on the limit.
  absl::StatusOr<std::shared_ptr<ManagedProcess>> Adopt(
      ProcessSlot slot, pid_t pid, UniqueFd pidfd, const Identity& owner,
      procwarp::v1::ProcessInfo info);

  // The process `id` if `caller` may access it; NOT_FOUND otherwise.
  absl::StatusOr<std::shared_ptr<ManagedProcess>> Find(
      absl::string_view id, const Identity& caller) const;

  // Processes `caller` may see (`all` only widens it for admins... and is
  // ignored for others, who always see just their own).
  std::vector<std::shared_ptr<ManagedProcess>> List(const Identity& caller,
                                                    bool all) const;

  // Forgets an exited process (FAILED_PRECONDITION while it runs).
  absl::Status Remove(absl::string_view id, const Identity& caller);

  size_t size() const;
  size_t running() const;

  // Restart support (docs/architecture.md, "Restart without loss").
  // Reports every later change to `journal` (null: none). Call before
  // serving.
  void SetJournal(ProcessJournal* journal) { journal_ = journal; }
  // Every process as the state file keeps it, serialized.
  std::vector<std::string> EncodedRecords() const;
  // Takes in a process the previous daemon managed (see
  // ManagedProcess::Restore); it counts toward its owner's limit but is
  // never refused for it. `exit` is set when it is known to have ended
  // while no daemon ran (`exit` nullopt: how is unknown);
  // `keeper_reports_exit` when a keeper is its parent and will report its
  // exit through RecordExit. Not journalled (the caller persists once done).
  std::shared_ptr<ManagedProcess> Restore(
      const procwarp::state::v1::ProcessRecord& record, SpawnedChild child,
      const std::optional<procwarp::v1::ExitStatus>& exit, bool exit_known,
      bool keeper_reports_exit);
  // A restored process has ended (its keeper reaped it): `status`, or
  // nullopt when how it ended is unknown. Unknown ids are ignored.
  void RecordExit(const std::string& id,
                  const std::optional<procwarp::v1::ExitStatus>& status);

 private:
  void Watch(const std::shared_ptr<ManagedProcess>& process);
  void OnExit(const std::shared_ptr<ManagedProcess>& process);
  void PublishEvent(procwarp::v1::ProcessEvent::Kind kind,
                    const ManagedProcess& process);

  // Commit + journal + event + watch: a process joins the table. When the
  // journal cannot make its record durable (a full disk under the state
  // file), the process is withdrawn instead and the journal's error is
  // returned. `operation` names the caller's operation ("spawn", "exec").
  absl::Status Admit(ProcessSlot slot, const std::shared_ptr<ManagedProcess>& process,
                     const char* operation);
  // Takes a process that was never announced out of the table and kills
  // and reaps it.
  void Withdraw(const std::shared_ptr<ManagedProcess>& process);
  void Journal(const std::function<void(ProcessJournal&)>& note) const {
    if (journal_ != nullptr) note(*journal_);
  }

  const ProcessLimits limits_;
  EventBus* events_;
  ProcessJournal* journal_ = nullptr;
  HandleTable<ManagedProcess> processes_;
  // Last, so it stops (and drops its handlers) before the rest goes.
  IoLoop loop_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_
