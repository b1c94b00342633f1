// See restart_state.h.
#include "daemon/restart/restart_state.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/restart/state_file.h"
#include "agent/protocol.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

using procwarp::state::v1::FdKind;
using procwarp::state::v1::ProcessRecord;

UniqueFd Take(KeptProcess& kept, FdKind kind) {
  auto it = kept.fds.find(kind);
  if (it == kept.fds.end()) return UniqueFd();
  return std::move(it->second);
}

// OK when the keeper's `pidfd` is the process `record` describes. A reaped
// process (exit status known) has no pid left to compare: the keeper that
// reaped it matched it against this pidfd while it could.
absl::Status ProvePidfd(int pidfd, const ProcessRecord& record, bool reaped) {
  absl::StatusOr<pid_t> pid = PidOfPidfd(pidfd);
  if (!pid.ok()) {
    if (reaped && absl::IsNotFound(pid.status())) return absl::OkStatus();
    return pid.status();
  }
  if (*pid != record.info().pid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the kept pidfd is pid ", *pid, ", the record says ", record.info().pid()));
  }
  return absl::OkStatus();
}

// A pidfd of the recorded process found by pid + start time, or why not.
absl::StatusOr<Pidfd> OpenByStartTime(const ProcessRecord& record) {
  const pid_t pid = record.info().pid();
  if (record.start_time_ticks() == 0) {
    return absl::FailedPreconditionError("no start time was recorded");
  }
  auto matches = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(uint64_t now, ProcessStartTime(pid));
    if (now != record.start_time_ticks()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pid ", pid, " now belongs to another process (started at tick ",
          now, ", the record says ", record.start_time_ticks(), ")"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(matches());
  ASSIGN_OR_RETURN(Pidfd pidfd, Pidfd::Open(pid));
  // Checked again with the pidfd held: the pid cannot change owner now.
  RETURN_IF_ERROR(matches());
  return pidfd;
}

}  // namespace

absl::Status PrepareStateDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("mkdir(", dir, ")"));
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("lstat(", dir, ")"));
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state directory ", dir, " must be a directory owned by uid ", geteuid(),
        " (not a symlink)"));
  }
  if ((st.st_mode & 077) != 0 && chmod(dir.c_str(), 0700) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod(", dir, ", 0700)"));
  }
  return absl::OkStatus();
}

RestartState::RestartState(std::string state_dir,
                           std::unique_ptr<FdHolder> keeper, ProcessTable* table)
    : dir_(std::move(state_dir)), keeper_(std::move(keeper)), table_(table) {}

RestartState::~RestartState() { table_->SetJournal(nullptr); }

void RestartState::Restore() {
  procwarp::state::v1::DaemonState state;
  absl::StatusOr<std::string> bytes = ReadStateFile(dir_, kStateFileName);
  if (!bytes.ok()) {
    if (!absl::IsNotFound(bytes.status())) {
      LogError(absl::StrCat("restart: cannot read the state file, re-adopting "
                            "nothing: ", bytes.status().ToString()));
    }
  } else {
    absl::StatusOr<procwarp::state::v1::DaemonState> parsed = ParseStateFile(*bytes);
    if (parsed.ok()) {
      state = *std::move(parsed);
    } else {
      LogError(absl::StrCat(
          "restart: the state file ", dir_, "/", kStateFileName,
          " is unusable, re-adopting nothing (no process is signalled): ",
          parsed.status().ToString()));
    }
  }
  std::map<std::string, KeptProcess> kept = keeper_->FetchAll();
  // Threads wait for the thread table (AdoptThreads).
  for (const procwarp::state::v1::ThreadRecord& record : state.threads()) {
    threads_to_adopt_.push_back(record);
    if (auto it = kept.find(record.info().id()); it != kept.end()) {
      kept_threads_[it->first] = std::move(it->second);
      kept.erase(it);
    }
  }

  std::vector<std::shared_ptr<ManagedProcess>> running;
  std::vector<std::string> ended;
  size_t lost = 0;
  for (const ProcessRecord& record : state.processes()) {
    const auto& info = record.info();
    const std::string& id = info.id();
    if (id.empty() || info.pid() <= 0) {
      LogError(absl::StrCat("restart: skipping a record without id or pid (id '",
                            id, "', pid ", info.pid(), ")"));
      continue;
    }
    if (table_->Find(id, Identity{.uid = 0, .admin = true}).ok()) {
      LogError(absl::StrCat("restart: skipping a second record of ", id));
      continue;
    }
    if (info.state() == procwarp::v1::PROCESS_STATE_EXITED) {
      table_->Restore(record, SpawnedChild(), std::nullopt, false, false);
      ended.push_back(id);
      continue;
    }
    SpawnedChild child;
    child.pid = info.pid();
    std::optional<procwarp::v1::ExitStatus> exit;
    bool from_keeper = false;
    std::string why_not;
    if (auto it = kept.find(id); it != kept.end()) {
      UniqueFd pidfd = Take(it->second, procwarp::state::v1::FD_KIND_PIDFD);
      const bool reaped = it->second.exit_status.has_value();
      absl::Status proof = pidfd ? ProvePidfd(pidfd.get(), record, reaped)
                                 : absl::NotFoundError("the keeper has no pidfd");
      if (proof.ok()) {
        from_keeper = true;
        child.pidfd = std::move(pidfd);
        child.stdin_pipe = Take(it->second, procwarp::state::v1::FD_KIND_STDIN);
        child.stdout_pipe = Take(it->second, procwarp::state::v1::FD_KIND_STDOUT);
        child.stderr_pipe = Take(it->second, procwarp::state::v1::FD_KIND_STDERR);
        child.pty_master = Take(it->second, procwarp::state::v1::FD_KIND_PTY);
        exit = it->second.exit_status;
      } else {
        why_not = absl::StrCat("keeper: ", proof.ToString(), "; ");
      }
    }
    if (!from_keeper) {
      absl::StatusOr<Pidfd> found = OpenByStartTime(record);
      if (!found.ok()) {
        LogError(absl::StrCat(
            "restart: could not re-adopt process ", id, " (pid ", info.pid(),
            "): ", why_not, found.status().ToString(),
            "; it is listed as exited with an unknown status and will not be "
            "signalled"));
        table_->Restore(record, SpawnedChild(), std::nullopt, true, false);
        ended.push_back(id);
        ++lost;
        continue;
      }
      child.pidfd = UniqueFd(dup(found->get()));
      LogInfo(absl::StrCat("restart: re-adopted process ", id, " (pid ", info.pid(),
                           ") by pid and start time; its stdio did not survive"));
    }
    const bool exit_known = exit.has_value();
    auto process = table_->Restore(record, std::move(child), exit, exit_known,
                                   from_keeper && keeper_->ReportsExits());
    if (process->exited()) {
      ended.push_back(id);
    } else {
      running.push_back(process);
    }
  }
  for (const auto& [id, unused] : kept) {
    if (!table_->Find(id, Identity{.uid = 0, .admin = true}).ok()) {
      LogError(absl::StrCat("restart: a keeper holds process ", id,
                            ", which the state file does not record: left "
                            "alone (its fds stay with that keeper)"));
    }
  }

  // From here on this daemon's keeper holds what the table keeps, the state
  // file says what the table says, and earlier keepers let go of what is
  // over.
  table_->SetJournal(this);
  for (const auto& process : running) Added(*process);
  Changed().IgnoreError();  // (logged there)
  for (const std::string& id : ended) Forget(id);
  keeper_->StartEvents([this](const std::string& id,
                              const procwarp::v1::ExitStatus& status) {
    ThreadTable* threads = threads_.load();
    if (threads != nullptr && threads->NoteExit(id, status)) return;
    table_->RecordExit(id, status);
  });
  if (state.processes_size() > 0 || !kept.empty()) {
    LogInfo(absl::StrCat("restart: ", state.processes_size(),
                         " processes recorded, ", running.size(),
                         " running re-adopted, ", lost, " could not be; fds from ",
                         keeper_->Describe()));
  }
}

void RestartState::AdoptThreads(ThreadTable* threads) {
  size_t adopted = 0;
  std::vector<std::string> lost;
  for (const procwarp::state::v1::ThreadRecord& record : threads_to_adopt_) {
    const procwarp::v1::ThreadInfo& info = record.info();
    const std::string name = absl::StrCat("thread ", info.id());
    auto fail = [&](const absl::Status& why) {
      LogError(absl::StrCat("restart: could not reconnect to persistent ", name,
                            " (pid ", info.pid(), "): ", why.ToString(),
                            "; it is let go (its agent ends at EOF) and not "
                            "signalled"));
      lost.push_back(info.id());
    };
    KeptProcess& kept = kept_threads_[info.id()];
    UniqueFd pidfd = Take(kept, procwarp::state::v1::FD_KIND_PIDFD);
    UniqueFd socket = Take(kept, procwarp::state::v1::FD_KIND_AGENT_SOCKET);
    if (!pidfd || !socket || kept.exit_status.has_value()) {
      fail(absl::NotFoundError(kept.exit_status.has_value()
                                   ? "it ended while no daemon ran"
                                   : "no keeper holds its pidfd and socket"));
      continue;
    }
    absl::StatusOr<pid_t> pid = PidOfPidfd(pidfd.get());
    if (!pid.ok() || *pid != info.pid()) {
      fail(pid.ok() ? absl::FailedPreconditionError(absl::StrCat(
                          "the kept pidfd is pid ", *pid))
                    : pid.status());
      continue;
    }
    pw_agent_hello hello{};
    if (record.agent_hello().size() != sizeof(hello)) {
      fail(absl::InvalidArgumentError("its recorded hello has the wrong size"));
      continue;
    }
    memcpy(&hello, record.agent_hello().data(), sizeof(hello));
    const Identity owner = Identity::FromProto(info.owner());
    absl::StatusOr<LaunchedAgent> agent = AgentLauncher::Reconnect(
        std::move(pidfd), std::move(socket), hello, owner, name);
    if (!agent.ok()) {
      fail(agent.status());
      continue;
    }
    Thread::Handle handle;
    handle.id = info.id();
    handle.owner = owner;
    handle.persistent = true;
    AgentLifetime lifetime;
    lifetime.outlives_daemon = true;
    lifetime.adopted = true;
    lifetime.created_unix_ns = info.created_unix_ns();
    threads->Adopt(std::make_shared<AgentThread>(
        std::move(handle), record.request(), *std::move(agent), lifetime));
    ++adopted;
  }
  threads_to_adopt_.clear();
  kept_threads_.clear();
  // From here on this daemon's keeper holds them too, and the state file
  // lists them.
  threads_ = threads;
  threads->SetJournal(this);
  for (const auto& thread : threads->List(Identity{.uid = 0, .admin = true},
                                          /*all=*/true)) {
    // (A failed write is logged there; the next one records them again.)
    if (thread->agent() != nullptr) ThreadAdded(*thread->agent()).IgnoreError();
  }
  for (const std::string& id : lost) keeper_->Drop(id);
  if (adopted > 0 || !lost.empty()) {
    LogInfo(absl::StrCat("restart: reconnected to ", adopted,
                         " persistent threads, ", lost.size(), " could not be"));
  }
  if (lost.empty() && adopted == 0) return;
  Changed().IgnoreError();  // (logged there)
}

absl::Status RestartState::ThreadAdded(AgentThread& thread) {
  procwarp::state::v1::ThreadRecord record;
  *record.mutable_info() = thread.Info();
  *record.mutable_request() = thread.request();
  const pw_agent_hello& hello = thread.connection().hello();
  record.set_agent_hello(std::string(reinterpret_cast<const char*>(&hello),
                                     sizeof(hello)));
  keeper_->Put(thread.id(),
               {{procwarp::state::v1::FD_KIND_PIDFD, thread.pidfd()},
                {procwarp::state::v1::FD_KIND_AGENT_SOCKET,
                 thread.connection().socket_fd()}});
  {
    absl::MutexLock lock(&mu_);
    thread_records_[thread.id()] = record.SerializeAsString();
  }
  return Changed();  // (a failure is logged there too)
}

void RestartState::ThreadForgotten(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    thread_records_.erase(id);
  }
  Changed().IgnoreError();  // (logged there)
  keeper_->Drop(id);
}

void RestartState::Added(const ManagedProcess& process) {
  process.NoteStartTime();
  keeper_->Put(process.id(), process.KeptFds());
}

void RestartState::Forget(const std::string& id) { keeper_->Drop(id); }

absl::Status RestartState::Changed() {
  uint64_t ticket;
  {
    absl::MutexLock lock(&mu_);
    ticket = ++requested_;
  }
  absl::MutexLock writer(&write_mu_);
  uint64_t covers;
  {
    absl::MutexLock lock(&mu_);
    // A write that started later covered it.
    if (written_ >= ticket) return last_write_;
    covers = requested_;
  }
  procwarp::state::v1::DaemonState state;
  state.set_writer_pid(getpid());
  state.set_written_unix_ns(absl::ToUnixNanos(absl::Now()));
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, encoded] : thread_records_) {
      state.add_threads()->ParseFromString(encoded);
    }
  }
  absl::Status written = WriteFileAtomically(
      dir_, kStateFileName, EncodeStateFile(state, table_->EncodedRecords()));
  if (!written.ok()) {
    // ENOSPC/EDQUOT stay RESOURCE_EXHAUSTED (errno_status.h).
    written = absl::Status(
        written.code(), absl::StrCat("the state file ", dir_, "/", kStateFileName,
                                     " cannot be written: ", written.message()));
  }
  if (!written.ok() && !write_failing_) {
    LogError(absl::StrCat("restart: cannot write the state file (a restart now "
                          "would lose processes): ", written.ToString()));
  } else if (written.ok() && write_failing_) {
    LogInfo("restart: the state file is written again");
  }
  write_failing_ = !written.ok();
  absl::MutexLock lock(&mu_);
  written_ = covers;
  last_write_ = written;
  return written;
}

}  // namespace procwarp
