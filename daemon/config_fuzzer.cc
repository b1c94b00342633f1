// Fuzzes the config parser and its validation (config.h) with hostile text:
// either an error saying the text or a limit is wrong, never a crash; and a
// config that passes keeps the rules the daemon relies on (root's threads
// cannot all be taken by users; limits gRPC takes as int fit one). See
// docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/string_view.h"
#include "daemon/config.h"
#include "google/protobuf/stubs/logging.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (google::protobuf::SetLogHandler(
                           [](google::protobuf::LogLevel, const char*, int,
                              const std::string&) {}),
                       true);
  (void)quiet;
  auto fail = [](const char* what) {
    std::fprintf(stderr, "config fuzzer: %s\n", what);
    std::abort();
  };
  absl::StatusOr<procwarp::config::v1::DaemonConfig> config =
      procwarp::ParseConfigText(
          absl::string_view(reinterpret_cast<const char*>(data), size),
          procwarp::DefaultConfig(), "fuzz input");
  if (!config.ok()) {
    if (!absl::IsInvalidArgument(config.status())) fail("a parse error that is not INVALID_ARGUMENT");
    return 0;
  }
  absl::Status valid = procwarp::ValidateConfig(*config);
  if (!valid.ok()) {
    if (!absl::IsInvalidArgument(valid)) fail("a validation error that is not INVALID_ARGUMENT");
    return 0;
  }
  const auto& limits = config->limits();
  if (limits.max_calls_non_admin_total() == 0 ||
      uint64_t{limits.max_server_threads()} <=
          uint64_t{limits.max_calls_non_admin_total()} + limits.max_calls_per_admin()) {
    fail("a config where users can take every thread root needs passed");
  }
  constexpr uint64_t kIntMax = std::numeric_limits<int>::max();
  if (limits.max_server_threads() > kIntMax ||
      limits.max_receive_message_bytes() > kIntMax ||
      limits.max_send_message_bytes() > kIntMax ||
      limits.max_calls_per_connection() > kIntMax) {
    fail("a limit gRPC takes as int does not fit one");
  }
  return 0;
}
