// See event_bus.h.
#include "daemon/process/event_bus.h"

namespace procwarp {

bool EventBus::Subscription::Next(procwarp::v1::ProcessEvent* event,
                                  absl::Duration timeout, bool* overflowed) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || overflowed_;
  };
  *overflowed = false;
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
  if (overflowed_) {
    *overflowed = true;
    return false;
  }
  queued_bytes_ -= queue_.front().second;
  *event = std::move(queue_.front().first);
  queue_.pop_front();
  return true;
}

uint64_t EventBus::Subscription::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

size_t EventBus::Subscription::queued_bytes() const {
  absl::MutexLock lock(&mu_);
  return queued_bytes_;
}

std::shared_ptr<EventBus::Subscription> EventBus::Subscribe(
    const Identity& viewer) {
  std::shared_ptr<Subscription> sub(new Subscription(viewer));
  absl::MutexLock lock(&mu_);
  subscribers_.push_back(sub);
  return sub;
}

void EventBus::Unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  absl::MutexLock lock(&mu_);
  subscribers_.remove(subscription);
}

void EventBus::Publish(const procwarp::v1::ProcessEvent& event,
                       const Identity& owner) {
  const size_t bytes = event.ByteSizeLong();
  absl::MutexLock lock(&mu_);
  for (const auto& sub : subscribers_) {
    if (!sub->viewer_.MayAccess(owner)) continue;
    absl::MutexLock sub_lock(&sub->mu_);
    if (sub->overflowed_) {
      ++sub->dropped_;
      continue;
    }
    // An empty queue takes any one event, however large (a record is
    // bounded, see record_bounds.h), so the byte bound never stalls a
    // subscriber that keeps up.
    if (sub->queue_.size() >= max_queued_ ||
        (!sub->queue_.empty() &&
         sub->queued_bytes_ + bytes > max_queued_bytes_)) {
      // The subscriber is dropped: free what it held now, not when its
      // handler next gets to run (it may be blocked writing to a client that
      // does not read).
      sub->overflowed_ = true;
      sub->dropped_ += sub->queue_.size() + 1;
      std::deque<std::pair<procwarp::v1::ProcessEvent, size_t>>().swap(
          sub->queue_);
      sub->queued_bytes_ = 0;
      continue;
    }
    sub->queue_.emplace_back(event, bytes);
    sub->queued_bytes_ += bytes;
  }
}

}  // namespace procwarp
