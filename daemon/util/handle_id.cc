// See handle_id.h.
#include "daemon/util/handle_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace procwarp {

std::string NewHandleId() {
  uint8_t bytes[16];
  size_t have = 0;
  while (have < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + have, sizeof(bytes) - have, 0);
    if (n < 0 && errno == EINTR) continue;
    // getrandom on a booted kernel cannot fail otherwise; an id we could
    // guess would be a security hole, so refuse to go on.
    if (n <= 0) abort();
    have += n;
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

bool IsWellFormedHandleId(absl::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

}  // namespace procwarp
