// See runfiles.h.
#include "tests/testing/runfiles.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace procwarp::testing {

std::string RunfilePath(const std::string& relative) {
  if (const char* srcdir = getenv("TEST_SRCDIR"); srcdir != nullptr) {
    return absl::StrCat(srcdir, "/procwarp/", relative);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string beside =
        absl::StrCat(absl::string_view(self, n), ".runfiles/procwarp/", relative);
    if (access(beside.c_str(), F_OK) == 0) return beside;
  }
  return relative;
}

}  // namespace procwarp::testing
