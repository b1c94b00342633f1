// FdSideChannel: the second unix socket (<main socket>.fds) over which fds
// cross between agent threads and local clients with SCM_RIGHTS, which gRPC
// cannot carry.
//
// An ExportFd/ImportFd call (authenticated like any other) leaves a pending
// transfer here under a fresh token; the client then connects to the side
// socket and presents the token. A token is redeemed only by a connection
// whose SO_PEERCRED uid and pid are those of the session that asked for it,
// only once, and only for kTokenLifetime. Anything else gets the connection
// closed without a reply.
#ifndef PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_
#define PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/server/session_registry.h"
#include "daemon/thread/agent_thread.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

class FdSideChannel {
 public:
  static constexpr absl::Duration kTokenLifetime = absl::Seconds(10);
  static constexpr size_t kTokenSize = 32;

  // Serves on the listening socket `listen_fd`, bound at `path` (unlinked
  // by Stop() when `owns_path`).
  FdSideChannel(UniqueFd listen_fd, std::string path, bool owns_path);
  ~FdSideChannel();
  FdSideChannel(const FdSideChannel&) = delete;
  FdSideChannel& operator=(const FdSideChannel&) = delete;

  const std::string& path() const { return path_; }

  void Start();
  void Stop();

  // A token for handing `fd` (already the daemon's copy) to `session`'s
  // process.
  std::string AddExport(const Session& session, UniqueFd fd,
                        std::shared_ptr<AgentThread> thread);
  // A token for receiving an fd from `session`'s process into `thread`.
  std::string AddImport(const Session& session,
                        std::shared_ptr<AgentThread> thread, int target_fd,
                        bool cloexec);

 private:
  struct Pending {
    bool is_export = false;
    uid_t uid = 0;
    pid_t pid = 0;
    // Proves identity.pid is still the same process when the token is used.
    std::shared_ptr<const UniqueFd> peer_pidfd;
    absl::Time expires;
    std::shared_ptr<AgentThread> thread;
    UniqueFd fd;  // export: the fd to send
    int target_fd = -1;
    bool cloexec = false;
  };

  std::string Add(const Session& session, Pending pending);
  void AcceptLoop();
  void Serve(UniqueFd conn);
  // Removes and returns the token's transfer if `uid`/`pid` may redeem it.
  std::unique_ptr<Pending> Redeem(absl::string_view token, uid_t uid,
                                  pid_t pid);

  UniqueFd listen_fd_;
  const std::string path_;
  const bool owns_path_;
  UniqueFd wake_fd_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
};

// Binds the side socket next to `main_path` ("<main_path>.fds") with the
// main socket's mode and group (as the file at `main_path` has them).
absl::StatusOr<std::unique_ptr<FdSideChannel>> OpenFdSideChannel(
    const std::string& main_path);

// The filesystem path a listening unix socket is bound to, "" if none
// (unnamed or abstract).
std::string BoundUnixPath(int socket_fd);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_FILES_FD_SIDE_CHANNEL_H_
