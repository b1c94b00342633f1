// EventBus: fans process events (started / exited / removed) out to Events
// subscribers. Each subscriber sees only events about processes its identity
// may access, through a queue bounded in events and in bytes (an event
// carries a whole ProcessInfo, labels and argv included, so a count alone
// bounds nothing); an empty queue takes one event of any size, so a queue
// holds at most max(max_queued_bytes, one record). A subscriber that stops reading is dropped rather than
// growing the daemon's memory: once either bound is hit its queue is freed
// at once, later events are only counted, and its stream ends with
// RESOURCE_EXHAUSTED saying how many were dropped. Dropping the subscriber
// (rather than the oldest events) keeps what a client sees honest: it never
// has to guess where the gap was; it subscribes again and re-lists.
#ifndef PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_
#define PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <utility>

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
    // Events lost since the queue overflowed.
    uint64_t dropped() const;
    // Bytes of events queued now.
    size_t queued_bytes() const;

   private:
    friend class EventBus;
    explicit Subscription(Identity viewer) : viewer_(std::move(viewer)) {}
    const Identity viewer_;
    mutable absl::Mutex mu_;
    // Each event with its serialized size, which is what it is counted as.
    std::deque<std::pair<procwarp::v1::ProcessEvent, size_t>> queue_
        ABSL_GUARDED_BY(mu_);
    size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
    bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
    uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  };

  explicit EventBus(size_t max_queued = 10000,
                    size_t max_queued_bytes = 1 << 20)
      : max_queued_(max_queued), max_queued_bytes_(max_queued_bytes) {}

  std::shared_ptr<Subscription> Subscribe(const Identity& viewer);
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);
  // Delivers `event` about a process owned by `owner`.
  void Publish(const procwarp::v1::ProcessEvent& event, const Identity& owner);

 private:
  const size_t max_queued_;
  const size_t max_queued_bytes_;
  absl::Mutex mu_;
  std::list<std::shared_ptr<Subscription>> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_EVENT_BUS_H_
