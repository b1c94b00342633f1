// StackMemory: how the Python stack reader reads a target's memory, and the
// one implementation the daemon uses: pread() on the target's /proc/PID/mem
// opened through its pidfd-confirmed /proc directory (OpenProcessMemory in
// daemon/security/ptrace_access.h), so the fd stays bound to the address space
// that was authorised: after an exec, reads return nothing instead of the
// new program's memory. No ptrace, no stop: the target runs on.
//
// Reads go through a page cache that lives for one pass of the reader (a
// snapshot reads hundreds of small objects that share pages: frames, code
// objects, interned names); a new pass starts with Reset() so each pass sees
// the target as it is then.
#ifndef PROCWARP_DAEMON_PYTHON_STACK_MEMORY_H_
#define PROCWARP_DAEMON_PYTHON_STACK_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "absl/status/status.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::python {

class StackMemory {
 public:
  virtual ~StackMemory() = default;
  // All of [address, address + size) or an error: OUT_OF_RANGE when part of
  // it is not mapped (a stale pointer: the reader retries), NOT_FOUND when
  // the address space is gone (the target exited or exec'd).
  virtual absl::Status Read(uint64_t address, void* out, size_t size) = 0;
  // Forget what was read: the next reads see the target as it is now.
  virtual void Reset() {}
};

class ProcMemReader final : public StackMemory {
 public:
  // `mem`: /proc/PID/mem of the target (OpenProcessMemory).
  explicit ProcMemReader(UniqueFd mem) : mem_(std::move(mem)) {}

  absl::Status Read(uint64_t address, void* out, size_t size) override;
  void Reset() override { pages_.clear(); }
  // pread() calls made (for the benchmark and tests).
  uint64_t reads() const { return reads_; }

 private:
  static constexpr size_t kPage = 4096;
  // Bounds the cache: beyond it pages are read again rather than kept.
  static constexpr size_t kMaxPages = 8192;
  struct Page {
    uint8_t bytes[kPage];
  };
  absl::Status ReadPage(uint64_t page, const Page** out);

  UniqueFd mem_;
  std::unordered_map<uint64_t, std::unique_ptr<Page>> pages_;
  uint64_t reads_ = 0;
};

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_STACK_MEMORY_H_
