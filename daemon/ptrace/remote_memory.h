// RemoteMemory: reads and writes a target's memory by the cheapest path the
// kernel allows, decided once and remembered:
//   1. process_vm_readv/writev (one syscall, no page-table walk by ptrace);
//   2. /proc/PID/mem (pread/pwrite; works where a container's seccomp profile
//      denies process_vm_*, and writes through read-only mappings, FOLL_FORCE);
//   3. PTRACE_PEEKDATA/POKEDATA, a word at a time (works wherever ptrace does).
// A path counts as denied on EPERM/EACCES/ENOSYS (seccomp, LSM) or when
// /proc/PID/mem cannot be opened; EFAULT/EIO mean the range is not mapped and
// are reported, not retried elsewhere.
//
// Used on the tracer thread (path 3 needs the tracee stopped and its tracer).
// The /proc/PID/mem fd is opened lazily and belongs to the attachment: an
// exec ends the attachment, so the fd never outlives the address space it
// was opened for.
#ifndef PROCWARP_DAEMON_PTRACE_REMOTE_MEMORY_H_
#define PROCWARP_DAEMON_PTRACE_REMOTE_MEMORY_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::ptrace {

enum class MemoryPath { kAuto, kProcessVm, kProcMem, kPtrace };
const char* MemoryPathName(MemoryPath path);

class RemoteMemory {
 public:
  // `tid`: the stopped tracee used for PTRACE_PEEK/POKE.
  RemoteMemory(pid_t pid, pid_t tid) : pid_(pid), tid_(tid) {}

  // Uses only `path` (kAuto: try them in order). For tests and for callers
  // that know a path is denied.
  void ForcePath(MemoryPath path) { forced_ = path; }
  // The path the last successful access used.
  MemoryPath last_path() const { return last_; }

  // All-or-nothing: OUT_OF_RANGE when part of the range is not mapped
  // readable (writable, for Write).
  absl::Status Read(uint64_t addr, absl::Span<uint8_t> out);
  absl::Status Write(uint64_t addr, absl::Span<const uint8_t> in);

 private:
  enum class Outcome { kDone, kDenied, kFault };
  Outcome ViaProcessVm(bool write, uint64_t addr, uint8_t* buf, size_t len,
                       absl::Status* error);
  Outcome ViaProcMem(bool write, uint64_t addr, uint8_t* buf, size_t len,
                     absl::Status* error);
  Outcome ViaPtrace(bool write, uint64_t addr, uint8_t* buf, size_t len,
                    absl::Status* error);
  absl::Status Access(bool write, uint64_t addr, uint8_t* buf, size_t len);

  pid_t pid_;
  pid_t tid_;
  MemoryPath forced_ = MemoryPath::kAuto;
  MemoryPath last_ = MemoryPath::kAuto;
  bool process_vm_denied_ = false;
  bool proc_mem_denied_ = false;
  UniqueFd mem_fd_;
};

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_REMOTE_MEMORY_H_
