// SlotLimiter: counts something a caller holds for a while (a call in
// progress, an open stream, bytes of records it stored) per identity, and
// refuses more than the limit with RESOURCE_EXHAUSTED.
//
// Each call or stream pins one daemon (gRPC handler) thread for as long as it
// runs, and a blocked one (a Syscall of pause(2) in an agent, a Wait on a
// process that never exits) pins it indefinitely. So the per-identity limit
// is the number of daemon threads one user can pin. Non-admins also share a
// total, which is below what the daemon will run at once: however many users
// misbehave together, root and the admin group always find free threads.
// Admins have their own, higher, per-identity limit, so that one admin's
// runaway script cannot starve the others either.
//
// Cost: one mutex and one hash lookup to acquire, the same to release.
#ifndef PROCWARP_DAEMON_SERVER_SLOT_LIMITER_H_
#define PROCWARP_DAEMON_SERVER_SLOT_LIMITER_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/identity.h"

namespace procwarp {

struct SlotLimits {
  // Slots one non-admin identity may hold at once.
  size_t per_identity = 64;
  // Slots one admin (root or admin group) identity may hold at once.
  size_t per_admin = 256;
  // Slots all non-admin identities together may hold; 0: no shared cap.
  size_t non_admin_total = 0;
};

class SlotLimiter {
 public:
  // `what` names the slots in errors, e.g. "concurrent calls".
  SlotLimiter(std::string what, SlotLimits limits)
      : what_(std::move(what)), limits_(limits) {}
  SlotLimiter(const SlotLimiter&) = delete;
  SlotLimiter& operator=(const SlotLimiter&) = delete;

  // Held while the call or stream runs; gives its slot back when destroyed.
  class Slot {
   public:
    Slot(Slot&& other) noexcept
        : limiter_(std::exchange(other.limiter_, nullptr)),
          key_(std::move(other.key_)),
          amount_(other.amount_),
          admin_(other.admin_) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (limiter_ != nullptr) limiter_->Release(key_, amount_, admin_);
    }

   private:
    friend class SlotLimiter;
    Slot(SlotLimiter* limiter, std::string key, size_t amount, bool admin)
        : limiter_(limiter), key_(std::move(key)), amount_(amount),
          admin_(admin) {}
    SlotLimiter* limiter_;
    std::string key_;
    size_t amount_;
    bool admin_;
  };

  // `amount` slots (1: a call or a stream; n: n bytes) for `caller`, or
  // RESOURCE_EXHAUSTED naming the limit it hit.
  absl::StatusOr<Slot> Acquire(const Identity& caller, size_t amount = 1);

  // Slots `caller`'s identity holds now.
  size_t InUse(const Identity& caller) const;

  // Slots all identities hold now.
  size_t TotalInUse() const;

 private:
  void Release(const std::string& key, size_t amount, bool admin);

  const std::string what_;
  const SlotLimits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, size_t> held_ ABSL_GUARDED_BY(mu_);
  size_t non_admin_held_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_SLOT_LIMITER_H_
