// ProcessJournal: what the ProcessTable tells whoever keeps its processes
// alive across a daemon restart (daemon/restart/, docs/architecture.md
// "Restart without loss"). The table calls it without holding its lock, in
// this order: Added (keep this process's fds) before Changed (persist the
// table) when a process appears; Changed before Forget (let its fds go) when
// one exits or is removed. So a persisted record always has its fds kept,
// and fds are let go only once the record no longer needs them.
#ifndef PROCWARP_DAEMON_PROCESS_PROCESS_JOURNAL_H_
#define PROCWARP_DAEMON_PROCESS_PROCESS_JOURNAL_H_

#include <string>

#include "absl/status/status.h"

namespace procwarp {

class ManagedProcess;

class ProcessJournal {
 public:
  virtual ~ProcessJournal() = default;
  virtual void Added(const ManagedProcess& process) = 0;
  // Returns once the table as it is now (or later) is persisted: OK, or why
  // it could not be (RESOURCE_EXHAUSTED for a full disk, naming the file).
  virtual absl::Status Changed() = 0;
  virtual void Forget(const std::string& id) = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESS_JOURNAL_H_
