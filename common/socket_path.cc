// See socket_path.h.
#include "common/socket_path.h"

#include <stdlib.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace procwarp {

std::string StandardSocketPath(
    uid_t euid, const std::optional<std::string>& xdg_runtime_dir) {
  if (euid == 0) return kSystemSocketPath;
  const std::string runtime_dir =
      xdg_runtime_dir.has_value() && !xdg_runtime_dir->empty()
          ? *xdg_runtime_dir
          : absl::StrCat("/run/user/", euid);
  return absl::StrCat(runtime_dir, "/procwarp/procwarpd.sock");
}

std::string StandardSocketPath() {
  const char* runtime_dir = getenv("XDG_RUNTIME_DIR");
  return StandardSocketPath(geteuid(), runtime_dir == nullptr
                                           ? std::nullopt
                                           : std::optional<std::string>(
                                                 runtime_dir));
}

}  // namespace procwarp
