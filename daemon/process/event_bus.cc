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
  *event = std::move(queue_.front());
  queue_.pop_front();
  return true;
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
  absl::MutexLock lock(&mu_);
  for (const auto& sub : subscribers_) {
    if (!sub->viewer_.MayAccess(owner)) continue;
    absl::MutexLock sub_lock(&sub->mu_);
    if (sub->queue_.size() >= max_queued_) {
      sub->overflowed_ = true;
      continue;
    }
    sub->queue_.push_back(event);
  }
}

}  // namespace procwarp
