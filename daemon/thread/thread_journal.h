// ThreadJournal: where the thread table reports the threads that outlive
// the daemon (persistent agent threads while restart state is kept), so the
// next daemon can reconnect to them (daemon/restart/restart_state.h;
// docs/architecture.md, "Restart without loss").
#ifndef PROCWARP_DAEMON_THREAD_THREAD_JOURNAL_H_
#define PROCWARP_DAEMON_THREAD_THREAD_JOURNAL_H_

#include <string>

#include "absl/status/status.h"

namespace procwarp {

class AgentThread;

class ThreadJournal {
 public:
  virtual ~ThreadJournal() = default;
  // `thread` (outlives_daemon()) is in the table: record it and hand its
  // pidfd and socket end to the keeper before the caller hears of it.
  // Returns once the record is persisted: OK, or why it could not be
  // (RESOURCE_EXHAUSTED for a full disk, naming the file); then the table
  // ends the thread and reports ThreadForgotten.
  virtual absl::Status ThreadAdded(AgentThread& thread) = 0;
  // Thread `id` left the table (ExitThread): forget it, let its fds go.
  virtual void ThreadForgotten(const std::string& id) = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_THREAD_JOURNAL_H_
