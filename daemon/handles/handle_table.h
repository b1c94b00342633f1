// HandleTable<T>: the one table behind every kind of handle the daemon hands
// out (processes, threads, pointers, library handles; later attachments and
// snapshots). It owns what every kind shares, so each kind's table only adds
// what is its own (docs/architecture.md, "Handles and sessions"):
//
//  - the id: unguessable (daemon/util/handle_id.h), chosen at Reserve so the
//    work that builds the handle can already name it;
//  - the owner, and the rule that a handle is found only by its owner (and
//    by admins): everyone else gets NOT_FOUND, exactly as for an unknown id,
//    so an id tells nothing to anyone but its owner;
//  - the per-owner limit, reserved *before* the work starts (Reserve →
//    work → Reservation::Commit(value)). A reservation counts like a handle,
//    so concurrent requests can never overshoot the limit; one dropped
//    unused (the work failed) gives its place back;
//  - the session: a handle that is not persistent ends with the connection
//    that made it. The table listens for session ends and hands such
//    handles to the kind's release function; a handle committed after its
//    session already ended is released at once and its Commit is CANCELLED.
//
// Why daemon/handles/ and not daemon/util/: it depends on who a caller is
// and on sessions (daemon/server/), which util/ (fds, syscalls, ids) must
// not.
//
// Values are shared_ptr<T>: a handle found by one call stays usable while
// another call removes it from the table. Cost: one mutex; lookups are one
// map search, Reserve one more map search per owner (counts are kept, not
// recounted).
#ifndef PROCWARP_DAEMON_HANDLES_HANDLE_TABLE_H_
#define PROCWARP_DAEMON_HANDLES_HANDLE_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/identity.h"
#include "daemon/server/session_registry.h"
#include "daemon/util/handle_id.h"

namespace procwarp {

// Who a new handle belongs to and how long it lives.
struct HandleOwner {
  Identity identity;
  // The session (connection) that made it; ends it unless `persistent`.
  uint64_t session_id = 0;
  bool persistent = false;
  // What the limit is counted per: empty for the owner (OwnerKey), or
  // another key for handles limited per something else (pointers: per
  // thread).
  std::string quota_key;
};

struct HandleTableOptions {
  // Names the kind in errors: "thread", "process", "library handle"; and
  // more than one (empty: noun + "s").
  std::string noun;
  std::string plural;
  // Appended to NOT_FOUND, e.g. " (unknown, not yours, or unloaded)".
  std::string not_found_note;
  // Handles (and reservations) one quota key may hold.
  size_t max_per_owner = std::numeric_limits<size_t>::max();
  // Reservations (work in flight) one quota key may hold, when that work
  // pins a daemon thread for a while (a spawn waiting for execve).
  size_t max_pending_per_owner = std::numeric_limits<size_t>::max();
  // How to get under the limit, for RESOURCE_EXHAUSTED: "end some with
  // ExitThread".
  std::string how_to_free;
  // Why the work in flight is limited, for its RESOURCE_EXHAUSTED.
  std::string pending_note;
};

template <typename T>
class HandleTable {
 public:
  using Ptr = std::shared_ptr<T>;
  // Ends a handle taken out of the table by a session end (or by a Commit
  // that came after its session's end). Runs without the table's lock.
  using ReleaseFn = std::function<void(Ptr)>;

  // A place in the table held while the handle is being made. Move-only;
  // the table must outlive it. Dropped without Commit, it gives its place
  // back.
  class Reservation {
   public:
    Reservation(Reservation&& other) noexcept
        : table_(std::exchange(other.table_, nullptr)),
          id_(std::move(other.id_)),
          owner_(std::move(other.owner_)),
          key_(std::move(other.key_)) {}
    Reservation& operator=(Reservation&& other) noexcept {
      if (this != &other) {
        GiveBack();
        table_ = std::exchange(other.table_, nullptr);
        id_ = std::move(other.id_);
        owner_ = std::move(other.owner_);
        key_ = std::move(other.key_);
      }
      return *this;
    }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { GiveBack(); }

    // The id the handle will have.
    const std::string& id() const { return id_; }
    const HandleOwner& owner() const { return owner_; }
    // False once committed or moved from.
    bool held() const { return table_ != nullptr; }

    // Puts `value` in the table under id(); the reserved place becomes the
    // handle's, in one step, so the count never misses it. CANCELLED when
    // the handle is not persistent and its session has ended meanwhile: the
    // value has then been handed to the release function (if the session
    // end had not taken it already).
    absl::StatusOr<Ptr> Commit(Ptr value) && {
      HandleTable* table = std::exchange(table_, nullptr);
      if (table == nullptr) {
        return absl::InternalError("HandleTable: Commit of a used reservation");
      }
      return table->CommitReserved(id_, owner_, key_, std::move(value));
    }

   private:
    friend class HandleTable;
    Reservation(HandleTable* table, std::string id, HandleOwner owner,
                std::string key)
        : table_(table), id_(std::move(id)), owner_(std::move(owner)),
          key_(std::move(key)) {}
    void GiveBack() {
      if (table_ != nullptr) std::exchange(table_, nullptr)->Unreserve(key_);
    }

    HandleTable* table_;
    std::string id_;
    HandleOwner owner_;
    std::string key_;  // the quota key
  };

  explicit HandleTable(HandleTableOptions options)
      : options_(std::move(options)),
        listener_(std::make_shared<SessionListener>()) {}
  ~HandleTable() { StopReleasingOnSessionEnd(); }
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // A place for one handle of `owner` under a new id, or RESOURCE_EXHAUSTED
  // naming the limit reached.
  absl::StatusOr<Reservation> Reserve(HandleOwner owner) {
    std::string key = QuotaKey(owner);
    absl::MutexLock lock(&mu_);
    const size_t pending = CountLocked(pending_, key);
    if (pending >= options_.max_pending_per_owner) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "you have ", pending, " ", Plural(), " still being made (the "
          "limit is ", options_.max_pending_per_owner, ")",
          options_.pending_note));
    }
    const size_t held = CountLocked(held_, key);
    if (held >= options_.max_per_owner) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "you already have ", held, " ", Plural(),
          ", counting those still being made (the limit is ",
          options_.max_per_owner, "); ", options_.how_to_free));
    }
    return ReserveLocked(std::move(owner), std::move(key), NewHandleId());
  }

  // A place that is never refused, under a given id: for handles that
  // already exist and must count toward their owner's limit (restored after
  // a restart, or a thread that could not be ended yet).
  Reservation ReserveBeyondLimit(HandleOwner owner,
                                 std::string id = NewHandleId()) {
    std::string key = QuotaKey(owner);
    absl::MutexLock lock(&mu_);
    return ReserveLocked(std::move(owner), std::move(key), std::move(id));
  }

  // The handle `id` if `caller` may use it (its owner, or an admin);
  // NOT_FOUND otherwise.
  absl::StatusOr<Ptr> Find(const Identity& caller, absl::string_view id) const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || !caller.MayAccess(it->second.owner.identity)) {
      return NotFound(id);
    }
    return it->second.value;
  }

  // The handle `id` whoever owns it, or null. Only for the daemon's own
  // bookkeeping with ids from its own records (a keeper's exit report),
  // never with an id from a request.
  Ptr FindUnchecked(absl::string_view id) const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.value;
  }

  // Takes `id` out of the table for `caller` (NOT_FOUND as Find); its place
  // in the owner's limit is free again.
  absl::StatusOr<Ptr> Remove(const Identity& caller, absl::string_view id) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || !caller.MayAccess(it->second.owner.identity)) {
      return NotFound(id);
    }
    return EraseLocked(it);
  }

  // Takes out every handle `remove` selects; returns them.
  std::vector<Ptr> RemoveWhere(const std::function<bool(const T&)>& remove) {
    std::vector<Ptr> removed;
    absl::MutexLock lock(&mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (remove(*it->second.value)) {
        removed.push_back(EraseLocked(it++));
      } else {
        ++it;
      }
    }
    return removed;
  }

  // Takes out every handle (daemon shutdown).
  std::vector<Ptr> RemoveAll() {
    return RemoveWhere([](const T&) { return true; });
  }

  // The handles `caller` owns; with `all`, an admin's list has everyone's
  // (`all` is ignored for others).
  std::vector<Ptr> ListFor(const Identity& caller, bool all = false) const {
    std::vector<Ptr> out;
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if ((all && caller.admin) || entry.owner.identity.SameOwner(caller)) {
        out.push_back(entry.value);
      }
    }
    return out;
  }

  // Every handle, for the daemon's own use (status counts, the state file).
  std::vector<Ptr> Snapshot() const {
    std::vector<Ptr> out;
    absl::MutexLock lock(&mu_);
    out.reserve(entries_.size());
    for (const auto& [id, entry] : entries_) out.push_back(entry.value);
    return out;
  }

  // Handles plus reservations counted under `owner`'s quota key.
  size_t CountFor(const HandleOwner& owner) const {
    absl::MutexLock lock(&mu_);
    return CountLocked(held_, QuotaKey(owner));
  }
  size_t CountFor(const Identity& owner) const {
    return CountFor(HandleOwner{owner});
  }

  size_t size() const {
    absl::MutexLock lock(&mu_);
    return entries_.size();
  }

  // From now on, when a session ends, its handles that are not persistent
  // are taken out and passed to `release` (on the registry's watcher
  // thread). `sessions` must outlive the table's use of it; call once.
  void ReleaseOnSessionEnd(SessionRegistry* sessions, ReleaseFn release) {
    {
      absl::MutexLock lock(&listener_->mu);
      listener_->table = this;
    }
    {
      absl::MutexLock lock(&mu_);
      sessions_ = sessions;
      release_ = std::move(release);
    }
    sessions->AddEndListener([listener = listener_](const Session& session) {
      // Held while the table runs the release, so StopReleasingOnSessionEnd
      // waits for a session end in progress.
      absl::MutexLock lock(&listener->mu);
      if (listener->table != nullptr) listener->table->EndSession(session.id);
    });
  }

  // Session ends are ignored from now on; a release in progress has ended
  // when this returns. A kind's table calls it first in its destructor
  // (its release function may use the rest of it).
  void StopReleasingOnSessionEnd() {
    absl::MutexLock lock(&listener_->mu);
    listener_->table = nullptr;
  }

  // Takes out and releases the non-persistent handles of `session_id`.
  void EndSession(uint64_t session_id) {
    std::vector<Ptr> ended;
    ReleaseFn release;
    {
      absl::MutexLock lock(&mu_);
      for (auto it = entries_.begin(); it != entries_.end();) {
        const HandleOwner& owner = it->second.owner;
        if (!owner.persistent && owner.session_id == session_id) {
          ended.push_back(EraseLocked(it++));
        } else {
          ++it;
        }
      }
      release = release_;
    }
    // Outside the lock: releasing may wait (an agent dying, a target
    // stopping for its detach).
    if (release) {
      for (Ptr& value : ended) release(std::move(value));
    }
  }

 private:
  struct Entry {
    Ptr value;
    HandleOwner owner;
    std::string key;  // the quota key
  };
  // Lets the session listener outlive the table safely.
  struct SessionListener {
    absl::Mutex mu;
    HandleTable* table ABSL_GUARDED_BY(mu) = nullptr;
  };
  using Entries = std::map<std::string, Entry, std::less<>>;

  static std::string QuotaKey(const HandleOwner& owner) {
    return owner.quota_key.empty() ? owner.identity.OwnerKey() : owner.quota_key;
  }
  static size_t CountLocked(const std::map<std::string, size_t>& counts,
                            const std::string& key) {
    auto it = counts.find(key);
    return it == counts.end() ? 0 : it->second;
  }
  static void Decrement(std::map<std::string, size_t>& counts,
                        const std::string& key) {
    auto it = counts.find(key);
    if (it != counts.end() && --it->second == 0) counts.erase(it);
  }

  std::string Plural() const {
    return options_.plural.empty() ? absl::StrCat(options_.noun, "s")
                                   : options_.plural;
  }

  absl::Status NotFound(absl::string_view id) const {
    return absl::NotFoundError(absl::StrCat("no ", options_.noun, " with id '",
                                            id, "'", options_.not_found_note));
  }

  Reservation ReserveLocked(HandleOwner owner, std::string key, std::string id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++held_[key];
    ++pending_[key];
    return Reservation(this, std::move(id), std::move(owner), std::move(key));
  }

  void Unreserve(const std::string& key) {
    absl::MutexLock lock(&mu_);
    Decrement(pending_, key);
    Decrement(held_, key);
  }

  Ptr EraseLocked(typename Entries::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Ptr value = std::move(it->second.value);
    Decrement(held_, it->second.key);
    entries_.erase(it);
    return value;
  }

  absl::StatusOr<Ptr> CommitReserved(const std::string& id,
                                     const HandleOwner& owner,
                                     const std::string& key, Ptr value) {
    const SessionRegistry* sessions;
    {
      absl::MutexLock lock(&mu_);
      Decrement(pending_, key);  // still counted in held_, now as a handle
      entries_[id] = Entry{value, owner, key};
      sessions = sessions_;
    }
    // A session that ended while the handle was being made had nothing of
    // it to end (its end listener ran before the entry existed, or runs
    // now and takes it): end it here, or it would outlive its client.
    // IsLive turns false before the end listeners run, so one of the two
    // always sees the handle.
    if (owner.persistent || sessions == nullptr ||
        sessions->IsLive(owner.session_id)) {
      return value;
    }
    ReleaseFn release;
    bool taken = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(id);
      if (it != entries_.end() && it->second.value == value) {
        EraseLocked(it);
        taken = true;
      }
      release = release_;
    }
    if (taken && release) release(value);
    return absl::CancelledError(absl::StrCat(
        "the client's connection ended while the ", options_.noun,
        " was being made"));
  }

  const HandleTableOptions options_;
  std::shared_ptr<SessionListener> listener_;
  mutable absl::Mutex mu_;
  Entries entries_ ABSL_GUARDED_BY(mu_);
  // Handles plus reservations, per quota key.
  std::map<std::string, size_t> held_ ABSL_GUARDED_BY(mu_);
  // Reservations alone, per quota key.
  std::map<std::string, size_t> pending_ ABSL_GUARDED_BY(mu_);
  const SessionRegistry* sessions_ ABSL_GUARDED_BY(mu_) = nullptr;
  ReleaseFn release_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_HANDLES_HANDLE_TABLE_H_
