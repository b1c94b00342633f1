// Raw mode and window size of the local terminal (see terminal.h).
#include "client/cli/terminal.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace procwarp::cli {

absl::StatusOr<RawTerminalMode> RawTerminalMode::Enable(int fd) {
  termios saved;
  if (tcgetattr(fd, &saved) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("tcgetattr(fd=", fd, ") failed: ", strerror(errno)));
  }
  termios raw = saved;
  cfmakeraw(&raw);
  if (tcsetattr(fd, TCSADRAIN, &raw) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("tcsetattr(fd=", fd, ", raw) failed: ", strerror(errno)));
  }
  return RawTerminalMode(fd, saved);
}

RawTerminalMode::RawTerminalMode(RawTerminalMode&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), saved_(other.saved_) {}

RawTerminalMode::~RawTerminalMode() {
  // Best effort: there is nobody left to report a failure to.
  if (fd_ >= 0) tcsetattr(fd_, TCSADRAIN, &saved_);
}

std::optional<v1::WindowSize> LocalWindowSize() {
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    winsize size = {};
    if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 &&
        size.ws_col > 0) {
      v1::WindowSize result;
      result.set_rows(size.ws_row);
      result.set_cols(size.ws_col);
      return result;
    }
  }
  return std::nullopt;
}

}  // namespace procwarp::cli
