// See agent_memory.h.
#include "daemon/thread/agent_memory.h"
#include "daemon/thread/agent_thread.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// In-band transfers go in pieces this big, so one call never needs a huge
// socket buffer or holds the agent for long.
constexpr size_t kInBandChunk = 1 << 20;

absl::Status Unreachable(const AgentThread& thread, absl::string_view verb,
                         uint64_t address, size_t length) {
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot ", verb, " ", length, " bytes at 0x", absl::Hex(address), " of ",
      thread.Name(), ": the range is not (or no longer) mapped ",
      verb == "read" ? "readable" : "writable"));
}

// pread/pwrite on the pinned /proc/PID/mem until done. Returns the errno
// that stopped it: 0 when all was copied, EIO for an unmapped range, and -1
// when the pinned address space is gone (0 bytes moved).
int CopyWithProcMem(int memory, bool write, uint64_t address, char* local,
                    size_t length) {
  size_t done = 0;
  while (done < length) {
    const off_t offset = static_cast<off_t>(address + done);
    ssize_t n = write ? pwrite(memory, local + done, length - done, offset)
                      : pread(memory, local + done, length - done, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return -1;
    done += n;
  }
  return 0;
}

absl::Status ReadInBand(AgentThread& thread, uint64_t address, char* out,
                        size_t length) {
  std::vector<AgentCall> calls;
  for (size_t off = 0; off < length; off += kInBandChunk) {
    AgentCall call;
    call.op = PW_OP_READ_MEM;
    call.args[0] = address + off;
    call.args[1] = std::min(kInBandChunk, length - off);
    call.read_into = out + off;
    calls.push_back(call);
  }
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(thread.connection().Run(calls, &replies));
  for (size_t i = 0; i < calls.size(); ++i) {
    if (replies[i].result != static_cast<int64_t>(calls[i].args[1])) {
      return Unreachable(thread, "read", address, length);
    }
  }
  return absl::OkStatus();
}

absl::Status WriteInBand(AgentThread& thread, uint64_t address,
                         absl::string_view data) {
  std::vector<AgentCall> calls;
  for (size_t off = 0; off < data.size(); off += kInBandChunk) {
    AgentCall call;
    call.op = PW_OP_WRITE_MEM;
    call.payload = data.substr(off, kInBandChunk);
    call.args[0] = address + off;
    call.args[1] = call.payload.size();
    calls.push_back(call);
  }
  std::vector<AgentReply> replies;
  RETURN_IF_ERROR(thread.connection().Run(calls, &replies));
  for (size_t i = 0; i < calls.size(); ++i) {
    if (replies[i].result != static_cast<int64_t>(calls[i].args[1])) {
      return Unreachable(thread, "write", address, data.size());
    }
  }
  return absl::OkStatus();
}

absl::Status Copy(AgentThread& thread, const Identity& caller, bool write,
                  uint64_t address, char* local, size_t length) {
  if (length == 0) return absl::OkStatus();
  const int memory = thread.memory_fd();
  int error = memory < 0
                  ? EPERM
                  : CopyWithProcMem(memory, write, address, local, length);
  if (error == 0) return absl::OkStatus();
  if (error == -1) return thread.ExplainLostMemory(caller);
  if (error == EIO || error == EFAULT) {
    return Unreachable(thread, write ? "write" : "read", address, length);
  }
  if (error == EPERM || error == EACCES || error == ENOSYS) {
    // The in-band path runs as the owner: the kernel checks it.
    return write ? WriteInBand(thread, address,
                               absl::string_view(local, length))
                 : ReadInBand(thread, address, local, length);
  }
  return ErrnoStatus(
      error, absl::StrCat(write ? "pwrite" : "pread", "(/proc/", thread.pid(),
                          "/mem, address=0x", absl::Hex(address),
                          ", length=", length, ")"));
}

}  // namespace

absl::Status ReadAgentMemory(AgentThread& thread, const Identity& caller,
                              uint64_t address, char* out, size_t length) {
  return Copy(thread, caller, /*write=*/false, address, out, length);
}

absl::Status WriteAgentMemory(AgentThread& thread, const Identity& caller,
                               uint64_t address, absl::string_view data) {
  return Copy(thread, caller, /*write=*/true, address,
              const_cast<char*>(data.data()), data.size());
}

}  // namespace procwarp
