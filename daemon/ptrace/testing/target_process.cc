// See target_process.h.
#include "daemon/ptrace/testing/target_process.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/util/errno_status.h"

namespace procwarp::testing {

absl::StatusOr<TargetProcess> TargetProcess::Start(
    const std::vector<std::string>& argv, const Options& options) {
  // A target that died must fail the test, not kill it with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2], report[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(report, O_CLOEXEC) != 0) {
    return ErrnoStatus(errno, "pipe2");
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) env_store.push_back(*e);
  for (const std::string& e : options.env) env_store.push_back(e);
  std::vector<char*> env;
  for (std::string& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);

  pid_t middle = fork();
  if (middle < 0) return ErrnoStatus(errno, "fork");
  if (middle == 0) {
    pid_t target = fork();
    if (target == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      if (options.uid >= 0) {
        if (setgroups(0, nullptr) != 0 || setresgid(options.uid, options.uid, options.uid) != 0 ||
            setresuid(options.uid, options.uid, options.uid) != 0) {
          _exit(126);
        }
      }
      execve(args[0], args.data(), env.data());
      _exit(127);
    }
    (void)!write(report[1], &target, sizeof(target));
    _exit(target > 0 ? 0 : 1);
  }
  close(in[0]);
  close(out[1]);
  close(report[1]);
  int status = 0;
  waitpid(middle, &status, 0);
  TargetProcess t;
  ssize_t n = read(report[0], &t.pid_, sizeof(t.pid_));
  close(report[0]);
  if (n != sizeof(t.pid_) || t.pid_ <= 0) {
    close(in[1]);
    close(out[0]);
    return absl::InternalError("starting the target failed");
  }
  t.stdin_.Reset(in[1]);
  t.stdout_.Reset(out[0]);
  t.pidfd_.Reset(static_cast<int>(syscall(SYS_pidfd_open, t.pid_, 0)));
  if (!t.pidfd_) return ErrnoStatus(errno, "pidfd_open");
  return t;
}

TargetProcess::~TargetProcess() {
  if (pidfd_) {
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    WaitExit();
  }
}

UniqueFd TargetProcess::OpenPidfd() const {
  return UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
}

absl::StatusOr<std::string> TargetProcess::ReadLine() {
  for (;;) {
    size_t nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    char buf[4096];
    ssize_t n = read(stdout_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read(target stdout)");
    if (n == 0) return absl::OutOfRangeError(absl::StrCat("EOF; partial: ", pending_));
    pending_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> TargetProcess::ReadAll() {
  std::string out = std::move(pending_);
  pending_.clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(stdout_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read(target stdout)");
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

absl::Status TargetProcess::Write(const std::string& data) {
  if (write(stdin_.get(), data.data(), data.size()) !=
      static_cast<ssize_t>(data.size())) {
    return ErrnoStatus(errno, "write(target stdin)");
  }
  return absl::OkStatus();
}

void TargetProcess::WaitExit() const {
  struct pollfd p = {pidfd_.get(), POLLIN, 0};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
}

bool TargetProcess::Alive() const {
  return syscall(SYS_pidfd_send_signal, pidfd_.get(), 0, nullptr, 0) == 0;
}

std::string TargetProcess::Field(const std::string& line, const std::string& key) {
  for (absl::string_view part : absl::StrSplit(line, ' ')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.first == key) return std::string(kv.second);
  }
  return "";
}

ReadyTarget StartReady(const std::vector<std::string>& argv,
                       const TargetProcess::Options& options) {
  absl::StatusOr<TargetProcess> p = TargetProcess::Start(argv, options);
  if (!p.ok()) {
    fprintf(stderr, "cannot start %s: %s\n", argv[0].c_str(), p.status().ToString().c_str());
    abort();
  }
  absl::StatusOr<std::string> line = p->ReadLine();
  if (!line.ok() || line->rfind("ready", 0) != 0) {
    fprintf(stderr, "%s printed no ready line: %s\n", argv[0].c_str(),
            line.ok() ? line->c_str() : line.status().ToString().c_str());
    abort();
  }
  return ReadyTarget{*std::move(p), *line};
}

}  // namespace procwarp::testing
