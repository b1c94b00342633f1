// See stack_memory.h.
#include "daemon/python/stack_memory.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"

namespace procwarp::python {

absl::Status ProcMemReader::ReadPage(uint64_t page, const Page** out) {
  auto it = pages_.find(page);
  if (it != pages_.end()) {
    *out = it->second.get();
    return absl::OkStatus();
  }
  if (pages_.size() >= kMaxPages) pages_.clear();
  auto fresh = std::make_unique<Page>();
  for (;;) {
    ++reads_;
    ssize_t n = pread(mem_.get(), fresh->bytes, kPage, static_cast<off_t>(page));
    if (n < 0 && errno == EINTR) continue;
    if (n == static_cast<ssize_t>(kPage)) break;
    if (n == 0) {
      // The address space this fd was opened for is gone.
      return absl::NotFoundError("the target exited (or exec'd) during the read");
    }
    if (n < 0 && (errno == EIO || errno == EFAULT)) {
      return absl::OutOfRangeError(
          absl::StrCat("address 0x", absl::Hex(page), " is not mapped in the target"));
    }
    if (n < 0) return ErrnoStatus(errno, "pread(/proc/PID/mem)");
    return absl::OutOfRangeError(absl::StrCat("short read at 0x", absl::Hex(page)));
  }
  *out = fresh.get();
  pages_.emplace(page, std::move(fresh));
  return absl::OkStatus();
}

absl::Status ProcMemReader::Read(uint64_t address, void* out, size_t size) {
  if (size == 0) return absl::OkStatus();
  if (address + size < address) {
    return absl::OutOfRangeError("address range wraps around");
  }
  uint8_t* dest = static_cast<uint8_t*>(out);
  while (size > 0) {
    const uint64_t page = address & ~static_cast<uint64_t>(kPage - 1);
    const size_t skip = address - page;
    const size_t n = std::min(size, kPage - skip);
    const Page* p = nullptr;
    absl::Status status = ReadPage(page, &p);
    if (!status.ok()) return status;
    std::memcpy(dest, p->bytes + skip, n);
    dest += n;
    address += n;
    size -= n;
  }
  return absl::OkStatus();
}

}  // namespace procwarp::python
