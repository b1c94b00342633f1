// See runfiles.h.
#include "tests/testing/runfiles.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace procwarp::testing {

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return relative;
  return absl::StrCat(srcdir, "/procwarp/", relative);
}

}  // namespace procwarp::testing
