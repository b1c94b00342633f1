// ProcessTable: every process the daemon manages, by handle id, with the
// authorisation and per-identity limits that apply to them.
//
// Lookups take the caller's identity and answer NOT_FOUND both for ids that
// do not exist and for ids the caller may not access, so a handle id reveals
// nothing to anyone but its owner (and admins).
#ifndef PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_
#define PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/process/event_bus.h"
#include "daemon/process/io_loop.h"
#include "daemon/process/managed_process.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct ProcessLimits {
  size_t max_processes_per_identity = 1024;
  size_t output_buffer_bytes = 1 << 20;
  // RLIMIT_NOFILE children start with unless they ask for another (the
  // daemon's own limit is raised).
  struct rlimit children_nofile = {1024, 4096};
};

class ProcessTable {
 public:
  ProcessTable(ProcessLimits limits, EventBus* events);
  ~ProcessTable();

  // Spawns `request` for `caller` (see spawner.h for the errors) and starts
  // watching it. RESOURCE_EXHAUSTED when the caller has too many.
  absl::StatusOr<std::shared_ptr<ManagedProcess>> Spawn(
      const procwarp::v1::SpawnRequest& request, const Identity& caller);

  // Takes over a running child of the daemon that was not spawned here (an
  // agent thread that execve()d): `pidfd` refers to it and the daemon must
  // be its parent, so it can be reaped. It has no stdio pipes; its output
  // goes wherever its fds 1 and 2 point. `info` carries argv and labels.
  // Not subject to the per-identity limit (the program is already running).
  absl::StatusOr<std::shared_ptr<ManagedProcess>> Adopt(
      pid_t pid, UniqueFd pidfd, const Identity& owner,
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

 private:
  absl::Status CheckLimitLocked(const Identity& caller) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Watch(const std::shared_ptr<ManagedProcess>& process);
  void OnExit(const std::shared_ptr<ManagedProcess>& process);
  void PublishEvent(procwarp::v1::ProcessEvent::Kind kind,
                    const ManagedProcess& process);

  const ProcessLimits limits_;
  EventBus* events_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ManagedProcess>, std::less<>> processes_
      ABSL_GUARDED_BY(mu_);
  // Last, so it stops (and drops its handlers) before the rest goes.
  IoLoop loop_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESS_TABLE_H_
