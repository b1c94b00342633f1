// See scratch_code.h.
#include "daemon/python/scratch_code.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python {

absl::Status WriteBytes(ptrace::Operation& op, uint64_t addr, absl::string_view bytes) {
  return op.memory().Write(
      addr, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

absl::Status SealCode(ptrace::Operation& op, uint64_t page, uint64_t size) {
  ASSIGN_OR_RETURN(ptrace::SyscallResult prot,
                   op.Syscall(SYS_mprotect, {page, size, PROT_READ | PROT_EXEC}));
  if (static_cast<long>(prot.value) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the target refused an executable page (mprotect: ",
                     strerror(-static_cast<int>(prot.value)), ")"));
  }
  return absl::OkStatus();
}

}  // namespace procwarp::python
