// AgentConnection: the daemon's end of one procwarp-agent's socket. Sends
// requests as agent/protocol.h lays them out, pipelined and tagged, and reads
// the replies (with room for SCM_RIGHTS, since SEND_FD replies carry fds).
//
// One Run() at a time per agent (a mutex), so concurrent RPCs on one thread
// serialize instead of interleaving their requests on the stream. Writing and
// reading are interleaved in one poll loop, so a batch larger than the socket
// buffers cannot deadlock, and the agent's pidfd is in the same poll set, so a
// dead agent turns into UNAVAILABLE instead of a hang (even when a child of
// the agent still holds the socket open).
//
// Everything read from the socket is untrusted input: the agent runs with the
// caller's credentials, and the caller can take its socket over
// (pidfd_getfd) and write anything. Replies are parsed strictly (tags in
// order, each naming the op of the request it answers, payload lengths no
// longer than asked for, an fd exactly where the protocol puts one), fds are
// accepted one per message and only a few at a time, and anything else is a
// protocol violation: every fd received is closed, the agent is killed and
// the connection stays broken with a message saying what the agent did.
#ifndef PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_
#define PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "agent/protocol.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

// One request to the agent (see agent/protocol.h for the ops).
struct AgentCall {
  uint32_t op = PW_OP_SYSCALL;
  uint32_t flags = 0;
  int64_t nr = 0;
  uint64_t args[6] = {0, 0, 0, 0, 0, 0};
  // WRITE_MEM: the data (args[1] must equal its size). Not owned.
  absl::string_view payload;
  // RECV_FD: the fd to pass with SCM_RIGHTS. Not owned.
  int fd_to_pass = -1;
  // READ_MEM: where the data goes (room for args[1] bytes). Not owned.
  char* read_into = nullptr;

  static AgentCall Syscall(int64_t nr, absl::Span<const uint64_t> args = {});
};

struct AgentReply {
  // The raw kernel-style result: >= 0, or -errno.
  int64_t result = 0;
  // SEND_FD: the fd the agent sent; CLONE: the child's pidfd.
  UniqueFd fd;
};

// Returns true once the caller no longer wants the answer (e.g. its RPC was
// cancelled). Polled about every 100 ms while waiting on the agent.
using CancelCheck = std::function<bool()>;

class AgentConnection {
 public:
  // Takes the daemon's end of the agent's socket and the agent's pidfd (not
  // owned; it must outlive this object), and reads and checks the hello.
  // `name` ("thread ID (pid N)") goes into error messages.
  static absl::StatusOr<std::unique_ptr<AgentConnection>> Open(
      UniqueFd socket, int pidfd, std::string name);

  // Takes over the connection to an agent that a previous daemon started
  // (docs/architecture.md, "Restart without loss"): `socket` is a duplicate
  // of that daemon's end, `hello` the hello it read. The stream may still
  // hold replies to the old daemon's requests, so it is resynchronised
  // first: a getpid request with a tag the old daemon never used, and
  // everything before its reply skipped (fds closed), boundedly in time and
  // bytes. UNAVAILABLE when the agent does not answer it (gone, exec'd, or
  // the stream is not at a request boundary).
  static absl::StatusOr<std::unique_ptr<AgentConnection>> Adopt(
      UniqueFd socket, int pidfd, std::string name, const pw_agent_hello& hello);

  AgentConnection(const AgentConnection&) = delete;
  AgentConnection& operator=(const AgentConnection&) = delete;

  const pw_agent_hello& hello() const { return hello_; }
  // The daemon's end of the socket, for a keeper to hold a duplicate of.
  int socket_fd() const { return socket_.get(); }

  // What the agent did that broke the protocol, "" if it did not (even if
  // the connection broke otherwise). Never waits for a Run in progress.
  std::string ViolationReason() const;

  // Runs `calls` in order and fills `replies` (one per call, same order).
  // UNAVAILABLE when the agent is gone, the stream broke or the agent broke
  // the protocol; CANCELLED when `cancelled` says so, either while waiting
  // for another Run on this connection to finish or while waiting for the
  // agent (late replies are then skipped by later calls).
  absl::Status Run(absl::Span<const AgentCall> calls,
                   std::vector<AgentReply>* replies,
                   const CancelCheck& cancelled = nullptr);

  // One syscall; the raw result.
  absl::StatusOr<int64_t> Syscall(int64_t nr,
                                  absl::Span<const uint64_t> args = {},
                                  const CancelCheck& cancelled = nullptr);

 private:
  AgentConnection(UniqueFd socket, int pidfd, std::string name);
  // A connection on `socket` whose reads wait at most kWaitSliceMs each;
  // neither hello nor resync yet (Open, Adopt).
  static absl::StatusOr<std::unique_ptr<AgentConnection>> Create(
      UniqueFd socket, int pidfd, std::string name);

  // The outgoing bytes of one Run and where RECV_FD fds ride along.
  struct Outgoing {
    std::string bytes;
    // Byte offsets where each request ends (for stopping cleanly on cancel).
    std::vector<size_t> request_ends;
    // (end of the carrying request, fd), in order.
    std::deque<std::pair<size_t, int>> fds;
    size_t sent = 0;
  };

  // What a reply must look like: the op and, for READ_MEM, the most data
  // of the request it answers.
  struct Expected {
    uint32_t op = 0;
    uint64_t max_payload = 0;
  };
  // An fd that came with the recvmsg that returned stream bytes
  // [first, end): it belongs to the last reply starting in that range.
  struct ReceivedFd {
    uint64_t first = 0;
    uint64_t end = 0;
    UniqueFd fd;
  };

  absl::Status ReadHello();
  // Whether hello_ is one this daemon speaks with.
  absl::Status CheckHello();
  // See Adopt.
  absl::Status Resync();
  // One Run at a time: waits for the previous one to end, polling
  // `cancelled` every kWaitSliceMs. Fails once the connection is broken.
  absl::Status TakeTurn(const CancelCheck& cancelled);
  void ReleaseTurn();
  void Encode(absl::Span<const AgentCall> calls, uint64_t first_tag,
              Outgoing* out);
  // Sends what the socket takes without blocking.
  absl::Status SendSome(Outgoing* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads what is available; EOF is UNAVAILABLE. With `wait`, blocks until
  // something arrives or the socket's receive timeout (kWaitSliceMs) passes.
  // Stops early while kMaxQueuedFds fds wait to be claimed by a parse.
  absl::Status ReceiveSome(bool* got_data, bool wait = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the fds (if any) that came with one recvmsg of stream bytes
  // [first, end); more than one, a truncated or unknown control message is a
  // violation.
  absl::Status TakeFds(const struct msghdr& msg, uint64_t first, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The end of a Run whose replies are all in.
  absl::Status AllAnswered(const Outgoing& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a cancelled Run at a request boundary, so the stream stays in sync;
  // the replies still due to its sent requests are dropped by later Runs.
  absl::Status StopCancelledRun(absl::Span<const AgentCall> calls,
                                uint64_t first_tag, Outgoing* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes whatever an agent that has exited wrote before it died.
  absl::Status DrainExited(absl::Span<const AgentCall> calls,
                           uint64_t first_tag, std::vector<AgentReply>* replies,
                           size_t* done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AgentExited() const;
  // Consumes buffered replies; counts those for the current Run. A reply
  // that breaks the protocol is a violation.
  absl::Status Parse(absl::Span<const AgentCall> calls, uint64_t first_tag,
                     std::vector<AgentReply>* replies, size_t* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `n` buffered bytes as parsed.
  void Consume(size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stream offset just past the last byte received.
  uint64_t ReceivedEnd() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return parsed_ + (in_end_ - in_begin_);
  }
  absl::Status Broken(std::string why, bool violation = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The agent broke the protocol: closes every fd received, kills the agent
  // and breaks the connection, saying `what` it did.
  absl::Status Violation(absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UniqueFd socket_;
  const int pidfd_;
  const std::string name_;
  pw_agent_hello hello_{};

  // Taken only briefly (never across a wait on the agent), so
  // BrokenReason() and a Run waiting for its turn never wait on a stalled
  // agent. Lock order: mu_, then state_mu_.
  mutable absl::Mutex state_mu_;
  bool idle_ ABSL_GUARDED_BY(state_mu_) = true;  // no Run holds the turn
  // Set once the stream can no longer be used; every later Run fails.
  std::string broken_ ABSL_GUARDED_BY(state_mu_);
  // Whether broken_ says how the agent broke the protocol.
  bool violation_ ABSL_GUARDED_BY(state_mu_) = false;

  // Held by the Run that has the turn (and by ReadHello).
  absl::Mutex mu_;
  bool violated_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_tag_ ABSL_GUARDED_BY(mu_) = 1;
  // Tag of the next reply due: every tag below next_tag_ went out in a
  // request, in order, and is answered once, in order.
  uint64_t expected_tag_ ABSL_GUARDED_BY(mu_) = 1;
  // Requests of cancelled Runs still due a reply (tags from expected_tag_).
  std::deque<Expected> stale_ ABSL_GUARDED_BY(mu_);
  // Received bytes not yet parsed: in_[in_begin_, in_end_).
  std::unique_ptr<char[]> in_ ABSL_GUARDED_BY(mu_);
  size_t in_begin_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_end_ ABSL_GUARDED_BY(mu_) = 0;
  // Stream offset of in_[in_begin_] (bytes parsed so far, hello included).
  uint64_t parsed_ ABSL_GUARDED_BY(mu_) = 0;
  // Fds received and not yet claimed by their reply (at most
  // kMaxQueuedFds).
  std::deque<ReceivedFd> fds_ ABSL_GUARDED_BY(mu_);
  // A READ_MEM reply whose data is still arriving.
  uint64_t payload_left_ ABSL_GUARDED_BY(mu_) = 0;
  char* payload_into_ ABSL_GUARDED_BY(mu_) = nullptr;  // null: discard
  // Whether that reply is one of the current Run's (counted when complete).
  bool payload_current_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_
