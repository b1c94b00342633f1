// SpawnPlan: a validated SpawnRequest, turned into exactly what the child
// needs between clone and execve: C strings, fds, ids, flags. Everything is
// prepared (and allocated) before the clone, because a child of a
// multi-threaded daemon may only make raw system calls.
#ifndef PROCWARP_DAEMON_PROCESS_SPAWN_PLAN_H_
#define PROCWARP_DAEMON_PROCESS_SPAWN_PLAN_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

struct SpawnPlan {
  // Candidate executables, tried in order (PATH search done up front).
  std::vector<std::string> executables;
  // When >= 0: a daemon fd (O_PATH is enough) of the program to run, run
  // with execveat(AT_EMPTY_PATH) instead; `executables` then only names it
  // in messages. The child closes every other daemon fd before execve, so
  // a /proc/self/fd/N path would not work.
  int exec_fd = -1;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  mode_t umask = 022;

  // Credentials the child runs with.
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;

  struct Rlimit {
    int resource;
    struct rlimit limit;
  };
  std::vector<Rlimit> rlimits;

  bool new_session = false;
  // CLONE_NEW* flags for unshare() after the ids are dropped (user, mount,
  // net, uts, ipc) and for clone itself (pid: only a clone can make the
  // child pid 1 of a new namespace).
  int unshare_flags = 0;
  bool new_pid_namespace = false;

  // Daemon fds to install in the child at fixed numbers, inherited across
  // execve (e.g. an agent's socket on fd 3). Precondition: every source is
  // >= 3 and no source is another entry's target.
  struct InheritedFd {
    int source;
    int target;
  };
  std::vector<InheritedFd> inherited_fds;

  // PR_SET_PDEATHSIG for the child (0: none). The kernel sends it when the
  // *thread* that spawned the child exits, so only spawn with it from a
  // thread that lives as long as the daemon.
  int parent_death_signal = 0;

  procwarp::v1::StdioSpec stdio[3];
  procwarp::v1::WindowSize window_size;
  bool uses_pty() const;
};

// Validates `request` for `caller` and builds the plan. Errors are
// INVALID_ARGUMENT (bad argv/env/rlimit...) or PERMISSION_DENIED (choosing a
// uid without being admin), with a message naming the field.
absl::StatusOr<SpawnPlan> BuildSpawnPlan(const procwarp::v1::SpawnRequest& request,
                                         const Identity& caller);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_SPAWN_PLAN_H_
