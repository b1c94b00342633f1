// See agent_connection.h.
#include "daemon/thread/agent_connection.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr size_t kInBufferSize = 256 * 1024;
// The protocol puts at most one fd on a message (SEND_FD and CLONE replies
// are each written by a sendmsg of their own), and the kernel never returns
// two fd-carrying messages from one recvmsg. The control buffer is sized for
// that; more is a violation (the kernel still installs what fits: closed).
constexpr size_t kMaxFdsPerMessage = 1;
// Fds received and waiting for the reply that claims them. A well-behaved
// agent leaves at most one waiting after a parse (the one whose reply has
// not fully arrived yet), so reading pauses at this many until a parse has
// claimed them, and the daemon never holds more for one agent.
constexpr size_t kMaxQueuedFds = 8;
// How often a wait wakes up to ask whether the caller still wants the answer
// and whether the agent is still alive.
constexpr int kWaitSliceMs = 100;
// The hello comes right after execve; a silent agent is broken.
constexpr int kHelloTimeoutMs = 10000;

// Resynchronising an adopted connection (AgentConnection::Adopt): the
// marker's tag (the old daemon counted up from 1, and after an adoption from
// above it), the bound on stale bytes skipped, and the time allowed.
constexpr uint64_t kResyncTag = uint64_t{1} << 63;
constexpr uint64_t kMaxResyncSkipBytes = 64ull << 20;
constexpr int kResyncTimeoutMs = 5000;

// Largest magnitude of a -errno result.
constexpr int64_t kMaxErrno = 4095;

const char* OpName(uint32_t op) {
  switch (op) {
    case PW_OP_SYSCALL: return "SYSCALL";
    case PW_OP_READ_MEM: return "READ_MEM";
    case PW_OP_WRITE_MEM: return "WRITE_MEM";
    case PW_OP_SEND_FD: return "SEND_FD";
    case PW_OP_RECV_FD: return "RECV_FD";
    case PW_OP_EXIT: return "EXIT";
    case PW_OP_CLONE: return "CLONE";
    default: return "unknown op";
  }
}

// What is wrong with `resp` as the reply to a request of `expected_op`
// asking for at most `max_payload` bytes (READ_MEM), arriving with an fd
// (`has_fd`) or not; "" if nothing.
std::string CheckReply(const pw_agent_response& resp, uint32_t expected_op,
                       uint64_t max_payload, bool has_fd) {
  if (resp.op != expected_op) {
    return absl::StrCat("answered a ", OpName(expected_op),
                        " request as op ", resp.op);
  }
  if (resp.reserved != 0) return "set the reserved field of a reply";
  if (expected_op != PW_OP_SYSCALL && resp.result < -kMaxErrno) {
    return absl::StrCat("answered ", OpName(expected_op), " with result ",
                        resp.result);
  }
  if (expected_op == PW_OP_READ_MEM && resp.result >= 0) {
    if (static_cast<uint64_t>(resp.result) != resp.payload_len ||
        resp.payload_len > max_payload) {
      return absl::StrCat("announced ", resp.payload_len, " bytes (result ",
                          resp.result, ") for a READ_MEM of ", max_payload);
    }
  } else if (resp.payload_len != 0) {
    return absl::StrCat("announced ", resp.payload_len, " bytes after a ",
                        OpName(expected_op), " reply that carries none");
  }
  bool expects_fd = (expected_op == PW_OP_SEND_FD ||
                     expected_op == PW_OP_CLONE) &&
                    resp.result >= 0;
  if (has_fd && !expects_fd) {
    return absl::StrCat("sent an fd with a ", OpName(expected_op),
                        " reply that carries none");
  }
  if (!has_fd && expects_fd) {
    return absl::StrCat("sent a successful ", OpName(expected_op),
                        " reply without its fd");
  }
  return "";
}

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
  // Not zero-filled: its pages are touched only as replies arrive (zeroing
  // 256 KiB is 64 page faults per thread on these machines; DESIGN.md).
  in_.reset(new char[kInBufferSize]);
}

absl::StatusOr<std::unique_ptr<AgentConnection>> AgentConnection::Create(
    UniqueFd socket, int pidfd, std::string name) {
  // Waits for replies happen in recvmsg itself (see Run); this bounds them.
  timeval slice = {0, kWaitSliceMs * 1000};
  if (setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &slice,
                 sizeof(slice)) != 0) {
    return ErrnoStatus(errno, "setsockopt(agent socket, SO_RCVTIMEO)");
  }
  return std::unique_ptr<AgentConnection>(
      new AgentConnection(std::move(socket), pidfd, std::move(name)));
}

absl::StatusOr<std::unique_ptr<AgentConnection>> AgentConnection::Open(
    UniqueFd socket, int pidfd, std::string name) {
  ASSIGN_OR_RETURN(std::unique_ptr<AgentConnection> connection,
                   Create(std::move(socket), pidfd, std::move(name)));
  RETURN_IF_ERROR(connection->ReadHello());
  return connection;
}

absl::StatusOr<std::unique_ptr<AgentConnection>> AgentConnection::Adopt(
    UniqueFd socket, int pidfd, std::string name, const pw_agent_hello& hello) {
  ASSIGN_OR_RETURN(std::unique_ptr<AgentConnection> connection,
                   Create(std::move(socket), pidfd, std::move(name)));
  {
    absl::MutexLock lock(&connection->mu_);
    connection->hello_ = hello;
    RETURN_IF_ERROR(connection->CheckHello());
  }
  RETURN_IF_ERROR(connection->Resync());
  return connection;
}

absl::Status AgentConnection::Resync() {
  absl::MutexLock lock(&mu_);
  AgentCall marker = AgentCall::Syscall(SYS_getpid);
  // Replies the agent still buffers go out before it answers the marker.
  marker.flags = PW_REQ_FLUSH_FIRST;
  Outgoing out;
  Encode(absl::MakeConstSpan(&marker, 1), kResyncTag, &out);
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(kResyncTimeoutMs);
  uint64_t skipped = 0;
  for (;;) {
    RETURN_IF_ERROR(SendSome(&out));
    bool got_data = false;
    RETURN_IF_ERROR(ReceiveSome(&got_data));
    // Everything before the marker's reply answers the old daemon: skipped
    // whole (payloads too), its fds closed. Not checked: the agent's owner
    // may have written it, and it only ever reaches the bin.
    for (;;) {
      fds_.clear();
      if (payload_left_ > 0) {
        const size_t n = std::min<uint64_t>(payload_left_, in_end_ - in_begin_);
        if (n == 0) break;
        Consume(n);
        payload_left_ -= n;
        continue;
      }
      if (in_end_ - in_begin_ < sizeof(pw_agent_response)) break;
      pw_agent_response resp;
      memcpy(&resp, in_.get() + in_begin_, sizeof(resp));
      Consume(sizeof(resp));
      if (resp.tag == kResyncTag) {
        if (resp.op != PW_OP_SYSCALL || resp.payload_len != 0 ||
            resp.result != hello_.pid) {
          return Broken(absl::StrCat(
              name_, ": the agent answered the resynchronising getpid with "
                     "op ", resp.op, ", result ", resp.result, " (its hello says pid ",
              hello_.pid, ")"));
        }
        next_tag_ = expected_tag_ = kResyncTag + 1;
        return absl::OkStatus();
      }
      skipped += sizeof(resp) + resp.payload_len;
      if (skipped > kMaxResyncSkipBytes) {
        return Broken(absl::StrCat(name_, ": more than ", kMaxResyncSkipBytes,
                                   " bytes of old replies before the "
                                   "resynchronising getpid's"));
      }
      payload_left_ = resp.payload_len;
    }
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      return Broken(absl::StrCat(name_, ": no answer to the resynchronising "
                                        "getpid in ", kResyncTimeoutMs / 1000,
                                 " s"));
    }
    if (got_data) continue;
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {pidfd_, POLLIN, 0}};
    if (out.sent < out.bytes.size()) fds[0].events |= POLLOUT;
    int ready = poll(fds, 2, static_cast<int>(std::min<int64_t>(left_ms, kWaitSliceMs)));
    if (ready < 0 && errno != EINTR) return ErrnoStatus(errno, "poll(agent socket)");
    if (ready > 0 && (fds[1].revents & POLLIN) && !(fds[0].revents & POLLIN)) {
      return Broken(absl::StrCat(name_, ": procwarp-agent has exited"));
    }
  }
}

absl::Status AgentConnection::Broken(std::string why, bool violation) {
  absl::MutexLock lock(&state_mu_);
  if (broken_.empty()) {
    broken_ = std::move(why);
    violation_ = violation;
  }
  return absl::UnavailableError(broken_);
}

absl::Status AgentConnection::Violation(absl::string_view what) {
  if (!violated_) {
    violated_ = true;
    fds_.clear();
    // Whoever wrote this may be the caller holding the agent's socket, with
    // the real agent kept busy: neither is trusted again. The agent is the
    // daemon's child, not reaped yet, so the pidfd still names it (this
    // fails only if it has exited already).
    (void)syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
  }
  return Broken(absl::StrCat(name_, ": procwarp-agent broke the protocol (",
                             what, "), so the thread was killed"),
                /*violation=*/true);
}

std::string AgentConnection::ViolationReason() const {
  absl::MutexLock lock(&state_mu_);
  return violation_ ? broken_ : "";
}

void AgentConnection::Consume(size_t n) {
  in_begin_ += n;
  parsed_ += n;
}

absl::Status AgentConnection::ReadHello() {
  absl::MutexLock lock(&mu_);
  // One deadline for the whole hello: trickling it in does not extend it.
  const absl::Time deadline = absl::Now() + absl::Milliseconds(kHelloTimeoutMs);
  while (in_end_ < sizeof(pw_agent_hello)) {
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {pidfd_, POLLIN, 0}};
    const int64_t left_ms =
        absl::ToInt64Milliseconds(deadline - absl::Now());
    int ready = left_ms > 0 ? poll(fds, 2, static_cast<int>(left_ms)) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus(errno, "poll(agent socket)");
    if (ready == 0) {
      return Broken(absl::StrCat(name_, ": no hello from procwarp-agent in ",
                                 kHelloTimeoutMs / 1000, " s"));
    }
    bool got_data = false;
    RETURN_IF_ERROR(ReceiveSome(&got_data));
    // Checked at once: fds pause reading (kMaxQueuedFds), and none belongs
    // here anyway.
    if (!fds_.empty()) return Violation("sent an fd with its hello");
    if (!got_data && (fds[1].revents & POLLIN)) {
      return Broken(absl::StrCat(name_, ": procwarp-agent exited at start-up"));
    }
  }
  memcpy(&hello_, in_.get(), sizeof(hello_));
  Consume(sizeof(hello_));
  return CheckHello();
}

absl::Status AgentConnection::CheckHello() {
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
  return absl::OkStatus();
}

absl::Status AgentConnection::TakeTurn(const CancelCheck& cancelled) {
  absl::MutexLock lock(&state_mu_);
  if (!cancelled) {
    state_mu_.Await(absl::Condition(&idle_));
  } else {
    while (!state_mu_.AwaitWithTimeout(absl::Condition(&idle_),
                                       absl::Milliseconds(kWaitSliceMs))) {
      if (cancelled()) {
        return absl::CancelledError(absl::StrCat(
            name_, ": call cancelled while the thread was busy with another "
                   "call"));
      }
    }
  }
  if (!broken_.empty()) return absl::UnavailableError(broken_);
  idle_ = false;
  return absl::OkStatus();
}

void AgentConnection::ReleaseTurn() {
  absl::MutexLock lock(&state_mu_);
  idle_ = true;
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
    if (fds_.size() >= kMaxQueuedFds) return absl::OkStatus();  // parse first
    if (in_begin_ == in_end_) {
      in_begin_ = in_end_ = 0;
    } else if (in_end_ == kInBufferSize) {
      if (in_begin_ == 0) return absl::OkStatus();  // full: parse first
      std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    iovec iov = {in_.get() + in_end_, kInBufferSize - in_end_};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
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
    const uint64_t first = ReceivedEnd();
    RETURN_IF_ERROR(TakeFds(msg, first, first + static_cast<uint64_t>(n)));
    if (n == 0) {
      return Broken(absl::StrCat(name_, ": procwarp-agent closed its socket (",
                                 "the thread exited or closed fd ",
                                 hello_.socket_fd, ")"));
    }
    *got_data = true;
    wait = false;  // got something: take only what else is already there
    in_end_ += n;
    if (in_end_ < kInBufferSize) return absl::OkStatus();
  }
}

absl::Status AgentConnection::TakeFds(const msghdr& msg, uint64_t first,
                                      uint64_t end) {
  if (msg.msg_controllen == 0 && !(msg.msg_flags & MSG_CTRUNC)) {
    return absl::OkStatus();  // the common case: no fd
  }
  // Every fd the kernel installed is owned here first, so each one is
  // closed on every path that does not keep it.
  UniqueFd kept;
  std::string problem;
  if (msg.msg_flags & MSG_CTRUNC) {
    problem = "sent more fds in one message than the protocol allows";
  }
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr;
       cm = CMSG_NXTHDR(const_cast<msghdr*>(&msg), cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
      problem = absl::StrCat("sent control data of level ", cm->cmsg_level,
                             " type ", cm->cmsg_type);
      continue;
    }
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int raw;
      memcpy(&raw, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      UniqueFd fd(raw);
      if (kept) {
        problem = "sent more than one fd in one message";
      } else {
        kept = std::move(fd);
      }
    }
  }
  if (!problem.empty()) return Violation(problem);
  if (kept) fds_.push_back({first, end, std::move(kept)});
  return absl::OkStatus();
}

absl::Status AgentConnection::Parse(absl::Span<const AgentCall> calls,
                                    uint64_t first_tag,
                                    std::vector<AgentReply>* replies,
                                    size_t* done) {
  if (violated_) return Broken("");
  for (;;) {
    if (payload_left_ > 0) {
      size_t n = std::min<uint64_t>(payload_left_, in_end_ - in_begin_);
      if (n == 0) break;
      if (payload_into_ != nullptr) {
        memcpy(payload_into_, in_.get() + in_begin_, n);
        payload_into_ += n;
      }
      Consume(n);
      payload_left_ -= n;
      if (payload_left_ > 0) break;
      if (payload_current_) ++*done;
      payload_into_ = nullptr;
      payload_current_ = false;
      continue;
    }
    if (in_end_ - in_begin_ < sizeof(pw_agent_response)) break;
    const uint64_t at = parsed_;
    // An fd rides on a sendmsg of its reply alone, and a recvmsg returns no
    // bytes after such a message: so it belongs to the last reply starting
    // within the bytes of its recvmsg. One that came entirely before this
    // reply belongs to no reply.
    if (!fds_.empty() && fds_.front().end <= at) {
      return Violation("sent an fd where no reply carries one");
    }
    const bool has_fd = !fds_.empty() && fds_.front().first <= at &&
                        at + sizeof(pw_agent_response) >= fds_.front().end;
    pw_agent_response resp;
    memcpy(&resp, in_.get() + in_begin_, sizeof(resp));
    Consume(sizeof(resp));
    if (resp.tag != expected_tag_ || expected_tag_ >= next_tag_) {
      return Violation(absl::StrCat(
          "sent a reply tagged ", resp.tag, " where ",
          expected_tag_ < next_tag_ ? absl::StrCat("tag ", expected_tag_)
                                    : std::string("no reply"),
          " was due"));
    }
    ++expected_tag_;
    // Replies to an earlier, cancelled Run come first and are dropped.
    Expected expected;
    const bool current = stale_.empty();
    size_t index = 0;
    if (current) {
      // expected_tag_ < next_tag_ held, and no stale request is left, so
      // this tag is one of this Run's.
      index = resp.tag - first_tag;
      expected.op = calls[index].op;
      expected.max_payload = calls[index].args[1];
    } else {
      expected = stale_.front();
      stale_.pop_front();
    }
    std::string problem =
        CheckReply(resp, expected.op, expected.max_payload, has_fd);
    if (!problem.empty()) return Violation(problem);
    UniqueFd fd;
    if (has_fd) {
      fd = std::move(fds_.front().fd);
      fds_.pop_front();
    }
    if (current) {
      (*replies)[index].result = resp.result;
      (*replies)[index].fd = std::move(fd);
    }
    if (resp.payload_len > 0) {
      payload_left_ = resp.payload_len;
      // Checked above: never more than the request asked for.
      payload_into_ = current ? calls[index].read_into : nullptr;
      payload_current_ = current;
      continue;
    }
    if (current) ++*done;
  }
  // Nothing before `parsed_` can claim an fd any more, and a well-behaved
  // agent has at most one in flight: the one of the reply not yet complete.
  if (!fds_.empty() && fds_.front().end <= parsed_) {
    return Violation("sent an fd where no reply carries one");
  }
  if (fds_.size() > 1) {
    return Violation(absl::StrCat("sent ", fds_.size(),
                                  " fds ahead of the replies to carry them"));
  }
  return absl::OkStatus();
}

absl::Status AgentConnection::Run(absl::Span<const AgentCall> calls,
                                  std::vector<AgentReply>* replies,
                                  const CancelCheck& cancelled) {
  replies->clear();
  replies->resize(calls.size());
  RETURN_IF_ERROR(TakeTurn(cancelled));
  absl::Cleanup release = [this] { ReleaseTurn(); };
  absl::MutexLock lock(&mu_);
  if (calls.empty()) return absl::OkStatus();
  // A READ_MEM of a cancelled Run may still be arriving: its buffer is gone.
  payload_into_ = nullptr;
  payload_current_ = false;
  const uint64_t first_tag = next_tag_;
  next_tag_ += calls.size();
  Outgoing out;
  Encode(calls, first_tag, &out);

  size_t done = 0;
  bool agent_exited = false;
  for (;;) {
    RETURN_IF_ERROR(SendSome(&out));
    RETURN_IF_ERROR(Parse(calls, first_tag, replies, &done));
    if (done == calls.size()) return AllAnswered(out);
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
      // Whatever arrived before the EOF still counts (e.g. EXIT's reply);
      // nothing does after a violation (Parse says so).
      RETURN_IF_ERROR(Parse(calls, first_tag, replies, &done));
      if (done == calls.size()) return AllAnswered(out);
      return received;
    }
    if (agent_exited) {
      RETURN_IF_ERROR(DrainExited(calls, first_tag, replies, &done));
    }
    if (timed_out && cancelled && cancelled()) {
      return StopCancelledRun(calls, first_tag, &out);
    }
  }
}

absl::Status AgentConnection::AllAnswered(const Outgoing& out) {
  // An agent answers a request only after reading all of it.
  if (out.sent < out.bytes.size()) {
    return Violation("answered requests before they were sent");
  }
  return absl::OkStatus();
}

absl::Status AgentConnection::StopCancelledRun(
    absl::Span<const AgentCall> calls, uint64_t first_tag, Outgoing* out) {
  // Finish the request under way (if any), send no further one.
  size_t keep = 0;
  if (out->sent > 0) {
    keep = *std::lower_bound(out->request_ends.begin(),
                             out->request_ends.end(), out->sent);
  }
  out->bytes.resize(keep);
  // Fds of requests that will not go out stay here.
  while (!out->fds.empty() && out->fds.back().first > keep) out->fds.pop_back();
  RETURN_IF_ERROR(SendSome(out));
  if (out->sent < out->bytes.size()) {
    return Broken(
        absl::StrCat(name_, ": a cancelled call left a request half-sent"));
  }
  // The requests that went out are still answered, in order: later Runs
  // expect and drop those replies. Tags of the others are never used.
  const size_t sent_requests =
      std::upper_bound(out->request_ends.begin(), out->request_ends.end(),
                       out->sent) -
      out->request_ends.begin();
  size_t answered =
      expected_tag_ > first_tag ? static_cast<size_t>(expected_tag_ - first_tag) : 0;
  if (answered > sent_requests) {
    return Violation("answered requests it was never sent");
  }
  for (size_t i = answered; i < sent_requests; ++i) {
    stale_.push_back({calls[i].op, calls[i].args[1]});
  }
  next_tag_ = first_tag + sent_requests;
  payload_into_ = nullptr;
  payload_current_ = false;
  return absl::CancelledError(
      absl::StrCat(name_, ": call cancelled while the thread was busy"));
}

absl::Status AgentConnection::DrainExited(absl::Span<const AgentCall> calls,
                                          uint64_t first_tag,
                                          std::vector<AgentReply>* replies,
                                          size_t* done) {
  bool got_data = true;
  while (got_data) {
    absl::Status received = ReceiveSome(&got_data);
    RETURN_IF_ERROR(Parse(calls, first_tag, replies, done));
    if (!received.ok()) break;
  }
  return absl::OkStatus();
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
