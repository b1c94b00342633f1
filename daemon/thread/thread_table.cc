// See thread_table.h.
#include "daemon/thread/thread_table.h"

#include <sched.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

HandleTableOptions ThreadOptions(const ThreadLimits& limits) {
  return {.noun = "thread",
          .max_per_owner = limits.max_threads_per_identity,
          .how_to_free = "end some with ExitThread"};
}

// Counted per thread (HandleOwner::quota_key).
HandleTableOptions PointerOptions(const ThreadLimits& limits) {
  return {.noun = "pointer",
          .max_per_owner = limits.max_pointers_per_thread,
          .how_to_free = "the limit is per thread; Free some"};
}

}  // namespace

ThreadTable::ThreadTable(AgentLauncher* launcher, SessionRegistry* sessions,
                         ThreadLimits limits)
    : launcher_(launcher),
      threads_(ThreadOptions(limits)),
      pointers_(PointerOptions(limits)) {
  threads_.ReleaseOnSessionEnd(sessions, [this](std::shared_ptr<Thread> thread) {
    ReleaseAtSessionEnd(std::move(thread));
  });
}

ThreadTable::~ThreadTable() {
  threads_.StopReleasingOnSessionEnd();
  for (const auto& thread : threads_.RemoveAll()) {
    thread->Release(ReleaseReason::kShutdown);
  }
}

void ThreadTable::ReleaseAtSessionEnd(std::shared_ptr<Thread> thread) {
  ForgetPointers(*thread);
  if (!thread->Release(ReleaseReason::kSessionEnd)) Linger(std::move(thread));
}

void ThreadTable::ForgetPointers(const Thread& thread) {
  pointers_.RemoveWhere([&](const procwarp::v1::Pointer& pointer) {
    return pointer.thread_id() == thread.id();
  });
}

void ThreadTable::SweepLingeringLocked() {
  lingering_.erase(std::remove_if(lingering_.begin(), lingering_.end(),
                                  [](const Lingering& lingering) {
                                    return lingering.thread->Gone();
                                  }),
                   lingering_.end());
}

void ThreadTable::SweepLingering() {
  absl::MutexLock lock(&mu_);
  SweepLingeringLocked();
}

void ThreadTable::Linger(std::shared_ptr<Thread> thread) {
  if (thread->Gone()) return;
  // Counts against its owner's limit until its process is gone.
  HandleTable<Thread>::Reservation place =
      threads_.ReserveBeyondLimit({.identity = thread->owner()}, thread->id());
  absl::MutexLock lock(&mu_);
  SweepLingeringLocked();
  lingering_.push_back(Lingering{std::move(thread), std::move(place)});
}

absl::Status ThreadTable::ClaimPid(pid_t pid) {
  absl::MutexLock lock(&mu_);
  SweepLingeringLocked();
  bool taken = claimed_pids_.count(pid) > 0;
  // A reaped thread's pid may be anyone's by now; an unreaped one's is not.
  // Admit commits a thread before it unclaims its pid, and this looks at
  // both while holding mu_ (which unclaiming needs): a starting thread is
  // seen either as claimed or in the table.
  for (const auto& thread : threads_.Snapshot()) {
    taken = taken || (thread->pid() == pid && !thread->Gone());
  }
  for (const auto& lingering : lingering_) {
    taken = taken || (lingering.thread->pid() == pid && !lingering.thread->Gone());
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

void ThreadTable::UnclaimPid(pid_t pid) {
  absl::MutexLock lock(&mu_);
  claimed_pids_.erase(pid);
}

void ThreadTable::SetJournal(ThreadJournal* journal) { journal_ = journal; }

void ThreadTable::Adopt(std::shared_ptr<AgentThread> thread) {
  // Only persistent threads outlive a daemon; recorded threads are never
  // refused for the limit.
  threads_
      .ReserveBeyondLimit({.identity = thread->owner(), .persistent = true},
                          thread->id())
      .Commit(std::move(thread))
      .IgnoreError();  // persistent: cannot be CANCELLED
}

bool ThreadTable::NoteExit(const std::string& id,
                           const procwarp::v1::ExitStatus& status) {
  std::shared_ptr<Thread> thread = threads_.FindUnchecked(id);
  if (thread == nullptr || thread->agent() == nullptr) return false;
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
  HandleOwner owner{.identity = caller,
                    .session_id = session_id,
                    .persistent = request.persistent()};
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
    owner.identity = parent->owner();
  }
  SweepLingering();  // a reaped one's place is free again
  ASSIGN_OR_RETURN(HandleTable<Thread>::Reservation place,
                   threads_.Reserve(std::move(owner)));
  Thread::Handle options;
  options.id = place.id();
  options.owner = place.owner().identity;
  options.session_id = session_id;
  options.persistent = request.persistent();
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
      Admit(std::move(place), std::move(thread), claimed, "CreateThread");
  if (admitted.ok()) FaultPoint("create", 4, (*admitted)->agent()->pidfd());
  ThreadJournal* journal = journal_;
  if (admitted.ok() && lifetime.outlives_daemon && journal != nullptr) {
    absl::Status recorded = journal->ThreadAdded(*(*admitted)->agent());
    if (!recorded.ok()) return Withdraw(*admitted, *journal, recorded);
  }
  return admitted;
}

absl::Status ThreadTable::Withdraw(const std::shared_ptr<Thread>& thread,
                                   ThreadJournal& journal,
                                   const absl::Status& unrecorded) {
  threads_.Remove(thread->owner(), thread->id()).IgnoreError();
  ForgetPointers(*thread);
  // Killed and reaped (Kill waits for it, boundedly) before the answer; one
  // its owner holds back (a tracer) counts on until it is gone.
  if (!thread->Release(ReleaseReason::kSessionEnd)) Linger(thread);
  // Its record (if a later write took it) and the keeper's fds go too.
  journal.ThreadForgotten(thread->id());
  return absl::Status(
      unrecorded.code(),
      absl::StrCat("CreateThread: the persistent thread could not be recorded, "
                   "so it was killed (a daemon restart would have lost it): ",
                   unrecorded.message()));
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Attach(
    const AttachedThread::Target& target, const Identity& caller,
    uint64_t session_id, bool persistent, absl::Time deadline) {
  SweepLingering();
  ASSIGN_OR_RETURN(HandleTable<Thread>::Reservation place,
                   threads_.Reserve({.identity = caller,
                                     .session_id = session_id,
                                     .persistent = persistent}));
  Thread::Handle handle;
  handle.id = place.id();
  handle.owner = caller;
  handle.session_id = session_id;
  handle.persistent = persistent;
  absl::StatusOr<std::shared_ptr<AttachedThread>> attached =
      AttachedThread::Attach(std::move(handle), target, deadline);
  absl::StatusOr<std::shared_ptr<Thread>> thread =
      attached.ok() ? absl::StatusOr<std::shared_ptr<Thread>>(*std::move(attached))
                    : attached.status();
  return Admit(std::move(place), std::move(thread), -1, "AttachThread");
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Admit(
    HandleTable<Thread>::Reservation place,
    absl::StatusOr<std::shared_ptr<Thread>> started, pid_t claimed,
    absl::string_view call) {
  if (!started.ok()) {
    UnclaimPid(claimed);
    return started.status();  // `place` is given back
  }
  // Committed before the pid is unclaimed (see ClaimPid).
  absl::StatusOr<std::shared_ptr<Thread>> admitted =
      std::move(place).Commit(*std::move(started));
  UnclaimPid(claimed);
  if (absl::IsCancelled(admitted.status())) {
    return absl::CancelledError(absl::StrCat(
        call, ": the client's connection ended while the thread started"));
  }
  return admitted;
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Find(
    absl::string_view id, const Identity& caller) const {
  return threads_.Find(caller, id);
}

std::vector<std::shared_ptr<Thread>> ThreadTable::List(
    const Identity& caller, bool all) const {
  return threads_.ListFor(caller, all);
}

absl::StatusOr<std::shared_ptr<Thread>> ThreadTable::Remove(
    absl::string_view id, const Identity& caller) {
  ASSIGN_OR_RETURN(std::shared_ptr<Thread> thread, threads_.Remove(caller, id));
  ForgetPointers(*thread);
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
  // Ends with its thread, not with a session.
  ASSIGN_OR_RETURN(HandleTable<procwarp::v1::Pointer>::Reservation place,
                   pointers_.Reserve({.identity = thread->owner(),
                                      .persistent = true,
                                      .quota_key = thread->id()}));
  if (threads_.FindUnchecked(thread->id()) != thread) {
    return absl::NotFoundError(
        absl::StrCat("no thread with id '", thread->id(), "'"));
  }
  auto pointer = std::make_shared<procwarp::v1::Pointer>();
  pointer->set_id(place.id());
  pointer->set_thread_id(thread->id());
  pointer->set_address(address);
  pointer->set_size(size);
  ASSIGN_OR_RETURN(pointer, std::move(place).Commit(std::move(pointer)));
  // The thread may have left the table meanwhile (its pointers forgotten
  // before this one was in): forget this one too.
  if (threads_.FindUnchecked(thread->id()) != thread) {
    ForgetPointers(*thread);
    return absl::NotFoundError(
        absl::StrCat("no thread with id '", thread->id(), "'"));
  }
  return *pointer;
}

absl::StatusOr<ResolvedPointer> ThreadTable::Resolve(
    absl::StatusOr<std::shared_ptr<procwarp::v1::Pointer>> pointer) const {
  if (!pointer.ok()) return pointer.status();
  std::shared_ptr<Thread> thread = threads_.FindUnchecked((*pointer)->thread_id());
  if (thread == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no pointer with id '", (*pointer)->id(), "'"));
  }
  return ResolvedPointer{std::move(thread), **pointer};
}

absl::StatusOr<ResolvedPointer> ThreadTable::FindPointer(
    absl::string_view id, const Identity& caller) const {
  return Resolve(pointers_.Find(caller, id));
}

absl::StatusOr<ResolvedPointer> ThreadTable::RemovePointer(
    absl::string_view id, const Identity& caller) {
  return Resolve(pointers_.Remove(caller, id));
}

void ThreadTable::EndSession(uint64_t session_id) {
  threads_.EndSession(session_id);
}

size_t ThreadTable::size() const { return threads_.size(); }

}  // namespace procwarp
