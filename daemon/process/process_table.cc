// See process_table.h.
#include "daemon/process/process_table.h"

#include <sys/epoll.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "daemon/process/spawner.h"
#include "daemon/server/log.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/pidfd.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

namespace {

HandleTableOptions ProcessOptions(const ProcessLimits& limits) {
  return {
      .noun = "process",
      .plural = "managed processes",
      .max_per_owner = limits.max_processes_per_identity,
      .max_pending_per_owner = limits.max_starting_per_identity,
      .how_to_free = "remove exited ones with Remove / `procwarp rm`",
      .pending_note =
          "; each spawn waits for its child to reach execve, e.g. to open a "
          "FIFO you named as stdio: let them finish or cancel them",
  };
}

}  // namespace

ProcessTable::ProcessTable(ProcessLimits limits, EventBus* events)
    : limits_(limits), events_(events), processes_(ProcessOptions(limits)) {}

ProcessTable::~ProcessTable() = default;

absl::StatusOr<ProcessSlot> ProcessTable::ReserveSlot(const Identity& owner) {
  // Processes outlive the connection that made them.
  return processes_.Reserve({.identity = owner, .persistent = true});
}

absl::StatusOr<std::shared_ptr<ManagedProcess>> ProcessTable::Spawn(
    const procwarp::v1::SpawnRequest& request, const Identity& caller,
    std::function<bool()> cancelled) {
  ASSIGN_OR_RETURN(SpawnPlan plan, BuildSpawnPlan(request, caller));
  bool nofile_requested = false;
  for (const auto& r : plan.rlimits) nofile_requested |= r.resource == RLIMIT_NOFILE;
  if (!nofile_requested) {
    plan.rlimits.insert(plan.rlimits.begin(), {RLIMIT_NOFILE, limits_.children_nofile});
  }
  // Held from before the clone: a spawn that is still starting (perhaps
  // blocked opening the caller's FIFO) counts like a process.
  ASSIGN_OR_RETURN(ProcessSlot slot, ReserveSlot(caller));
  const uid_t uid = plan.uid;
  const gid_t gid = plan.gid;
  SpawnWait wait;
  wait.timeout = limits_.spawn_timeout;
  wait.cancelled = std::move(cancelled);
  ASSIGN_OR_RETURN(PendingSpawn pending, StartSpawn(std::move(plan)));
  FaultPoint("spawn", 0, pending.pidfd());  // cloned, not yet exec'd
  ASSIGN_OR_RETURN(SpawnedChild child, FinishSpawn(std::move(pending), wait));
  FaultPoint("spawn", 1, child.pidfd.get());  // exec'd, not yet recorded

  procwarp::v1::ProcessInfo info;
  info.set_id(slot.id());
  for (const auto& arg : request.argv()) info.add_argv(arg);
  info.set_uid(uid);
  info.set_gid(gid);
  *info.mutable_owner() = caller.ToProto();
  *info.mutable_labels() = request.labels();
  auto process = std::make_shared<ManagedProcess>(
      std::move(info), caller, std::move(child), limits_.output_buffer_bytes);
  RETURN_IF_ERROR(Admit(std::move(slot), process, "spawn"));
  return process;
}

absl::StatusOr<std::shared_ptr<ManagedProcess>> ProcessTable::Adopt(
    ProcessSlot slot, pid_t pid, UniqueFd pidfd, const Identity& owner,
    procwarp::v1::ProcessInfo info) {
  if (!slot.held() || !slot.owner().identity.SameOwner(owner)) {
    return absl::InternalError(
        "Adopt: the process slot was not reserved for this owner");
  }
  SpawnedChild child;
  child.pid = pid;
  child.pidfd = std::move(pidfd);
  info.set_id(slot.id());
  info.set_uid(owner.uid);
  info.set_gid(owner.gid);
  *info.mutable_owner() = owner.ToProto();
  auto process = std::make_shared<ManagedProcess>(
      std::move(info), owner, std::move(child), limits_.output_buffer_bytes);
  RETURN_IF_ERROR(Admit(std::move(slot), process, "exec"));
  return process;
}

absl::Status ProcessTable::Admit(ProcessSlot slot,
                                 const std::shared_ptr<ManagedProcess>& process,
                                 const char* operation) {
  // Persistent, so never CANCELLED.
  std::move(slot).Commit(process).IgnoreError();
  FaultPoint(operation, 2, process->pidfd());  // in the table, not yet kept
  // Kept and persisted before the caller learns the id, so a restart right
  // after cannot lose it.
  absl::Status persisted = absl::OkStatus();
  Journal([&](ProcessJournal& j) {
    j.Added(*process);
    persisted = j.Changed();
  });
  if (!persisted.ok()) {
    Withdraw(process);
    return absl::Status(
        persisted.code(),
        absl::StrCat(operation, ": the process could not be recorded, so it was "
                     "killed (a daemon restart would have lost it): ",
                     persisted.message()));
  }
  PublishEvent(procwarp::v1::ProcessEvent::KIND_STARTED, *process);
  Watch(process);
  return absl::OkStatus();
}

void ProcessTable::Withdraw(const std::shared_ptr<ManagedProcess>& process) {
  // Its owner may remove it: by id, not a scan of every process.
  processes_.Remove(process->owner(), process->id()).IgnoreError();
  // The daemon's own child, started by this very call: root undoes it even
  // if the program it runs is setuid (nobody else knows of it yet).
  (void)SignalPidfd(process->pidfd(), SIGKILL, process->Info().pid(),
                    "the unrecorded process");
  (void)ReapPidfd(process->pidfd(), /*block=*/true);
  // A write that started meanwhile may have recorded it: record it gone
  // (best effort; a later change rewrites the file anyway), then let the
  // keeper drop its fds.
  Journal([&](ProcessJournal& j) {
    j.Changed().IgnoreError();
    j.Forget(process->id());
  });
}

std::shared_ptr<ManagedProcess> ProcessTable::Restore(
    const procwarp::state::v1::ProcessRecord& record, SpawnedChild child,
    const std::optional<procwarp::v1::ExitStatus>& exit, bool exit_known,
    bool keeper_reports_exit) {
  auto process = ManagedProcess::Restore(record, std::move(child),
                                         limits_.output_buffer_bytes,
                                         keeper_reports_exit);
  // Counts toward its owner's limit, but a recorded process is never
  // refused.
  processes_
      .ReserveBeyondLimit({.identity = process->owner(), .persistent = true},
                          process->id())
      .Commit(process)
      .IgnoreError();
  // Ended while no daemon ran: its output still waits in the pipe. (The
  // loop does not know the process yet, so this may run here.)
  if (exit_known && !process->exited()) process->MarkExited(exit);
  Watch(process);
  return process;
}

void ProcessTable::RecordExit(
    const std::string& id, const std::optional<procwarp::v1::ExitStatus>& status) {
  std::shared_ptr<ManagedProcess> process = processes_.FindUnchecked(id);
  if (process == nullptr) return;
  loop_.Post([this, process, status] {
    if (process->exited()) return;
    process->MarkExited(status);
    OnExit(process);
  });
}

std::vector<std::string> ProcessTable::EncodedRecords() const {
  std::vector<std::shared_ptr<ManagedProcess>> all = processes_.Snapshot();
  std::vector<std::string> records;
  records.reserve(all.size());
  for (const auto& p : all) records.push_back(p->EncodedRecord());
  return records;
}

void ProcessTable::Watch(const std::shared_ptr<ManagedProcess>& process) {
  for (const auto& [fd, stream] : process->OutputFds()) {
    int watched_fd = fd;
    auto s = loop_.Watch(fd, EPOLLIN, [this, process, watched_fd,
                                       stream = stream](uint32_t) {
      if (!process->ReadOutput(watched_fd, stream)) loop_.Unwatch(watched_fd);
    });
    // Without a watch the output is still read once, at exit.
    if (!s.ok()) LogError(absl::StrCat("watching output of ", process->id(), ": ", s.ToString()));
  }
  int pidfd = process->pidfd();
  if (pidfd < 0 || process->exited()) return;
  if (!process->own_child()) {
    // Re-adopted after a restart: its keeper reaps it and reports how it
    // ended (RecordExit). The pidfd polls readable (level-triggered) from
    // the exit on, so it is watched once, to unwatch it.
    // Without a keeper that is its parent, nobody can say how it ended.
    loop_.Watch(pidfd, EPOLLIN, [this, process, pidfd](uint32_t) {
      loop_.Unwatch(pidfd);
      if (!process->keeper_reports_exit() && !process->exited()) {
        process->MarkExited(std::nullopt);
        OnExit(process);
      }
    }).IgnoreError();
    return;
  }
  auto s = loop_.Watch(pidfd, EPOLLIN, [this, process, pidfd](uint32_t) {
    if (!process->Reap()) return;
    loop_.Unwatch(pidfd);
    for (const auto& [fd, stream] : process->OutputFds()) {
      // A pty's output ends with its process; pipes may live on in
      // grandchildren and are read until EOF.
      if (process->Info().has_pty()) loop_.Unwatch(fd);
    }
    OnExit(process);
  });
  if (!s.ok()) {
    // Without the pidfd watch the exit would go unnoticed: say so loudly.
    LogError(absl::StrCat("watching pidfd of ", process->id(), ": ", s.ToString()));
  }
}

void ProcessTable::OnExit(const std::shared_ptr<ManagedProcess>& process) {
  // The exit status is persisted before the keeper lets the fds go.
  // (A failed write is logged by the journal; the exit is still reported.)
  Journal([&](ProcessJournal& j) {
    j.Changed().IgnoreError();
    j.Forget(process->id());
  });
  PublishEvent(procwarp::v1::ProcessEvent::KIND_EXITED, *process);
}

void ProcessTable::PublishEvent(procwarp::v1::ProcessEvent::Kind kind,
                                const ManagedProcess& process) {
  procwarp::v1::ProcessEvent event;
  event.set_kind(kind);
  *event.mutable_process() = process.Info();
  event.set_unix_ns(absl::ToUnixNanos(absl::Now()));
  events_->Publish(event, process.owner());
}

absl::StatusOr<std::shared_ptr<ManagedProcess>> ProcessTable::Find(
    absl::string_view id, const Identity& caller) const {
  return processes_.Find(caller, id);
}

std::vector<std::shared_ptr<ManagedProcess>> ProcessTable::List(
    const Identity& caller, bool all) const {
  return processes_.ListFor(caller, all);
}

absl::Status ProcessTable::Remove(absl::string_view id, const Identity& caller) {
  ASSIGN_OR_RETURN(auto process, Find(id, caller));
  if (!process->exited()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", id, " is still running; signal it first or remove with force"));
  }
  // NOT_FOUND when a concurrent Remove took it first.
  RETURN_IF_ERROR(processes_.Remove(caller, id).status());
  // Output fds may still be watched (a grandchild holding a pipe open): drop
  // the watches on the loop thread, and wait for that, so the fds are closed
  // (by the last reference) by the time Remove returns.
  absl::Notification unwatched;
  loop_.Post([this, process, &unwatched]() mutable {
    for (const auto& [fd, stream] : process->OutputFds()) loop_.Unwatch(fd);
    // Drop this task's reference before waking the caller: it may be the
    // last one, and then the fds must be closed by the time Remove returns.
    process.reset();
    unwatched.Notify();
  });
  unwatched.WaitForNotification();
  Journal([&](ProcessJournal& j) {
    j.Changed().IgnoreError();
    j.Forget(process->id());
  });
  PublishEvent(procwarp::v1::ProcessEvent::KIND_REMOVED, *process);
  return absl::OkStatus();
}

size_t ProcessTable::size() const { return processes_.size(); }

size_t ProcessTable::running() const {
  size_t n = 0;
  for (const auto& p : processes_.Snapshot()) n += p->exited() ? 0 : 1;
  return n;
}

}  // namespace procwarp
