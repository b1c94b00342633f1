// KeeperLink: the daemon's side of the keepers (keeper.h): its own keeper,
// through the socketpair inherited at fork, and any keeper of an earlier
// daemon generation still alive in the state directory (it is the parent of
// the processes that generation spawned, so it alone can report their
// exits).
#ifndef PROCWARP_DAEMON_RESTART_KEEPER_LINK_H_
#define PROCWARP_DAEMON_RESTART_KEEPER_LINK_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "daemon/restart/fd_holder.h"
#include "daemon/util/unique_fd.h"
#include "proto/procwarp/state/v1/state.pb.h"
#include "proto/procwarp/v1/common.pb.h"

namespace procwarp {

class KeeperLink final : public FdHolder {
 public:
  // `own`: the link to this daemon's keeper (invalid: none). Connects to the
  // other keepers' sockets in `state_dir`, removing stale ones.
  KeeperLink(UniqueFd own, const std::string& state_dir);
  ~KeeperLink() override;  // stops the event thread
  KeeperLink(const KeeperLink&) = delete;
  KeeperLink& operator=(const KeeperLink&) = delete;


  // Everything the keepers hold, by process id. Call once, before
  // StartEvents.
  std::map<std::string, KeptProcess> FetchAll() override;
  // Hands duplicates of a process's fds to the own keeper.
  void Put(const std::string& id,
           const std::vector<std::pair<procwarp::state::v1::FdKind, int>>& fds)
      override;
  // Every keeper lets the process's fds go.
  void Drop(const std::string& id) override;
  bool ReportsExits() const override { return true; }
  // From now on, calls `on_exit` (on a thread of its own) whenever a keeper
  // reaps a process it holds.
  void StartEvents(ExitCallback on_exit) override;
  std::string Describe() const override;

 private:
  void Send(int connection, const procwarp::state::v1::KeeperRequest& request,
            const std::vector<int>& fds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  void FetchFrom(int connection, std::map<std::string, KeptProcess>* out);
  void EventLoop(ExitCallback on_exit);

  UniqueFd own_;
  std::vector<UniqueFd> others_;
  absl::Mutex send_mu_;
  UniqueFd stop_read_, stop_write_;  // wakes the event thread to end
  std::thread events_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_RESTART_KEEPER_LINK_H_
