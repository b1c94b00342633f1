// See io_loop.h.
#include "daemon/process/io_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"

namespace procwarp {

IoLoop::IoLoop()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_fd_ || !wake_fd_) abort();  // out of fds at start-up
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // token 0 is the wake-up
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0) {
    abort();
  }
  thread_ = std::thread([this] { Run(); });
}

IoLoop::~IoLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
  thread_.join();
}

absl::Status IoLoop::Watch(int fd, uint32_t events, Handler handler) {
  absl::MutexLock lock(&mu_);
  uint64_t token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, fd=", fd, ")"));
  }
  handlers_[token] = {fd, std::move(handler)};
  token_by_fd_[fd] = token;
  return absl::OkStatus();
}

void IoLoop::Unwatch(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = token_by_fd_.find(fd);
  if (it == token_by_fd_.end()) return;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(it->second);
  token_by_fd_.erase(it);
}

void IoLoop::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
}

void IoLoop::Run() {
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      abort();  // EBADF/EFAULT/EINVAL: a programming error
    }
    for (int i = 0; i < n; ++i) {
      uint64_t token = events[i].data.u64;
      if (token == 0) {
        uint64_t count;
        (void)!read(wake_fd_.get(), &count, sizeof(count));
        std::vector<std::function<void()>> tasks;
        {
          absl::MutexLock lock(&mu_);
          if (stopping_) return;
          tasks.swap(tasks_);
        }
        for (auto& task : tasks) task();
        continue;
      }
      Handler handler;
      {
        absl::MutexLock lock(&mu_);
        auto it = handlers_.find(token);
        if (it == handlers_.end()) continue;  // unwatched earlier in this batch
        handler = it->second.second;  // a copy: the handler may Unwatch itself
      }
      handler(events[i].events);
    }
  }
}

}  // namespace procwarp
