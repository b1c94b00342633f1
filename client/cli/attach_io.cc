// The CLI's stdio pump for attached processes (see attach_io.h). The calling
// thread reads the Attach stream and writes output; one helper thread waits
// on stdin, a signalfd and a wake-up pipe, and turns them into stdin
// messages, Signal and ResizePty calls.
#include "client/cli/attach_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/cli/terminal.h"

namespace procwarp::cli {
namespace {

constexpr size_t kStdinChunkSize = 64 * 1024;

sigset_t ForwardedSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) {
    sigaddset(&set, signal);
  }
  return set;
}

absl::Status ErrnoError(absl::string_view call) {
  return absl::InternalError(absl::StrCat(call, " failed: ", strerror(errno)));
}

// Owns one file descriptor.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Writes all of `data` to `fd`, waiting out EINTR and a non-blocking fd.
// False when the fd fails (EPIPE: nobody reads our output any more).
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t written = write(fd, data.data(), data.size());
    if (written >= 0) {
      data.remove_prefix(written);
    } else if (errno == EAGAIN) {
      pollfd wait_writable = {.fd = fd, .events = POLLOUT};
      poll(&wait_writable, 1, -1);
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

// Sends the local terminal's size to the process's pty, if we have one.
void SendWindowSize(Process& process) {
  if (std::optional<v1::WindowSize> size = LocalWindowSize()) {
    process.ResizePty(size->rows(), size->cols()).IgnoreError();
  }
}

// The helper thread's side: everything that flows towards the daemon.
class InputPump {
 public:
  InputPump(Process& process, AttachSession& session, int signal_fd,
            int wake_fd, const AttachIoOptions& options)
      : process_(process),
        session_(session),
        signal_fd_(signal_fd),
        wake_fd_(wake_fd),
        options_(options),
        stdin_open_(options.forward_stdin) {}

  // Runs until the wake-up pipe is closed.
  void Run() {
    while (true) {
      pollfd fds[3] = {{.fd = wake_fd_, .events = POLLIN},
                       {.fd = signal_fd_, .events = POLLIN},
                       {.fd = stdin_open_ ? STDIN_FILENO : -1, .events = POLLIN}};
      if (poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) HandleSignal();
      if (fds[2].revents != 0) ForwardStdin();
    }
  }

 private:
  void HandleSignal() {
    signalfd_siginfo info;
    if (read(signal_fd_, &info, sizeof(info)) != sizeof(info)) return;
    const int signal = static_cast<int>(info.ssi_signo);
    // Failures are not fatal here: the attach stream reports a lost daemon,
    // and a process that already exited cannot be signalled or resized.
    if (signal == SIGWINCH) {
      if (options_.pty) SendWindowSize(process_);
      return;
    }
    if (!options_.forward_termination &&
        (signal == SIGTERM || signal == SIGHUP)) {
      // Stopping the CLI detaches it; the process is not ours to stop.
      detached_by_.store(signal);
      session_.Cancel();
      return;
    }
    process_.Signal(signal).IgnoreError();
  }

 public:
  // The signal that detached the CLI, or 0.
  int detached_by() const { return detached_by_.load(); }

 private:

  void ForwardStdin() {
    char buffer[kStdinChunkSize];
    const ssize_t n = read(STDIN_FILENO, buffer, sizeof(buffer));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n > 0 && session_.WriteStdin(absl::string_view(buffer, n)).ok()) {
      return;
    }
    // End of input (or a stdin we cannot read, or a closed stream).
    stdin_open_ = false;
    session_.CloseStdin().IgnoreError();
  }

  Process& process_;
  AttachSession& session_;
  const int signal_fd_;
  const int wake_fd_;
  const AttachIoOptions options_;
  bool stdin_open_;
  std::atomic<int> detached_by_{0};
};

// Reads the attach stream until the exit status arrives; output goes to our
// stdout/stderr. The first write to a closed stdout sends SIGPIPE to the
// process, as a local pipeline would.
absl::StatusOr<v1::ExitStatus> PumpOutput(Process& process,
                                          AttachSession& session) {
  bool output_broken[2] = {false, false};
  bool sent_sigpipe = false;
  while (true) {
    absl::StatusOr<v1::AttachResponse> next = session.Read();
    if (!next.ok()) return next.status();
    if (next->has_exit()) return next->exit();
    const bool is_stderr =
        next->output().stream() == v1::OUTPUT_STREAM_STDERR;
    const int fd = is_stderr ? STDERR_FILENO : STDOUT_FILENO;
    if (output_broken[is_stderr]) continue;
    if (!WriteAll(fd, next->output().data())) {
      output_broken[is_stderr] = true;
      if (!is_stderr && !sent_sigpipe) {
        sent_sigpipe = true;
        process.Signal(SIGPIPE).IgnoreError();
      }
    }
  }
}

}  // namespace

absl::Status BlockForwardedSignals() {
  const sigset_t set = ForwardedSignals();
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) {
    return ErrnoError("sigprocmask(SIG_BLOCK)");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> RunAttached(Process& process,
                                const AttachIoOptions& options) {
  // Writes to a closed stdout must fail with EPIPE rather than kill us, so
  // that the process is told (SIGPIPE) and the terminal is restored.
  signal(SIGPIPE, SIG_IGN);

  const sigset_t signals = ForwardedSignals();
  UniqueFd signal_fd(signalfd(-1, &signals, SFD_CLOEXEC));
  if (signal_fd.get() < 0) return ErrnoError("signalfd");
  int wake_pipe[2];
  if (pipe2(wake_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  UniqueFd wake_read(wake_pipe[0]);
  // Closing the write end is what wakes the input thread: that cannot fail.
  std::optional<UniqueFd> wake_write(std::in_place, wake_pipe[1]);

  std::optional<RawTerminalMode> raw_mode;
  if (options.pty) {
    if (isatty(STDIN_FILENO)) {
      absl::StatusOr<RawTerminalMode> raw = RawTerminalMode::Enable(STDIN_FILENO);
      if (!raw.ok()) return raw.status();
      raw_mode.emplace(*std::move(raw));
    }
    SendWindowSize(process);
  }

  absl::StatusOr<AttachSession> session =
      process.Attach({.no_replay = options.no_replay});
  if (!session.ok()) return session.status();

  InputPump input(process, *session, signal_fd.get(), wake_read.get(),
                  options);
  std::thread input_thread([&input] { input.Run(); });
  absl::StatusOr<v1::ExitStatus> exit = PumpOutput(process, *session);

  // The exit status is the stream's last message: nothing is lost by
  // cancelling, and cancelling frees an input thread blocked in a write.
  session->Cancel();
  wake_write.reset();
  input_thread.join();
  session->Finish().IgnoreError();

  if (input.detached_by() != 0) {
    std::cerr << "procwarp: detached from process " << process.id()
              << " (it keeps running; `procwarp attach " << process.id()
              << "` to come back)" << std::endl;
    return kDetachedBySignalBase + input.detached_by();
  }
  if (!exit.ok()) {
    return absl::Status(
        exit.status().code(),
        absl::StrCat("lost the stdio stream of process ", process.id(),
                     " before it exited: ", exit.status().message()));
  }
  return ShellExitCode(*exit);
}

}  // namespace procwarp::cli
