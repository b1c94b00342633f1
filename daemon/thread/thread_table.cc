// See thread_table.h.
#include "daemon/thread/thread_table.h"

#include <sched.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/handle_id.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

absl::Status NoSuchThread(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("no thread with id '", id, "'"));
}

absl::Status NoSuchPointer(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("no pointer with id '", id, "'"));
}

}  // namespace

ThreadTable::ThreadTable(AgentLauncher* launcher, SessionRegistry* sessions,
                         ThreadLimits limits)
    : launcher_(launcher),
      sessions_(sessions),
      limits_(limits),
      guard_(std::make_shared<ListenerGuard>()) {
  {
    absl::MutexLock lock(&guard_->mu);
    guard_->table = this;
  }
  sessions->AddEndListener([guard = guard_](const Session& session) {
    absl::MutexLock lock(&guard->mu);
    if (guard->table != nullptr) guard->table->EndSession(session.id);
  });
}

ThreadTable::~ThreadTable() {
  {
    absl::MutexLock lock(&guard_->mu);
    guard_->table = nullptr;
  }
  std::map<std::string, Entry, std::less<>> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(threads_);
  }
  for (auto& [id, entry] : threads) {
    entry.thread->Release(ReleaseReason::kShutdown);
  }
}

void ThreadTable::SweepLingeringLocked() {
  lingering_.erase(
      std::remove_if(lingering_.begin(), lingering_.end(),
                     [](const std::shared_ptr<Thread>& thread) {
                       return thread->Gone();
                     }),
      lingering_.end());
}

void ThreadTable::Linger(std::shared_ptr<Thread> thread) {
  absl::MutexLock lock(&mu_);
  SweepLingeringLocked();
  if (!thread->Gone()) lingering_.push_back(std::move(thread));
}

absl::Status ThreadTable::ReserveSlot(const Identity& owner) {
  const std::string key = owner.OwnerKey();
  absl::MutexLock lock(&mu_);
  SweepLingeringLocked();
  auto starting = starting_.find(key);
  size_t owned = starting == starting_.end() ? 0 : starting->second;
  for (const auto& [id, entry] : threads_) {
    if (entry.thread->owner().SameOwner(owner)) ++owned;
  }
  for (const auto& thread : lingering_) {
    if (thread->owner().SameOwner(owner)) ++owned;
  }
  if (owned >= limits_.max_threads_per_identity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "threads: ", key, " already has ", owned,
        " threads (the limit); end some with ExitThread"));
  }
  ++starting_[key];
  return absl::OkStatus();
}

absl::Status ThreadTable::ClaimPid(pid_t pid) {
  absl::MutexLock lock(&mu_);
  bool taken = claimed_pids_.count(pid) > 0;
  // A reaped thread's pid may be anyone's by now; an unreaped one's is not.
  for (const auto& [id, entry] : threads_) {
    taken = taken || (entry.thread->pid() == pid && !entry.thread->Gone());
  }
  for (const auto& thread : lingering_) {
    taken = taken || (thread->pid() == pid && !thread->Gone());
  }
  if (taken) {
    return absl::PermissionDeniedError(
        absl::StrCat("pid ", pid,
                     " is already another thread's process, so the reply that "
                     "named it was forged (the agent's socket taken over?)"));
  }
  claimed_pids_.insert(pid);
  return absl::OkStatus();
}

void ThreadTable::SetJournal(ThreadJournal* journal) { journal_ = journal; }

void ThreadTable::Adopt(std::shared_ptr<AgentThread> thread) {
  absl::MutexLock lock(&mu_);
  threads_[thread->id()].thread = std::move(thread);
}

bool ThreadTable::NoteExit(const std::string& id,
                           const procwarp::v1::ExitStatus& status) {
  std::shared_ptr<Thread> thread;
  {
    absl::MutexLock lock(&mu_);
    auto it = threads_.find(id);
    if (it == threads_.end() || it->second.thread->agent() == nullptr) {
      return false;
    }
    thread = it->second.thread;
  }
  thread->agent()->NoteExit(status);
  return true;
}

absl::StatusOr<LaunchedAgent> ThreadTable::StartAgent(
    const procwarp::v1::CreateThreadRequest& request, const Identity& caller,
    AgentThread* parent, const Identity& owner,
    const std::string& name, pid_t* claimed) {
  if (parent == nullptr) {
    // Only threads the daemon launches itself can outlive it: a child of an
    // agent gets its PR_SET_PDEATHSIG from the agent (agent/agent.c).
    const bool outlive = request.persistent() && journal_ != nullptr;
    return launcher_->Launch(request.namespaces(), caller, name, outlive);
  }
  RETURN_IF_ERROR(parent->CheckAlive());
  const procwarp::v1::Namespaces& ns = request.namespaces();
  uint64_t flags = 0;
  if (request.share_fd_table()) flags |= CLONE_FILES;
  if (ns.user()) flags |= CLONE_NEWUSER;
  if (ns.mount()) flags |= CLONE_NEWNS;
  if (ns.net()) flags |= CLONE_NEWNET;
  if (ns.uts()) flags |= CLONE_NEWUTS;
  if (ns.ipc()) flags |= CLONE_NEWIPC;
  if (ns.pid()) flags |= CLONE_NEWPID;
  CloneParent clone_parent;
  clone_parent.connection = &parent->connection();
  clone_parent.proc = &parent->proc();
  clone_parent.name = parent->Name();
  auto claim = [this, claimed](pid_t pid) {
    absl::Status s = ClaimPid(pid);
    if (s.ok()) *claimed = pid;
    return s;
  };
  bool forged = false;
  absl::StatusOr<LaunchedAgent> child =
      launcher_->CloneChild(clone_parent, flags, owner, name, claim, &forged);
  if (child.ok()) return child;
  absl::Status status = child.status();
  if (forged) {
    // The parent's agent (or whoever holds its socket) lied to the daemon:
    // nothing it says can be used any more.
    parent->MarkCompromised(
        absl::StrCat("its agent forged a reply (", status.message(), ")"));
    return absl::PermissionDeniedError(
        absl::StrCat("CreateThread from parent ", parent->Name(), ": ",
                     status.message(), "; the parent thread has been ended"));
  }
  if (absl::IsUnavailable(status)) {
    absl::Status alive = parent->CheckAlive(absl::Seconds(1));
    if (!alive.ok()) status = alive;
  }
  return absl::Status(status.code(),
                      absl::StrCat("CreateThread from parent ", parent->Name(),
                                   ": ", status.message()));
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Create(
    const procwarp::v1::CreateThreadRequest& request, const Identity& caller,
    uint64_t session_id) {
  Thread::Handle options;
  options.id = NewHandleId();
  options.owner = caller;
  options.session_id = session_id;
  options.persistent = request.persistent();
  std::shared_ptr<Thread> parent_handle;
  AgentThread* parent = nullptr;
  if (!request.parent_thread_id().empty()) {
    // A child of one of the caller's threads; it acts with the parent's
    // credentials, so it belongs to (and counts for) the parent's owner.
    ASSIGN_OR_RETURN(parent_handle, Find(request.parent_thread_id(), caller));
    parent = parent_handle->agent();
    if (parent == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "CreateThread: parent ", parent_handle->Name(),
          " is an attached thread; only agent threads clone children"));
    }
    options.owner = parent->owner();
  }
  const std::string owner_key = options.owner.OwnerKey();
  RETURN_IF_ERROR(ReserveSlot(options.owner));
  const std::string name = absl::StrCat("thread ", options.id);
  pid_t claimed = -1;
  absl::StatusOr<LaunchedAgent> agent =
      StartAgent(request, caller, parent, options.owner, name, &claimed);
  if (agent.ok()) FaultPoint("create", 3, agent->pidfd.get());  // not in the table
  AgentLifetime lifetime;
  lifetime.outlives_daemon =
      parent == nullptr && request.persistent() && journal_ != nullptr;
  absl::StatusOr<std::shared_ptr<Thread>> thread =
      agent.ok() ? absl::StatusOr<std::shared_ptr<Thread>>(
                       std::make_shared<AgentThread>(std::move(options), request,
                                                     *std::move(agent), lifetime))
                 : agent.status();
  absl::StatusOr<std::shared_ptr<Thread>> admitted =
      Admit(owner_key, std::move(thread), claimed, "CreateThread");
  if (admitted.ok()) FaultPoint("create", 4, (*admitted)->agent()->pidfd());
  ThreadJournal* journal = journal_;
  if (admitted.ok() && lifetime.outlives_daemon && journal != nullptr) {
    journal->ThreadAdded(*(*admitted)->agent());
  }
  return admitted;
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Attach(
    const AttachedThread::Target& target, const Identity& caller,
    uint64_t session_id, bool persistent, absl::Time deadline) {
  Thread::Handle handle;
  handle.id = NewHandleId();
  handle.owner = caller;
  handle.session_id = session_id;
  handle.persistent = persistent;
  RETURN_IF_ERROR(ReserveSlot(caller));
  absl::StatusOr<std::shared_ptr<AttachedThread>> attached =
      AttachedThread::Attach(std::move(handle), target, deadline);
  absl::StatusOr<std::shared_ptr<Thread>> thread =
      attached.ok() ? absl::StatusOr<std::shared_ptr<Thread>>(*std::move(attached))
                    : attached.status();
  return Admit(caller.OwnerKey(), std::move(thread), -1, "AttachThread");
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Admit(
    const std::string& owner_key,
    absl::StatusOr<std::shared_ptr<Thread>> started, pid_t claimed,
    absl::string_view call) {
  {
    // The reservation turns into the entry (or goes) in one step, so the
    // count never misses it (nor the claimed pid).
    absl::MutexLock lock(&mu_);
    if (--starting_[owner_key] == 0) starting_.erase(owner_key);
    claimed_pids_.erase(claimed);
    if (!started.ok()) return started.status();
    threads_[(*started)->id()].thread = *started;
  }
  std::shared_ptr<Thread> thread = *std::move(started);
  // A session that ended while the thread started had nothing of this
  // thread to end: end it here, or it would outlive its client.
  if (!thread->persistent() && !sessions_->IsLive(thread->session_id())) {
    // NOT_FOUND here only means EndSession took it out first.
    Remove(thread->id(), thread->owner()).IgnoreError();
    if (!thread->Release(ReleaseReason::kSessionEnd)) Linger(thread);
    return absl::CancelledError(absl::StrCat(
        call, ": the client's connection ended while the thread started"));
  }
  return thread;
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Find(
    absl::string_view id, const Identity& caller) const {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(id);
  if (it == threads_.end() || !caller.MayAccess(it->second.thread->owner())) {
    return NoSuchThread(id);
  }
  return it->second.thread;
}

std::vector<std::shared_ptr<Thread>> ThreadTable::List(
    const Identity& caller, bool all) const {
  std::vector<std::shared_ptr<Thread>> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, entry] : threads_) {
    const Identity& owner = entry.thread->owner();
    if ((all && caller.admin) || owner.SameOwner(caller)) {
      out.push_back(entry.thread);
    }
  }
  return out;
}

void ThreadTable::ErasePointersLocked(const Entry& entry) {
  for (const std::string& pointer : entry.pointers) pointers_.erase(pointer);
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Remove(
    absl::string_view id, const Identity& caller) {
  std::shared_ptr<Thread> thread;
  {
    absl::MutexLock lock(&mu_);
    auto it = threads_.find(id);
    if (it == threads_.end() ||
        !caller.MayAccess(it->second.thread->owner())) {
      return NoSuchThread(id);
    }
    thread = it->second.thread;
    ErasePointersLocked(it->second);
    threads_.erase(it);
  }
  ThreadJournal* journal = journal_;
  if (journal != nullptr && thread->agent() != nullptr &&
      thread->agent()->outlives_daemon()) {
    journal->ThreadForgotten(thread->id());
  }
  return thread;
}

absl::StatusOr<procwarp::v1::Pointer> ThreadTable::AddPointer(
    const std::shared_ptr<Thread>& thread, uint64_t address,
    uint64_t size) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(thread->id());
  if (it == threads_.end() || it->second.thread != thread) {
    return NoSuchThread(thread->id());
  }
  if (it->second.pointers.size() >= limits_.max_pointers_per_thread) {
    return absl::ResourceExhaustedError(absl::StrCat(
        thread->Name(), " already has ", it->second.pointers.size(),
        " pointers (the limit); Free some"));
  }
  procwarp::v1::Pointer pointer;
  pointer.set_id(NewHandleId());
  pointer.set_thread_id(thread->id());
  pointer.set_address(address);
  pointer.set_size(size);
  pointers_[pointer.id()] = pointer;
  it->second.pointers.push_back(pointer.id());
  return pointer;
}

absl::StatusOr<ResolvedPointer> ThreadTable::FindPointer(
    absl::string_view id, const Identity& caller) const {
  absl::MutexLock lock(&mu_);
  auto it = pointers_.find(id);
  if (it == pointers_.end()) return NoSuchPointer(id);
  auto thread = threads_.find(it->second.thread_id());
  if (thread == threads_.end() ||
      !caller.MayAccess(thread->second.thread->owner())) {
    return NoSuchPointer(id);
  }
  return ResolvedPointer{thread->second.thread, it->second};
}

absl::StatusOr<ResolvedPointer> ThreadTable::RemovePointer(
    absl::string_view id, const Identity& caller) {
  absl::MutexLock lock(&mu_);
  auto it = pointers_.find(id);
  if (it == pointers_.end()) return NoSuchPointer(id);
  auto thread = threads_.find(it->second.thread_id());
  if (thread == threads_.end() ||
      !caller.MayAccess(thread->second.thread->owner())) {
    return NoSuchPointer(id);
  }
  ResolvedPointer resolved{thread->second.thread, it->second};
  auto& ids = thread->second.pointers;
  ids.erase(std::remove(ids.begin(), ids.end(), std::string(id)), ids.end());
  pointers_.erase(it);
  return resolved;
}

void ThreadTable::EndSession(uint64_t session_id) {
  std::vector<std::shared_ptr<Thread>> ended;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      const Thread& thread = *it->second.thread;
      if (!thread.persistent() && thread.session_id() == session_id) {
        ended.push_back(it->second.thread);
        ErasePointersLocked(it->second);
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Outside the lock: releasing waits for the agent to die or the target
  // to stop for its detach.
  for (const auto& thread : ended) {
    if (!thread->Release(ReleaseReason::kSessionEnd)) Linger(thread);
  }
}

size_t ThreadTable::size() const {
  absl::MutexLock lock(&mu_);
  return threads_.size();
}

}  // namespace procwarp
