// StreamLimiter: caps the long-lived streams (Attach, Events, Wait) each
// identity may hold open at once, so one user cannot pin every server thread.
#ifndef PROCWARP_DAEMON_SERVER_STREAM_LIMITER_H_
#define PROCWARP_DAEMON_SERVER_STREAM_LIMITER_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/identity.h"

namespace procwarp {

class StreamLimiter {
 public:
  explicit StreamLimiter(size_t max_per_identity) : max_(max_per_identity) {}

  // Held while a stream is open; releases its slot when destroyed.
  class Slot {
   public:
    Slot(Slot&& other) noexcept
        : limiter_(std::exchange(other.limiter_, nullptr)),
          key_(std::move(other.key_)) {}
    Slot(const Slot&) = delete;
    ~Slot() {
      if (limiter_ != nullptr) limiter_->Release(key_);
    }

   private:
    friend class StreamLimiter;
    Slot(StreamLimiter* limiter, std::string key)
        : limiter_(limiter), key_(std::move(key)) {}
    StreamLimiter* limiter_;
    std::string key_;
  };

  absl::StatusOr<Slot> Acquire(const Identity& caller) {
    absl::MutexLock lock(&mu_);
    size_t& open = open_[caller.OwnerKey()];
    if (open >= max_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "you already have ", open, " open streams (Attach/Events/Wait); the "
          "limit is ", max_));
    }
    ++open;
    return Slot(this, caller.OwnerKey());
  }

 private:
  void Release(const std::string& key) {
    absl::MutexLock lock(&mu_);
    if (--open_[key] == 0) open_.erase(key);
  }

  const size_t max_;
  absl::Mutex mu_;
  std::map<std::string, size_t> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_STREAM_LIMITER_H_
