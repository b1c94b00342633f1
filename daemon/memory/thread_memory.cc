// See thread_memory.h.
#include "daemon/memory/thread_memory.h"

#include <sys/uio.h>

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

// process_vm_readv/writev until done. Returns the errno that stopped it (0
// when all was copied, EFAULT for an unmapped range).
int CopyWithProcessVm(pid_t pid, bool write, uint64_t address, char* local,
                      size_t length) {
  size_t done = 0;
  while (done < length) {
    iovec local_iov = {local + done, length - done};
    iovec remote_iov = {reinterpret_cast<void*>(address + done), length - done};
    ssize_t n = write ? process_vm_writev(pid, &local_iov, 1, &remote_iov, 1, 0)
                      : process_vm_readv(pid, &local_iov, 1, &remote_iov, 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EFAULT;
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

absl::Status Copy(AgentThread& thread, bool write, uint64_t address,
                  char* local, size_t length) {
  if (length == 0) return absl::OkStatus();
  int error = 0;
  RETURN_IF_ERROR(thread.WithLivePid([&](pid_t pid) {
    error = CopyWithProcessVm(pid, write, address, local, length);
    return absl::OkStatus();
  }));
  if (error == 0) return absl::OkStatus();
  if (error == EFAULT) {
    return Unreachable(thread, write ? "write" : "read", address, length);
  }
  if (error == EPERM || error == ENOSYS) {
    return write ? WriteInBand(thread, address,
                               absl::string_view(local, length))
                 : ReadInBand(thread, address, local, length);
  }
  if (error == ESRCH) {
    // Dying: say how it ended once it can be told.
    absl::Status alive = thread.CheckAlive(absl::Seconds(1));
    if (!alive.ok()) return alive;
    return absl::UnavailableError(absl::StrCat(thread.Name(), " is exiting"));
  }
  return ErrnoStatus(error,
                     absl::StrCat(write ? "process_vm_writev" : "process_vm_readv",
                                  "(pid=", thread.pid(), ", address=0x",
                                  absl::Hex(address), ", length=", length, ")"));
}

}  // namespace

absl::Status ReadThreadMemory(AgentThread& thread, uint64_t address, char* out,
                              size_t length) {
  return Copy(thread, /*write=*/false, address, out, length);
}

absl::Status WriteThreadMemory(AgentThread& thread, uint64_t address,
                               absl::string_view data) {
  return Copy(thread, /*write=*/true, address, const_cast<char*>(data.data()),
              data.size());
}

}  // namespace procwarp
