// Fuzzes the restart state file parser (state_file.h) with hostile bytes: a
// state file is written by the daemon, but a corrupt, truncated or foreign
// file must never crash the next daemon nor be half-read (docs/fuzzing.md,
// docs/architecture.md "Restart without loss").
//
// The first input byte picks how the rest is used:
//  - even: as a whole file (header and all), so the header checks are
//    fuzzed;
//  - odd: as the bytes of process records inside a file with a valid header
//    (EncodeStateFile), so the fuzzer gets past the checksum into the
//    protobuf decoding of DaemonState, ProcessRecord and ThreadRecord.
// What must hold: errors are INVALID_ARGUMENT or FAILED_PRECONDITION; a
// state that parses encodes and parses back to itself; and no strict prefix
// of a valid file parses (a truncated file is refused as a whole).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/restart/state_file.h"
#include "google/protobuf/stubs/logging.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "state file fuzzer: %s\n", what);
  std::abort();
}

void CheckError(const absl::Status& status) {
  if (!absl::IsInvalidArgument(status) && !absl::IsFailedPrecondition(status)) {
    Fail("an error that is neither INVALID_ARGUMENT nor FAILED_PRECONDITION");
  }
}

// `file` parsed to `state`: it must survive a round trip, and every cut of
// the file must be refused.
void CheckParsed(absl::string_view file,
                 const procwarp::state::v1::DaemonState& state,
                 uint8_t cut_seed) {
  std::string again = procwarp::EncodeStateFile(state);
  auto reparsed = procwarp::ParseStateFile(again);
  if (!reparsed.ok()) Fail("an encoded state does not parse");
  // Text format prints map entries sorted, so equal states print equal.
  if (reparsed->DebugString() != state.DebugString()) {
    Fail("a state changed in an encode/parse round trip");
  }
  for (size_t cut : {file.size() - 1, file.size() * cut_seed / 256}) {
    if (cut >= file.size()) continue;
    auto truncated = procwarp::ParseStateFile(file.substr(0, cut));
    if (truncated.ok()) Fail("a truncated state file parsed");
    CheckError(truncated.status());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (google::protobuf::SetLogHandler(
                           [](google::protobuf::LogLevel, const char*, int,
                              const std::string&) {}),
                       true);
  (void)quiet;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file;
  if (mode % 2 == 0) {
    file = std::string(rest);
  } else {
    // Split into up to four records at offsets the mode byte picks.
    std::vector<std::string> records;
    size_t at = 0;
    const size_t parts = 1 + (mode >> 1) % 4;
    for (size_t i = 1; i <= parts; ++i) {
      size_t end = i == parts ? rest.size() : rest.size() * i / parts;
      records.emplace_back(rest.substr(at, end - at));
      at = end;
    }
    file = procwarp::EncodeStateFile(procwarp::state::v1::DaemonState(), records);
  }
  auto parsed = procwarp::ParseStateFile(file);
  if (!parsed.ok()) {
    CheckError(parsed.status());
    return 0;
  }
  CheckParsed(file, *parsed, mode);
  return 0;
}
