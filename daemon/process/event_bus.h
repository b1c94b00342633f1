// EventBus: fans process events (started / exited / removed) out to Events
// subscribers. Each subscriber sees only events about processes its identity
// may access, through a bounded queue: a subscriber that stops reading is
// dropped (its stream ends with RESOURCE_EXHAUSTED) rather than growing the
// daemon's memory.
#ifndef PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_
#define PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_

#include <deque>
#include <list>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

class EventBus {
 public:
  class Subscription {
   public:
    // Waits up to `timeout` for the next event. Returns false on timeout, or
    // with *overflowed set when events were lost.
    bool Next(procwarp::v1::ProcessEvent* event, absl::Duration timeout,
              bool* overflowed);

   private:
    friend class EventBus;
    explicit Subscription(Identity viewer) : viewer_(std::move(viewer)) {}
    const Identity viewer_;
    absl::Mutex mu_;
    std::deque<procwarp::v1::ProcessEvent> queue_ ABSL_GUARDED_BY(mu_);
    bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  };

  explicit EventBus(size_t max_queued = 10000) : max_queued_(max_queued) {}

  std::shared_ptr<Subscription> Subscribe(const Identity& viewer);
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);
  // Delivers `event` about a process owned by `owner`.
  void Publish(const procwarp::v1::ProcessEvent& event, const Identity& owner);

 private:
  const size_t max_queued_;
  absl::Mutex mu_;
  std::list<std::shared_ptr<Subscription>> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_
