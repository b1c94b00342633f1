// See managed_process.h.
#include "daemon/process/managed_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"

namespace procwarp {
namespace {

using procwarp::v1::OutputStream;

int64_t NowUnixNs() { return absl::ToUnixNanos(absl::Now()); }

}  // namespace

ManagedProcess::ManagedProcess(procwarp::v1::ProcessInfo info,
                               const Identity& owner, SpawnedChild child,
                               size_t output_buffer_bytes)
    : id_(info.id()),
      owner_(owner),
      child_(std::move(child)),
      info_(std::move(info)),
      ring_(output_buffer_bytes) {
  info_.set_pid(child_.pid);
  info_.set_state(procwarp::v1::PROCESS_STATE_RUNNING);
  info_.set_started_unix_ns(NowUnixNs());
  info_.set_has_pty(child_.pty_master.valid());
  stdin_is_pty_ = !child_.stdin_pipe.valid() && child_.pty_master.valid();
}

void ManagedProcess::NoteStartTime() const {
  if (start_time_ticks_.load() != 0 || !child_.pidfd) return;
  auto start_time = ProcessStartTime(child_.pid);
  // Still running after the read (its pidfd not readable yet), so it was
  // running during it: the pid was surely this child's then.
  if (start_time.ok() && !PidfdExited(child_.pidfd.get())) {
    start_time_ticks_.store(*start_time);
    absl::MutexLock lock(&mu_);
    RecordChangedLocked();
  }
}

std::shared_ptr<ManagedProcess> ManagedProcess::Restore(
    const procwarp::state::v1::ProcessRecord& record, SpawnedChild child,
    size_t output_buffer_bytes, bool keeper_reports_exit) {
  const procwarp::v1::ProcessInfo& info = record.info();
  auto process = std::shared_ptr<ManagedProcess>(new ManagedProcess(
      info, Identity::FromProto(info.owner()), std::move(child),
      output_buffer_bytes));
  process->own_child_ = false;
  process->keeper_reports_exit_ = keeper_reports_exit;
  process->start_time_ticks_.store(record.start_time_ticks());
  // As recorded, not as the constructor guessed from the surviving fds.
  absl::MutexLock lock(&process->mu_);
  process->info_ = info;
  process->stdin_is_pty_ = record.pty() && !record.stdin_pipe() &&
                           process->child_.pty_master.valid();
  return process;
}

procwarp::state::v1::ProcessRecord ManagedProcess::Record() const {
  procwarp::state::v1::ProcessRecord record;
  *record.mutable_info() = Info();
  record.set_start_time_ticks(start_time_ticks_.load());
  record.set_stdin_pipe(child_.stdin_pipe.valid());
  record.set_stdout_pipe(child_.stdout_pipe.valid());
  record.set_stderr_pipe(child_.stderr_pipe.valid());
  record.set_pty(child_.pty_master.valid());
  return record;
}

void ManagedProcess::RecordChangedLocked() const {
  encoded_record_.clear();
  ++record_version_;
}

std::string ManagedProcess::EncodedRecord() const {
  uint64_t version;
  {
    absl::MutexLock lock(&mu_);
    if (!encoded_record_.empty()) return encoded_record_;
    version = record_version_;
  }
  std::string encoded = Record().SerializeAsString();
  absl::MutexLock lock(&mu_);
  // Unless it changed meanwhile (then the next call encodes it again).
  if (record_version_ == version) encoded_record_ = encoded;
  return encoded;
}

std::vector<std::pair<procwarp::state::v1::FdKind, int>> ManagedProcess::KeptFds()
    const {
  using procwarp::state::v1::FdKind;
  std::vector<std::pair<FdKind, int>> fds;
  auto add = [&](FdKind kind, const UniqueFd& fd) {
    if (fd) fds.push_back({kind, fd.get()});
  };
  add(procwarp::state::v1::FD_KIND_PIDFD, child_.pidfd);
  add(procwarp::state::v1::FD_KIND_STDIN, child_.stdin_pipe);
  add(procwarp::state::v1::FD_KIND_STDOUT, child_.stdout_pipe);
  add(procwarp::state::v1::FD_KIND_STDERR, child_.stderr_pipe);
  add(procwarp::state::v1::FD_KIND_PTY, child_.pty_master);
  return fds;
}

procwarp::v1::ProcessInfo ManagedProcess::Info() const {
  absl::MutexLock lock(&mu_);
  return info_;
}

bool ManagedProcess::exited() const {
  absl::MutexLock lock(&mu_);
  return info_.state() == procwarp::v1::PROCESS_STATE_EXITED;
}

std::vector<std::pair<int, OutputStream>> ManagedProcess::OutputFds() const {
  std::vector<std::pair<int, OutputStream>> fds;
  if (child_.stdout_pipe) {
    fds.push_back({child_.stdout_pipe.get(), procwarp::v1::OUTPUT_STREAM_STDOUT});
  }
  if (child_.stderr_pipe) {
    fds.push_back({child_.stderr_pipe.get(), procwarp::v1::OUTPUT_STREAM_STDERR});
  }
  if (child_.pty_master) {
    // A pty merges stdout and stderr into one stream.
    fds.push_back({child_.pty_master.get(), procwarp::v1::OUTPUT_STREAM_STDOUT});
  }
  return fds;
}

bool ManagedProcess::ReadOutput(int fd, OutputStream stream) {
  char buffer[65536];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      absl::MutexLock lock(&mu_);
      ring_.Append(stream, std::string(buffer, n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;  // EOF, or EIO once a pty's last slave fd closed
  }
}

bool ManagedProcess::Reap() {
  if (!own_child_) return false;  // its parent is a keeper (MarkExited)
  // Whatever the child wrote before it died is in the kernel's buffers now;
  // take it before recording the exit, so attachers see all of it first.
  for (const auto& [fd, stream] : OutputFds()) ReadOutput(fd, stream);
  auto reaped = ReapPidfd(child_.pidfd.get(), /*block=*/false);
  if (!reaped.ok() || !reaped->has_value()) return false;
  absl::MutexLock lock(&mu_);
  info_.set_state(procwarp::v1::PROCESS_STATE_EXITED);
  RecordChangedLocked();
  *info_.mutable_exit_status() = **reaped;
  info_.set_exited_unix_ns(NowUnixNs());
  exit_cursor_ = ring_.end();
  return true;
}

void ManagedProcess::MarkExited(
    const std::optional<procwarp::v1::ExitStatus>& status) {
  for (const auto& [fd, stream] : OutputFds()) ReadOutput(fd, stream);
  absl::MutexLock lock(&mu_);
  if (info_.state() == procwarp::v1::PROCESS_STATE_EXITED) return;
  info_.set_state(procwarp::v1::PROCESS_STATE_EXITED);
  RecordChangedLocked();
  if (status.has_value()) {
    *info_.mutable_exit_status() = *status;
  } else {
    info_.clear_exit_status();
  }
  info_.set_exited_unix_ns(NowUnixNs());
  exit_cursor_ = ring_.end();
}

bool ManagedProcess::AwaitExit(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return info_.state() == procwarp::v1::PROCESS_STATE_EXITED;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

uint64_t ManagedProcess::OutputCursor(bool replay) const {
  absl::MutexLock lock(&mu_);
  return replay ? ring_.begin() : ring_.end();
}

ManagedProcess::OutputUpdate ManagedProcess::AwaitOutput(
    uint64_t cursor, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this, cursor]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return ring_.end() > cursor ||
           info_.state() == procwarp::v1::PROCESS_STATE_EXITED;
  };
  OutputUpdate update;
  update.next_cursor = cursor;
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return update;
  bool exited = info_.state() == procwarp::v1::PROCESS_STATE_EXITED;
  // After the exit only the output read before it belongs to this run of
  // the attach stream; later output (from grandchildren) does not hold the
  // exit status back.
  uint64_t limit = exited ? exit_cursor_ : ring_.end();
  if (cursor < limit) {
    update.chunks = ring_.ReadFrom(cursor, 1 << 20, &update.next_cursor);
    while (!update.chunks.empty() &&
           update.chunks.back().sequence() >= limit) {
      update.chunks.pop_back();
      update.next_cursor = limit;
    }
  } else {
    update.next_cursor = std::max(cursor, ring_.begin());
  }
  if (exited && update.next_cursor >= exit_cursor_) {
    update.finished = true;
    update.exit = info_.exit_status();
  }
  return update;
}

int ManagedProcess::StdinFdLocked() const {
  if (stdin_closed_) return -1;
  if (child_.stdin_pipe) return child_.stdin_pipe.get();
  if (stdin_is_pty_) return child_.pty_master.get();
  return -1;
}

absl::Status ManagedProcess::WriteStdin(absl::string_view data,
                                        const std::function<bool()>& cancelled) {
  absl::MutexLock lock(&stdin_mu_);
  int fd = StdinFdLocked();
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", id_, " has no open stdin (spawn it with stdin as pipe or pty)"));
  }
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (cancelled()) return absl::CancelledError("attach cancelled");
      if (exited()) {
        return absl::FailedPreconditionError("process exited; stdin is gone");
      }
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, 100);  // bounded, so cancellation is noticed
      continue;
    }
    if (errno == EPIPE || errno == EIO) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", id_, " no longer reads its stdin"));
    }
    return ErrnoStatus(errno, absl::StrCat("write(stdin of ", id_, ")"));
  }
  return absl::OkStatus();
}

absl::Status ManagedProcess::CloseStdin() {
  absl::MutexLock lock(&stdin_mu_);
  if (stdin_closed_) return absl::OkStatus();
  if (child_.stdin_pipe) {
    child_.stdin_pipe.Reset();
  } else if (stdin_is_pty_) {
    // A terminal has no half-close: EOF is the VEOF character at the start
    // of a line.
    struct termios tio {};
    char eof = 4;
    if (tcgetattr(child_.pty_master.get(), &tio) == 0) eof = tio.c_cc[VEOF];
    (void)!write(child_.pty_master.get(), &eof, 1);
  }
  stdin_closed_ = true;
  return absl::OkStatus();
}

absl::Status ManagedProcess::Signal(int signal) const {
  // Exited (reaped, or never re-adopted after a restart): whatever has its
  // pid now is someone else.
  if (exited() || !child_.pidfd) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", id_, " has already exited"));
  }
  return SignalPidfd(child_.pidfd.get(), signal, child_.pid,
                     absl::StrCat("process ", id_));
}

absl::Status ManagedProcess::SignalFor(const Identity& caller,
                                       int signal) const {
  const std::string what = absl::StrCat("process ", id_);
  auto exited_error = [&] {
    return absl::FailedPreconditionError(absl::StrCat(what, " has already exited"));
  };
  if (exited() || !child_.pidfd) return exited_error();
  // The directory is bound to the process (checked through its pidfd), so
  // the credentials read are its own, not a recycled pid's.
  absl::StatusOr<ProcDir> dir = ProcDir::Open(child_.pid, child_.pidfd.get());
  if (absl::IsNotFound(dir.status())) return exited_error();
  if (!dir.ok()) return dir.status();
  absl::Status may = CheckCallerMayKill(caller, *dir, what);
  if (absl::IsNotFound(may)) return exited_error();
  if (!may.ok()) return may;
  return Signal(signal);
}

absl::Status ManagedProcess::ResizePty(uint32_t rows, uint32_t cols) const {
  if (!child_.pty_master) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", id_, " has no pty"));
  }
  struct winsize ws {};
  ws.ws_row = rows;
  ws.ws_col = cols;
  // The kernel sends SIGWINCH to the terminal's foreground process group.
  if (ioctl(child_.pty_master.get(), TIOCSWINSZ, &ws) != 0) {
    return ErrnoStatus(errno, "ioctl(TIOCSWINSZ)");
  }
  return absl::OkStatus();
}

}  // namespace procwarp
