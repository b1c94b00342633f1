// ThreadTable: every thread handle (any backend of thread.h: agent or
// attached) by id, with its owner, and the memory pointers allocated in them.
//
// Both are HandleTables (daemon/handles/handle_table.h), which own the
// rules every handle follows: lookups by anyone but the owner (or an admin)
// answer NOT_FOUND, exactly like unknown ids; the per-owner thread limit
// (per-thread pointer limit) is reserved before a thread starts; threads
// that are not persistent end with the session (connection) that created
// them (Thread::Release), their pointers with them. What is this table's
// own: starting agents and attachments, pids claimed by child threads,
// threads that could not be ended yet (Linger), the restart journal.
#ifndef PROCWARP_DAEMON_THREAD_THREAD_TABLE_H_
#define PROCWARP_DAEMON_THREAD_THREAD_TABLE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/handles/handle_table.h"
#include "daemon/server/identity.h"
#include "daemon/server/session_registry.h"
#include "daemon/thread/agent_launcher.h"
#include "daemon/thread/agent_thread.h"
#include "daemon/thread/attached_thread.h"
#include "daemon/thread/thread_journal.h"
#include "proto/procwarp/v1/memory.pb.h"
#include "proto/procwarp/v1/threads.pb.h"

namespace procwarp {

struct ThreadLimits {
  size_t max_threads_per_identity = 256;
  size_t max_pointers_per_thread = 4096;
};

// A pointer handle resolved for use: the thread (kept alive) and the range.
struct ResolvedPointer {
  std::shared_ptr<Thread> thread;
  procwarp::v1::Pointer pointer;
};

class ThreadTable {
 public:
  // Registers a session-end listener with `sessions` (which must outlive
  // the table's use, the listener is disarmed by the destructor).
  ThreadTable(AgentLauncher* launcher, SessionRegistry* sessions,
              ThreadLimits limits = {});
  ~ThreadTable();  // releases every thread (ReleaseReason::kShutdown)
  ThreadTable(const ThreadTable&) = delete;
  ThreadTable& operator=(const ThreadTable&) = delete;

  // Starts a thread for `caller` on session `session_id`: launched by the
  // daemon, or cloned by request.parent_thread_id (which must be a thread
  // `caller` may use: NOT_FOUND otherwise); a child belongs to its parent's
  // owner. `request` passed CheckCreateThreadRequest (thread_requests.h).
  // A persistent thread whose record the journal cannot write is ended
  // before this returns the journal's error (RESOURCE_EXHAUSTED for a full
  // disk), as a Spawn's process is.
  absl::StatusOr<std::shared_ptr<Thread>> Create(
      const procwarp::v1::CreateThreadRequest& request, const Identity& caller,
      uint64_t session_id);

  // From now on persistent agent threads outlive the daemon and are
  // reported to `journal` (null: neither). Set before serving; the journal
  // must outlive its use (reset to null first).
  void SetJournal(ThreadJournal* journal);

  // Puts a thread an earlier daemon started and this one reconnected to
  // (RestartState) into the table, under its recorded id and owner.
  void Adopt(std::shared_ptr<AgentThread> thread);

  // An adopted thread `id` ended like this (its keeper said so); false when
  // there is no such agent thread.
  bool NoteExit(const std::string& id, const procwarp::v1::ExitStatus& status);

  // Attaches to a thread of an existing process for `caller` on session
  // `session_id` (AttachedThread::Attach), counted against the caller's
  // thread limit from before the attach starts.
  absl::StatusOr<std::shared_ptr<Thread>> Attach(
      const AttachedThread::Target& target, const Identity& caller,
      uint64_t session_id, bool persistent, absl::Time deadline);

  // The thread `id` if `caller` may use it; NOT_FOUND otherwise.
  absl::StatusOr<std::shared_ptr<Thread>> Find(absl::string_view id,
                                               const Identity& caller) const;

  std::vector<std::shared_ptr<Thread>> List(const Identity& caller,
                                            bool all) const;

  // Takes thread `id` (and its pointers) out of the table; the caller
  // releases it (Thread::Release).
  absl::StatusOr<std::shared_ptr<Thread>> Remove(absl::string_view id,
                                                 const Identity& caller);

  // Records memory [address, address+size) of `thread` as a new pointer.
  absl::StatusOr<procwarp::v1::Pointer> AddPointer(
      const std::shared_ptr<Thread>& thread, uint64_t address,
      uint64_t size);
  absl::StatusOr<ResolvedPointer> FindPointer(absl::string_view id,
                                              const Identity& caller) const;
  absl::StatusOr<ResolvedPointer> RemovePointer(absl::string_view id,
                                                const Identity& caller);

  // Releases and forgets the non-persistent threads of session `session_id`.
  void EndSession(uint64_t session_id);

  // Keeps a thread taken out of the table whose process could not be ended
  // (Thread::Release returned false) until it is Gone(): it counts against
  // its owner's thread limit until then.
  void Linger(std::shared_ptr<Thread> thread);

  size_t size() const;

 private:
  // A thread taken out of the table whose process could not be ended yet,
  // still holding its place in its owner's limit (Linger).
  struct Lingering {
    std::shared_ptr<Thread> thread;
    HandleTable<Thread>::Reservation place;
  };

  // Starts the agent of a new thread (launched, or cloned from `parent`).
  // A cloned child's pid is claimed (ClaimPid) and left in `*claimed` for
  // the caller to release once the thread is in the table (or failed).
  absl::StatusOr<LaunchedAgent> StartAgent(
      const procwarp::v1::CreateThreadRequest& request, const Identity& caller,
      AgentThread* parent, const Identity& owner,
      const std::string& name, pid_t* claimed);
  // PERMISSION_DENIED when `pid` is already the process of a live thread
  // (or of one being started); otherwise reserves it for a new child thread.
  absl::Status ClaimPid(pid_t pid);
  void UnclaimPid(pid_t pid);
  // Commits `started` into its reserved place (or drops the reservation if
  // starting failed), then releases the claimed pid. A non-persistent
  // thread whose session ended meanwhile is released: CANCELLED.
  absl::StatusOr<std::shared_ptr<Thread>> Admit(
      HandleTable<Thread>::Reservation place,
      absl::StatusOr<std::shared_ptr<Thread>> started, pid_t claimed,
      absl::string_view call);
  // Undoes the Create of persistent `thread` whose record could not be
  // written (`unrecorded`, from the journal): out of the table, its agent
  // killed and reaped, forgotten by the journal. Returns the error for the
  // caller, naming the state file and the errno as `unrecorded` does
  // (docs/architecture.md, "Restart without loss").
  absl::Status Withdraw(const std::shared_ptr<Thread>& thread,
                        ThreadJournal& journal, const absl::Status& unrecorded);
  // What a session end (or a Commit after it) does with a thread.
  void ReleaseAtSessionEnd(std::shared_ptr<Thread> thread);
  // The pointer found (or the lookup's error) with its thread, or NOT_FOUND
  // when the thread has left the table.
  absl::StatusOr<ResolvedPointer> Resolve(
      absl::StatusOr<std::shared_ptr<procwarp::v1::Pointer>> pointer) const;
  // Forgets the pointers of a thread that left the table.
  void ForgetPointers(const Thread& thread);
  // Drops lingering threads that are gone (Thread::Gone reaps them), which
  // gives their places in their owners' limits back; run before each new
  // thread is counted.
  void SweepLingering();
  void SweepLingeringLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AgentLauncher* launcher_;
  // Threads by id; the per-owner limit and the session-end release.
  HandleTable<Thread> threads_;
  // Pointers by id, owned by their thread's owner, limited per thread.
  HandleTable<procwarp::v1::Pointer> pointers_;
  mutable absl::Mutex mu_;
  // Pids of child threads being started (see ClaimPid).
  std::set<pid_t> claimed_pids_ ABSL_GUARDED_BY(mu_);
  // Threads out of the table whose process could not be ended (Linger).
  std::vector<Lingering> lingering_ ABSL_GUARDED_BY(mu_);
  // See SetJournal.
  std::atomic<ThreadJournal*> journal_{nullptr};
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_THREAD_TABLE_H_
