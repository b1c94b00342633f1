// See pypy.h.
#include "daemon/python/pypy.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python::pypy {
namespace {

// glibc x86-64: tcbhead_t { void* tcb; dtv_t* dtv; ... } at fs_base.
constexpr uint64_t kDtvInTcb = 8;
constexpr uint64_t kDtvEntry = 16;  // union { size_t counter; { void* val; void* to_free; } }
// Module ids are small (one per loaded object with TLS); anything larger is
// not a tls_index.
constexpr uint64_t kMaxModuleId = 4096;

template <typename T>
absl::StatusOr<T> ReadValue(ptrace::RemoteMemory& memory, uint64_t addr) {
  T value{};
  RETURN_IF_ERROR(memory.Read(addr, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value),
                                                   sizeof(value))));
  return value;
}

}  // namespace

std::optional<uint64_t> TlsIndexAddress(uint64_t function_address,
                                        absl::Span<const uint8_t> code) {
  // 66 48 8d 3d <disp32> 66 66 48 e8 <rel32>
  constexpr size_t kSequence = 16;
  for (size_t at = 0; at + kSequence <= code.size(); ++at) {
    const uint8_t* p = code.data() + at;
    if (p[0] == 0x66 && p[1] == 0x48 && p[2] == 0x8d && p[3] == 0x3d && p[8] == 0x66 &&
        p[9] == 0x66 && p[10] == 0x48 && p[11] == 0xe8) {
      int32_t disp = 0;
      std::memcpy(&disp, p + 4, sizeof(disp));
      return function_address + at + 8 + static_cast<int64_t>(disp);  // rip-relative
    }
  }
  return std::nullopt;
}

absl::StatusOr<bool> ThreadKnownToPyPy(ptrace::RemoteMemory& memory, uint64_t tls_index,
                                       uint64_t fs_base) {
  ASSIGN_OR_RETURN(uint64_t module, ReadValue<uint64_t>(memory, tls_index));
  ASSIGN_OR_RETURN(uint64_t offset, ReadValue<uint64_t>(memory, tls_index + 8));
  if (module == 0 || module > kMaxModuleId || fs_base == 0) return false;
  ASSIGN_OR_RETURN(uint64_t dtv, ReadValue<uint64_t>(memory, fs_base + kDtvInTcb));
  ASSIGN_OR_RETURN(uint64_t block, ReadValue<uint64_t>(memory, dtv + module * kDtvEntry));
  // Unallocated dynamic TLS is (void*)-1; static TLS always has a block.
  if (block == 0 || block == ~uint64_t{0}) return false;
  absl::StatusOr<int32_t> ready = ReadValue<int32_t>(memory, block + offset);
  if (!ready.ok()) return false;
  return *ready == kThreadLocalsReady;
}

}  // namespace procwarp::python::pypy
