// See remote_memory.h.
#include "daemon/ptrace/remote_memory.h"

#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_format.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/util/errno_status.h"

namespace procwarp::ptrace {

const char* MemoryPathName(MemoryPath path) {
  switch (path) {
    case MemoryPath::kAuto: return "auto";
    case MemoryPath::kProcessVm: return "process_vm";
    case MemoryPath::kProcMem: return "/proc/PID/mem";
    case MemoryPath::kPtrace: return "ptrace peek/poke";
  }
  return "?";
}

namespace {

bool IsDenial(int error) {
  return error == EPERM || error == EACCES || error == ENOSYS;
}

absl::Status FaultStatus(pid_t pid, bool write, uint64_t addr, size_t len,
                         size_t done) {
  return absl::OutOfRangeError(absl::StrFormat(
      "pid %d: [0x%x, 0x%x) is not mapped %s (%d of %d bytes done)", pid, addr,
      addr + len, write ? "writable" : "readable", done, len));
}

}  // namespace

RemoteMemory::Outcome RemoteMemory::ViaProcessVm(bool write, uint64_t addr,
                                                 uint8_t* buf, size_t len,
                                                 absl::Status* error) {
  size_t done = 0;
  while (done < len) {
    struct iovec local = {buf + done, len - done};
    struct iovec remote = {reinterpret_cast<void*>(addr + done), len - done};
    ssize_t n = write ? process_vm_writev(pid_, &local, 1, &remote, 1, 0)
                      : process_vm_readv(pid_, &local, 1, &remote, 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (IsDenial(errno) && done == 0) return Outcome::kDenied;
      if (errno == EFAULT) {
        *error = FaultStatus(pid_, write, addr, len, done);
        return Outcome::kFault;
      }
      *error = ErrnoStatus(errno, absl::StrFormat("process_vm_%s(pid=%d, addr=0x%x, len=%d)",
                                                  write ? "writev" : "readv", pid_, addr + done, len - done));
      return Outcome::kFault;
    }
    if (n == 0) {
      *error = FaultStatus(pid_, write, addr, len, done);
      return Outcome::kFault;
    }
    done += static_cast<size_t>(n);
  }
  return Outcome::kDone;
}

RemoteMemory::Outcome RemoteMemory::ViaProcMem(bool write, uint64_t addr,
                                               uint8_t* buf, size_t len,
                                               absl::Status* error) {
  if (!mem_fd_) {
    std::string path = absl::StrFormat("/proc/%d/mem", pid_);
    mem_fd_.Reset(open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!mem_fd_) return Outcome::kDenied;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? pwrite(mem_fd_.get(), buf + done, len - done,
                               static_cast<off_t>(addr + done))
                      : pread(mem_fd_.get(), buf + done, len - done,
                              static_cast<off_t>(addr + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (IsDenial(errno) && done == 0) return Outcome::kDenied;
      if (errno == EIO || errno == EFAULT) {
        *error = FaultStatus(pid_, write, addr, len, done);
        return Outcome::kFault;
      }
      *error = ErrnoStatus(errno, absl::StrFormat("%s(/proc/%d/mem, addr=0x%x, len=%d)",
                                                  write ? "pwrite" : "pread", pid_, addr + done, len - done));
      return Outcome::kFault;
    }
    if (n == 0) {
      *error = FaultStatus(pid_, write, addr, len, done);
      return Outcome::kFault;
    }
    done += static_cast<size_t>(n);
  }
  return Outcome::kDone;
}

RemoteMemory::Outcome RemoteMemory::ViaPtrace(bool write, uint64_t addr,
                                              uint8_t* buf, size_t len,
                                              absl::Status* error) {
  constexpr size_t kWord = sizeof(unsigned long);
  size_t done = 0;
  while (done < len) {
    uint64_t at = addr + done;
    uint64_t aligned = at & ~(kWord - 1);
    size_t skip = at - aligned;
    size_t chunk = std::min(kWord - skip, len - done);
    unsigned long value = 0;
    // A partial word is read, patched and written back whole.
    if (syscall(SYS_ptrace, PTRACE_PEEKDATA, tid_, aligned, &value) != 0 ||
        (write && (std::memcpy(reinterpret_cast<uint8_t*>(&value) + skip,
                               buf + done, chunk),
                   syscall(SYS_ptrace, PTRACE_POKEDATA, tid_, aligned, value) != 0))) {
      if (errno == EIO || errno == EFAULT) {
        *error = FaultStatus(pid_, write, addr, len, done);
      } else {
        *error = ErrnoStatus(errno, absl::StrFormat(
            "ptrace(%s, tid=%d, addr=0x%x)",
            write ? "PTRACE_POKEDATA" : "PTRACE_PEEKDATA", tid_, aligned));
      }
      return Outcome::kFault;
    }
    if (!write) {
      std::memcpy(buf + done, reinterpret_cast<uint8_t*>(&value) + skip, chunk);
    }
    done += chunk;
  }
  return Outcome::kDone;
}

absl::Status RemoteMemory::Access(bool write, uint64_t addr, uint8_t* buf,
                                  size_t len) {
  if (len == 0) return absl::OkStatus();
  if (addr + len < addr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("address range 0x%x + %d wraps around", addr, len));
  }
  absl::Status error;
  auto try_path = [&](MemoryPath path) -> std::optional<absl::Status> {
    Outcome out;
    switch (path) {
      case MemoryPath::kProcessVm:
        out = ViaProcessVm(write, addr, buf, len, &error);
        if (out == Outcome::kDenied) process_vm_denied_ = true;
        break;
      case MemoryPath::kProcMem:
        out = ViaProcMem(write, addr, buf, len, &error);
        if (out == Outcome::kDenied) proc_mem_denied_ = true;
        break;
      default:
        out = ViaPtrace(write, addr, buf, len, &error);
        break;
    }
    if (out == Outcome::kDone) {
      last_ = path;
      return absl::OkStatus();
    }
    if (out == Outcome::kFault) return error;
    return std::nullopt;  // denied: next path
  };
  if (forced_ != MemoryPath::kAuto) {
    std::optional<absl::Status> st = try_path(forced_);
    if (st.has_value()) return *st;
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s access to pid %d is denied", MemoryPathName(forced_), pid_));
  }
  if (!process_vm_denied_) {
    if (auto st = try_path(MemoryPath::kProcessVm)) return *st;
  }
  if (!proc_mem_denied_) {
    if (auto st = try_path(MemoryPath::kProcMem)) return *st;
  }
  return *try_path(MemoryPath::kPtrace);
}

absl::Status RemoteMemory::Read(uint64_t addr, absl::Span<uint8_t> out) {
  return Access(false, addr, out.data(), out.size());
}

absl::Status RemoteMemory::Write(uint64_t addr, absl::Span<const uint8_t> in) {
  return Access(true, addr, const_cast<uint8_t*>(in.data()), in.size());
}

}  // namespace procwarp::ptrace
