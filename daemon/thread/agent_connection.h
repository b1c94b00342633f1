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
#ifndef PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_
#define PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
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

  AgentConnection(const AgentConnection&) = delete;
  AgentConnection& operator=(const AgentConnection&) = delete;

  const pw_agent_hello& hello() const { return hello_; }

  // Runs `calls` in order and fills `replies` (one per call, same order).
  // UNAVAILABLE when the agent is gone or the stream broke; CANCELLED when
  // `cancelled` says so (late replies are then skipped by later calls).
  absl::Status Run(absl::Span<const AgentCall> calls,
                   std::vector<AgentReply>* replies,
                   const CancelCheck& cancelled = nullptr);

  // One syscall; the raw result.
  absl::StatusOr<int64_t> Syscall(int64_t nr,
                                  absl::Span<const uint64_t> args = {},
                                  const CancelCheck& cancelled = nullptr);

 private:
  AgentConnection(UniqueFd socket, int pidfd, std::string name);

  // The outgoing bytes of one Run and where RECV_FD fds ride along.
  struct Outgoing {
    std::string bytes;
    // Byte offsets where each request ends (for stopping cleanly on cancel).
    std::vector<size_t> request_ends;
    // (end of the carrying request, fd), in order.
    std::deque<std::pair<size_t, int>> fds;
    size_t sent = 0;
  };

  absl::Status ReadHello();
  void Encode(absl::Span<const AgentCall> calls, uint64_t first_tag,
              Outgoing* out);
  // Sends what the socket takes without blocking.
  absl::Status SendSome(Outgoing* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads what is available; EOF is UNAVAILABLE. With `wait`, blocks until
  // something arrives or the socket's receive timeout (kWaitSliceMs) passes.
  absl::Status ReceiveSome(bool* got_data, bool wait = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a cancelled Run at a request boundary, so the stream stays in sync.
  absl::Status StopCancelledRun(Outgoing* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes whatever an agent that has exited wrote before it died.
  void DrainExited(absl::Span<const AgentCall> calls, uint64_t first_tag,
                   std::vector<AgentReply>* replies, size_t* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AgentExited() const;
  // Consumes buffered replies; counts those for the current Run.
  void Parse(absl::Span<const AgentCall> calls, uint64_t first_tag,
             std::vector<AgentReply>* replies, size_t* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Broken(std::string why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UniqueFd socket_;
  const int pidfd_;
  const std::string name_;
  pw_agent_hello hello_{};

  absl::Mutex mu_;
  // Set once the stream can no longer be used; every later Run fails.
  std::string broken_ ABSL_GUARDED_BY(mu_);
  uint64_t next_tag_ ABSL_GUARDED_BY(mu_) = 1;
  // Received bytes not yet parsed: in_[in_begin_, in_end_).
  std::vector<char> in_ ABSL_GUARDED_BY(mu_);
  size_t in_begin_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_end_ ABSL_GUARDED_BY(mu_) = 0;
  // Fds received and not yet matched to a SEND_FD reply.
  std::deque<UniqueFd> fds_ ABSL_GUARDED_BY(mu_);
  // A READ_MEM reply whose data is still arriving.
  uint64_t payload_left_ ABSL_GUARDED_BY(mu_) = 0;
  char* payload_into_ ABSL_GUARDED_BY(mu_) = nullptr;  // null: discard
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_THREAD_AGENT_CONNECTION_H_
