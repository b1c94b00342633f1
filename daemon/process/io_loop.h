// IoLoop: one epoll thread that reads managed processes' output and notices
// their exits (pidfds become readable).
//
// Handlers run on the loop thread. A handler keeps what it needs alive (it
// captures shared_ptrs), so an fd is never closed while it is watched: owners
// Unwatch (on the loop thread, or through Post) before they let go.
#ifndef PROCWARP_DAEMON_PROCESS_IO_LOOP_H_
#define PROCWARP_DAEMON_PROCESS_IO_LOOP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

class IoLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;

  IoLoop();
  ~IoLoop();  // stops the thread; pending handlers are dropped
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Calls `handler` on the loop thread whenever `fd` has `events`
  // (level-triggered). Thread-safe.
  absl::Status Watch(int fd, uint32_t events, Handler handler);
  // Stops watching `fd` and drops its handler. Call on the loop thread (from a
  // handler or a Post()ed task), so no handler for it is running.
  void Unwatch(int fd);
  // Runs `task` on the loop thread soon. Thread-safe.
  void Post(std::function<void()> task);

 private:
  void Run();

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  // token → (fd, handler); epoll carries the token, not the fd, so a stale
  // event for a reused fd number finds nothing.
  std::map<uint64_t, std::pair<int, Handler>> handlers_ ABSL_GUARDED_BY(mu_);
  std::map<int, uint64_t> token_by_fd_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_IO_LOOP_H_
