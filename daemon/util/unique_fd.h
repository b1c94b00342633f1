// UniqueFd: the one owner of a file descriptor. Move-only; closes on
// destruction, so no fd is closed by hand twice or leaked on an error path.
#ifndef PROCWARP_DAEMON_UTIL_UNIQUE_FD_H_
#define PROCWARP_DAEMON_UTIL_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace procwarp {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }

  // Closes the current fd (if any) and takes `fd`.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_UNIQUE_FD_H_
