// DaemonHarness: a real procwarpd on a temporary socket for integration tests.
//
// Start() launches the daemon binary with NOTIFY_SOCKET pointing at a socket of
// the harness and returns once the daemon sent READY=1 (no sleeps, no polling
// of the socket file). The destructor stops it with SIGTERM and checks it
// exits 0.
#ifndef PROCWARP_TESTS_INTEGRATION_DAEMON_HARNESS_H_
#define PROCWARP_TESTS_INTEGRATION_DAEMON_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "tests/integration/test_channel.h"  // Ctx, NewUnixChannel
#include "tests/testing/runfiles.h"

namespace procwarp::testing {

// A fresh 0755 directory under /tmp (so other uids can reach sockets in it),
// removed by the caller.
std::string MakeTempDir();

struct RunResult {
  int exit_code = -1;
  std::string out;
};
// Runs argv (fork + immediate exec, safe in a process with gRPC threads) as
// `uid`/`gid` when given (uid < 0: as ourselves) and collects stdout.
RunResult RunProgram(const std::vector<std::string>& argv, int uid = -1,
                     int gid = -1, const std::vector<std::string>& extra_env = {});

// The command line of a peer program (peer_args.h: a test's caller in its
// own process) that becomes uid/gid `uid` and talks to `socket`:
// <runfiles>/tests/integration/<peer> --socket SOCKET --uid U --gid U ARGS...
std::vector<std::string> PeerCommand(const std::string& peer, const std::string& socket,
                                     int uid, const std::vector<std::string>& args);

// Runs the CLI as `uid`/`gid`: `procwarp --socket SOCKET COMMAND` (COMMAND
// split by the shell), from a copy of the CLI in `dir` (the build tree is
// root's, so uid 65534 could not run it there), in `dir`; stderr goes to
// `out` with stdout. The test lists //client/cli:procwarp in its data.
RunResult RunCliAs(int uid, int gid, const std::string& dir,
                   const std::string& socket, const std::string& command);

class DaemonHarness {
 public:
  struct Options {
    std::vector<std::string> flags;  // extra procwarpd flags
    std::string socket_mode = "0666";
    // A program (and its arguments) that runs procwarpd's command line, e.g.
    // to confine it first.
    std::vector<std::string> wrapper;
    // Run in this directory (socket and all) instead of a fresh one, and
    // leave it in place: a restarted daemon on the same socket and state.
    std::string dir;
    // The daemon binary, as a runfiles path (list it in the test's data):
    // "daemon/procwarpd_with_faults" for fault tests.
    std::string binary = "daemon/procwarpd";

    // For tests of Threads, Memory and Files: procwarpd takes the
    // procwarp-agent from the test's runfiles (list //agent:procwarp-agent
    // in the test's data).
    static Options WithAgent();
  };
  static absl::StatusOr<std::unique_ptr<DaemonHarness>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<DaemonHarness>> Start() {
    return Start(Options());
  }
  ~DaemonHarness();

  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_; }
  // The process that was started: the daemon itself, or its keeper when it
  // runs with --state_dir (daemon/restart/keeper.h).
  pid_t pid() const { return pid_; }
  // The daemon (MAINPID of its READY=1).
  pid_t daemon_pid() const { return daemon_pid_; }

  std::shared_ptr<grpc::Channel> NewChannel() const;
  std::unique_ptr<procwarp::v1::Processes::Stub> Processes() const;
  std::unique_ptr<procwarp::v1::Admin::Stub> Admin() const;

  // Open fds and resident memory of the daemon, for leak checks.
  int CountFds() const;
  long RssKb() const;
  // The daemon's fd count once it is at most `baseline`, or as it stands
  // after `timeout`: what ended calls and sessions held is released
  // asynchronously (on hang-up, at the next cancellation check).
  int AwaitFdsAtMost(int baseline,
                     absl::Duration timeout = absl::Seconds(30)) const;

  // SIGTERM and wait; returns the exit code (or 128+signal).
  int Stop();
  // Sends `signal` to the daemon (not to its keeper) and waits until it is
  // gone. The keeper and the managed processes stay.
  void SignalDaemonAndWait(int signal);

 private:
  DaemonHarness() = default;
  std::string dir_;
  std::string socket_path_;
  pid_t pid_ = -1;
  pid_t daemon_pid_ = -1;
  int pidfd_ = -1;
  bool own_dir_ = true;
};

// A SpawnRequest for argv with stdout/stderr piped.
procwarp::v1::SpawnRequest PipedSpawn(const std::vector<std::string>& argv);

// Everything an Attach stream produced until it ended.
struct AttachOutcome {
  std::string stdout_data;
  std::string stderr_data;
  std::string merged;  // both, in the order received
  bool exited = false;
  procwarp::v1::ExitStatus exit;
  grpc::Status status;
};
// Attaches to `id`, writes `stdin_data` then closes stdin (if close_stdin), and
// collects until the exit message.
AttachOutcome AttachAndCollect(procwarp::v1::Processes::Stub* stub,
                               const std::string& id,
                               const std::string& stdin_data = "",
                               bool close_stdin = true);

}  // namespace procwarp::testing

#endif  // PROCWARP_TESTS_INTEGRATION_DAEMON_HARNESS_H_
