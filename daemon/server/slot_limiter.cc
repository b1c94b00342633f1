// See slot_limiter.h.
#include "daemon/server/slot_limiter.h"

#include "absl/strings/str_cat.h"

namespace procwarp {

absl::StatusOr<SlotLimiter::Slot> SlotLimiter::Acquire(const Identity& caller,
                                                      size_t amount) {
  std::string key = caller.OwnerKey();  // short enough to stay inline (SSO)
  const size_t limit = caller.admin ? limits_.per_admin : limits_.per_identity;
  absl::MutexLock lock(&mu_);
  if (!caller.admin && limits_.non_admin_total != 0 &&
      non_admin_held_ + amount > limits_.non_admin_total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "procwarpd is at its limit of ", limits_.non_admin_total, " ", what_,
        " for all non-admin users together (the rest is kept for root and "
        "the admin group); try again when some have finished"));
  }
  size_t& held = held_[key];
  if (held + amount > limit) {
    size_t now = held;
    if (now == 0) held_.erase(key);  // do not leave an empty entry
    return absl::ResourceExhaustedError(absl::StrCat(
        "you already have ", now, " ", what_,
        amount == 1 ? "" : absl::StrCat(" and this needs ", amount, " more"),
        "; the limit is ", limit, " per ", caller.admin ? "admin" : "user",
        ": finish, cancel or remove some first"));
  }
  held += amount;
  if (!caller.admin) non_admin_held_ += amount;
  return Slot(this, std::move(key), amount, caller.admin);
}

size_t SlotLimiter::InUse(const Identity& caller) const {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(caller.OwnerKey());
  return it == held_.end() ? 0 : it->second;
}

size_t SlotLimiter::TotalInUse() const {
  absl::MutexLock lock(&mu_);
  size_t total = 0;
  for (const auto& [key, held] : held_) total += held;
  return total;
}

void SlotLimiter::Release(const std::string& key, size_t amount, bool admin) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(key);
  if (it != held_.end() && (it->second -= amount) == 0) held_.erase(it);
  if (!admin) non_admin_held_ -= amount;
}

}  // namespace procwarp
