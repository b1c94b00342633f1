// The local terminal: raw mode while a pty session is attached, and the
// window size to send to the remote pty.
#ifndef PROCWARP_CLIENT_CLI_TERMINAL_H_
#define PROCWARP_CLIENT_CLI_TERMINAL_H_

#include <termios.h>

#include <optional>

#include "absl/status/statusor.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp::cli {

// Puts a terminal in raw mode (no line editing, echo or signal keys, so
// every byte reaches the remote pty) and restores the previous mode when
// destroyed. Move-only.
class RawTerminalMode {
 public:
  // Precondition: isatty(fd).
  static absl::StatusOr<RawTerminalMode> Enable(int fd);

  RawTerminalMode(RawTerminalMode&& other) noexcept;
  RawTerminalMode& operator=(RawTerminalMode&&) = delete;
  ~RawTerminalMode();

 private:
  RawTerminalMode(int fd, const termios& saved) : fd_(fd), saved_(saved) {}

  int fd_;
  termios saved_;
};

// The window size of the first of stdin, stdout, stderr that is a terminal;
// nullopt when none is.
std::optional<v1::WindowSize> LocalWindowSize();

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_TERMINAL_H_
