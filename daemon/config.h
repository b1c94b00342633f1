// DaemonConfig loading: defaults, then the text-format config file, then
// command-line flags (which win).
#ifndef PROCWARP_DAEMON_CONFIG_H_
#define PROCWARP_DAEMON_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/procwarp/config/v1/config.pb.h"

namespace procwarp {

// Built-in defaults for every field that has one.
procwarp::config::v1::DaemonConfig DefaultConfig();

// Reads a text-format DaemonConfig from `path` over `base`.
absl::StatusOr<procwarp::config::v1::DaemonConfig> LoadConfigFile(
    const std::string& path, procwarp::config::v1::DaemonConfig base);

// `text` (a text-format DaemonConfig, the file's contents) over `base`:
// fields set in it replace the defaults, limits merge field by field.
// `origin` names it in messages. Pure, so it is fuzzed as it is
// (daemon/config_fuzzer.cc).
absl::StatusOr<procwarp::config::v1::DaemonConfig> ParseConfigText(
    absl::string_view text, procwarp::config::v1::DaemonConfig base,
    absl::string_view origin);

// The rules a complete config (file and flags applied) must meet before the
// daemon serves with it.
absl::Status ValidateConfig(const procwarp::config::v1::DaemonConfig& config);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_CONFIG_H_
