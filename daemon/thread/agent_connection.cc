// See agent_connection.h.
#include "daemon/thread/agent_connection.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr size_t kInBufferSize = 256 * 1024;
// Most fds one recvmsg can bring: the agent sends one per message, but a
// read may span several.
constexpr size_t kMaxFdsPerRead = 64;
// How often a wait wakes up to ask whether the caller still wants the answer
// and whether the agent is still alive.
constexpr int kWaitSliceMs = 100;
// The hello comes right after execve; a silent agent is broken.
constexpr int kHelloTimeoutMs = 10000;

}  // namespace

AgentCall AgentCall::Syscall(int64_t nr, absl::Span<const uint64_t> args) {
  AgentCall call;
  call.op = PW_OP_SYSCALL;
  call.nr = nr;
  for (size_t i = 0; i < args.size() && i < 6; ++i) call.args[i] = args[i];
  return call;
}

AgentConnection::AgentConnection(UniqueFd socket, int pidfd, std::string name)
    : socket_(std::move(socket)), pidfd_(pidfd), name_(std::move(name)) {
  absl::MutexLock lock(&mu_);
  in_.resize(kInBufferSize);
}

absl::StatusOr<std::unique_ptr<AgentConnection>> AgentConnection::Open(
    UniqueFd socket, int pidfd, std::string name) {
  // Waits for replies happen in recvmsg itself (see Run); this bounds them.
  timeval slice = {0, kWaitSliceMs * 1000};
  if (setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &slice,
                 sizeof(slice)) != 0) {
    return ErrnoStatus(errno, "setsockopt(agent socket, SO_RCVTIMEO)");
  }
  std::unique_ptr<AgentConnection> connection(
      new AgentConnection(std::move(socket), pidfd, std::move(name)));
  RETURN_IF_ERROR(connection->ReadHello());
  return connection;
}

absl::Status AgentConnection::Broken(std::string why) {
  if (broken_.empty()) broken_ = std::move(why);
  return absl::UnavailableError(broken_);
}

absl::Status AgentConnection::ReadHello() {
  absl::MutexLock lock(&mu_);
  while (in_end_ < sizeof(pw_agent_hello)) {
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {pidfd_, POLLIN, 0}};
    int ready = poll(fds, 2, kHelloTimeoutMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus(errno, "poll(agent socket)");
    if (ready == 0) {
      return Broken(absl::StrCat(name_, ": no hello from procwarp-agent in ",
                                 kHelloTimeoutMs / 1000, " s"));
    }
    bool got_data = false;
    RETURN_IF_ERROR(ReceiveSome(&got_data));
    if (!got_data && (fds[1].revents & POLLIN)) {
      return Broken(absl::StrCat(name_, ": procwarp-agent exited at start-up"));
    }
  }
  memcpy(&hello_, in_.data(), sizeof(hello_));
  in_begin_ = sizeof(hello_);
  if (hello_.magic != PW_AGENT_MAGIC ||
      hello_.version != PW_AGENT_PROTOCOL_VERSION ||
      hello_.hello_size != sizeof(pw_agent_hello) ||
      hello_.request_size != sizeof(pw_agent_request) ||
      hello_.response_size != sizeof(pw_agent_response)) {
    return Broken(absl::StrCat(
        name_, ": procwarp-agent speaks another protocol (magic ",
        absl::Hex(hello_.magic), ", version ", hello_.version,
        "); install the agent built with this daemon"));
  }
  if (!fds_.empty()) return Broken(absl::StrCat(name_, ": fd sent with hello"));
  return absl::OkStatus();
}

void AgentConnection::Encode(absl::Span<const AgentCall> calls,
                             uint64_t first_tag, Outgoing* out) {
  size_t total = 0;
  for (const AgentCall& call : calls) {
    total += sizeof(pw_agent_request) + call.payload.size();
  }
  out->bytes.resize(total);
  out->request_ends.reserve(calls.size());
  char* p = out->bytes.data();
  uint64_t tag = first_tag;
  for (const AgentCall& call : calls) {
    pw_agent_request req{};
    req.op = call.op;
    req.flags = call.flags;
    req.nr = call.nr;
    memcpy(req.args, call.args, sizeof(req.args));
    req.tag = tag++;
    memcpy(p, &req, sizeof(req));
    p += sizeof(req);
    if (!call.payload.empty()) {
      memcpy(p, call.payload.data(), call.payload.size());
      p += call.payload.size();
    }
    size_t end = p - out->bytes.data();
    out->request_ends.push_back(end);
    if (call.fd_to_pass >= 0) out->fds.emplace_back(end, call.fd_to_pass);
  }
}

absl::Status AgentConnection::SendSome(Outgoing* out) {
  while (out->sent < out->bytes.size()) {
    // A passed fd rides on a sendmsg that ends no later than its request,
    // so it reaches the agent's queue before the RECV_FD that takes it.
    size_t end = out->bytes.size();
    int fd = -1;
    if (!out->fds.empty()) {
      end = out->fds.front().first;
      fd = out->fds.front().second;
    }
    iovec iov = {out->bytes.data() + out->sent, end - out->sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ssize_t n = sendmsg(socket_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return absl::OkStatus();
      return Broken(absl::StrCat(name_, ": sending to procwarp-agent failed: ",
                                 strerror(errno)));
    }
    out->sent += n;
    if (!out->fds.empty()) {
      // Sent: the rest of this segment goes without it (-2 = already sent).
      out->fds.front().second = -2;
      if (out->sent >= out->fds.front().first) out->fds.pop_front();
    }
  }
  return absl::OkStatus();
}

absl::Status AgentConnection::ReceiveSome(bool* got_data, bool wait) {
  *got_data = false;
  for (;;) {
    if (in_begin_ == in_end_) {
      in_begin_ = in_end_ = 0;
    } else if (in_end_ == in_.size()) {
      if (in_begin_ == 0) return absl::OkStatus();  // full: parse first
      std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    iovec iov = {in_.data() + in_end_, in_.size() - in_end_};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(socket_.get(), &msg,
                        (wait ? 0 : MSG_DONTWAIT) | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return absl::OkStatus();
      return Broken(absl::StrCat(name_, ": reading from procwarp-agent failed: ",
                                 strerror(errno)));
    }
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr;
         cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        fds_.emplace_back(fd);
      }
    }
    if (n == 0) {
      return Broken(absl::StrCat(name_, ": procwarp-agent closed its socket (",
                                 "the thread exited or closed fd ",
                                 hello_.socket_fd, ")"));
    }
    *got_data = true;
    wait = false;  // got something: take only what else is already there
    in_end_ += n;
    if (in_end_ < in_.size()) return absl::OkStatus();
  }
}

void AgentConnection::Parse(absl::Span<const AgentCall> calls,
                            uint64_t first_tag,
                            std::vector<AgentReply>* replies, size_t* done) {
  for (;;) {
    if (payload_left_ > 0) {
      size_t n = std::min<uint64_t>(payload_left_, in_end_ - in_begin_);
      if (n == 0) return;
      if (payload_into_ != nullptr) {
        memcpy(payload_into_, in_.data() + in_begin_, n);
        payload_into_ += n;
      }
      in_begin_ += n;
      payload_left_ -= n;
      if (payload_left_ > 0) return;
      if (payload_into_ != nullptr) ++*done;
      payload_into_ = nullptr;
      continue;
    }
    if (in_end_ - in_begin_ < sizeof(pw_agent_response)) return;
    pw_agent_response resp;
    memcpy(&resp, in_.data() + in_begin_, sizeof(resp));
    in_begin_ += sizeof(resp);
    // Replies to an earlier, cancelled Run have smaller tags: dropped.
    bool current = resp.tag >= first_tag && resp.tag < first_tag + calls.size();
    size_t index = resp.tag - first_tag;
    UniqueFd fd;
    // SEND_FD and CLONE replies that succeeded carry one fd each.
    if ((resp.op == PW_OP_SEND_FD || resp.op == PW_OP_CLONE) &&
        resp.result >= 0 && !fds_.empty()) {
      fd = std::move(fds_.front());
      fds_.pop_front();
    }
    if (current) {
      (*replies)[index].result = resp.result;
      (*replies)[index].fd = std::move(fd);
    }
    if (resp.payload_len > 0) {
      payload_left_ = resp.payload_len;
      // Never more than was asked for (the agent never sends more).
      bool fits = current && calls[index].read_into != nullptr &&
                  resp.payload_len <= calls[index].args[1];
      payload_into_ = fits ? calls[index].read_into : nullptr;
      if (current && !fits) (*replies)[index].result = -EIO;
      if (current && !fits) ++*done;
      continue;
    }
    if (current) ++*done;
  }
}

absl::Status AgentConnection::Run(absl::Span<const AgentCall> calls,
                                  std::vector<AgentReply>* replies,
                                  const CancelCheck& cancelled) {
  absl::MutexLock lock(&mu_);
  if (!broken_.empty()) return absl::UnavailableError(broken_);
  replies->clear();
  replies->resize(calls.size());
  if (calls.empty()) return absl::OkStatus();
  // A READ_MEM of a cancelled Run may still be arriving: its buffer is gone.
  payload_into_ = nullptr;
  const uint64_t first_tag = next_tag_;
  next_tag_ += calls.size();
  Outgoing out;
  Encode(calls, first_tag, &out);

  size_t done = 0;
  bool agent_exited = false;
  for (;;) {
    RETURN_IF_ERROR(SendSome(&out));
    Parse(calls, first_tag, replies, &done);
    if (done == calls.size()) return absl::OkStatus();
    if (agent_exited) {
      return Broken(absl::StrCat(name_, ": the thread has exited"));
    }
    bool got_data = false;
    bool timed_out = false;
    absl::Status received;
    if (out.sent == out.bytes.size()) {
      // Everything is sent: wait in recvmsg itself, one syscall where poll +
      // recvmsg would be two (this is the path of every unary Syscall).
      received = ReceiveSome(&got_data, /*wait=*/true);
      if (received.ok() && !got_data) {
        timed_out = true;
        // The socket's end may outlive the agent (a child it forked holds
        // it), so silence is also the moment to look at the pidfd.
        agent_exited = AgentExited();
      }
    } else {
      pollfd fds[2] = {{socket_.get(), POLLIN | POLLOUT, 0}, {pidfd_, POLLIN, 0}};
      int ready = poll(fds, 2, kWaitSliceMs);
      if (ready < 0 && errno != EINTR) return ErrnoStatus(errno, "poll(agent)");
      timed_out = ready == 0;
      agent_exited = (fds[1].revents & POLLIN) != 0;
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        received = ReceiveSome(&got_data);
      }
    }
    if (!received.ok()) {
      // Whatever arrived before the EOF still counts (e.g. EXIT's reply).
      Parse(calls, first_tag, replies, &done);
      if (done == calls.size()) return absl::OkStatus();
      return received;
    }
    if (agent_exited) DrainExited(calls, first_tag, replies, &done);
    if (timed_out && cancelled && cancelled()) return StopCancelledRun(&out);
  }
}

absl::Status AgentConnection::StopCancelledRun(Outgoing* out) {
  // The replies still to come are dropped by later Runs (by tag).
  auto boundary = std::lower_bound(out->request_ends.begin(),
                                   out->request_ends.end(), out->sent);
  if (boundary != out->request_ends.end()) out->bytes.resize(*boundary);
  RETURN_IF_ERROR(SendSome(out));
  if (out->sent < out->bytes.size()) {
    return Broken(
        absl::StrCat(name_, ": a cancelled call left a request half-sent"));
  }
  return absl::CancelledError(
      absl::StrCat(name_, ": call cancelled while the thread was busy"));
}

void AgentConnection::DrainExited(absl::Span<const AgentCall> calls,
                                  uint64_t first_tag,
                                  std::vector<AgentReply>* replies,
                                  size_t* done) {
  bool got_data = true;
  while (got_data) {
    absl::Status received = ReceiveSome(&got_data);
    Parse(calls, first_tag, replies, done);
    if (!received.ok()) break;
  }
}

bool AgentConnection::AgentExited() const {
  pollfd exited = {pidfd_, POLLIN, 0};
  return poll(&exited, 1, 0) == 1 && (exited.revents & POLLIN) != 0;
}

absl::StatusOr<int64_t> AgentConnection::Syscall(
    int64_t nr, absl::Span<const uint64_t> args, const CancelCheck& cancelled) {
  AgentCall call = AgentCall::Syscall(nr, args);
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(Run(absl::MakeConstSpan(&call, 1), &replies, cancelled));
  return replies[0].result;
}

}  // namespace procwarp
