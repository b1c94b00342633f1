// TargetProcess (tests only): starts a program from tests/testcases/ the way
// an attach target exists in real life — not a child of the test process
// (the attach backend refuses the daemon's own children, and a tracer in the
// parent's process would reap its exit). A short-lived intermediate process
// forks the target and exits, so the target is re-parented to init; the test
// keeps a pidfd, the write end of its stdin and the read end of its stdout.
#ifndef PROCWARP_DAEMON_PTRACE_TESTING_TARGET_PROCESS_H_
#define PROCWARP_DAEMON_PTRACE_TESTING_TARGET_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/util/unique_fd.h"
#include "tests/testing/runfiles.h"

namespace procwarp::testing {

class TargetProcess {
 public:
  struct Options {
    // Drop to this uid/gid (e.g. 65534) before exec; -1 keeps root.
    int uid = -1;
    std::vector<std::string> env;  // extra "NAME=value" entries
  };
  static absl::StatusOr<TargetProcess> Start(const std::vector<std::string>& argv,
                                             const Options& options);
  static absl::StatusOr<TargetProcess> Start(const std::vector<std::string>& argv) {
    return Start(argv, Options{});
  }

  TargetProcess(TargetProcess&&) = default;
  TargetProcess& operator=(TargetProcess&&) = default;
  // SIGKILLs the target if still running.
  ~TargetProcess();

  pid_t pid() const { return pid_; }
  // A fresh pidfd for the target (the attach API takes ownership of one).
  UniqueFd OpenPidfd() const;

  // Reads one line from the target's stdout (blocking), without the newline.
  absl::StatusOr<std::string> ReadLine();
  // Reads stdout until EOF (the target exited or closed it).
  absl::StatusOr<std::string> ReadAll();
  // Writes to the target's stdin.
  absl::Status Write(const std::string& data);
  // Closes the target's stdin (EOF).
  void CloseStdin() { stdin_.Reset(); }
  // Blocks until the target has exited (pidfd readable).
  void WaitExit() const;
  // True when the process still exists (including as a zombie).
  bool Alive() const;
  // A "key=value" field of the ready line (e.g. "buf").
  static std::string Field(const std::string& line, const std::string& key);

 private:
  TargetProcess() = default;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd stdin_;
  UniqueFd stdout_;
  std::string pending_;
};

// A target that printed its ready line (attach_target.c's "ready pid=..."):
// the process and that line.
struct ReadyTarget {
  TargetProcess process;
  std::string ready;
};

// Starts `argv` and reads its first line, which must start with "ready";
// aborts the test binary otherwise (a target that cannot start makes every
// later check meaningless).
ReadyTarget StartReady(const std::vector<std::string>& argv,
                       const TargetProcess::Options& options = {});

}  // namespace procwarp::testing

#endif  // PROCWARP_DAEMON_PTRACE_TESTING_TARGET_PROCESS_H_
