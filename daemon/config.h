// DaemonConfig loading: defaults, then the text-format config file, then
// command-line flags (which win).
#ifndef PROCWARP_DAEMON_CONFIG_H_
#define PROCWARP_DAEMON_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "proto/procwarp/config/v1/config.pb.h"

namespace procwarp {

// Built-in defaults for every field that has one.
procwarp::config::v1::DaemonConfig DefaultConfig();

// Reads a text-format DaemonConfig from `path` over `base`.
absl::StatusOr<procwarp::config::v1::DaemonConfig> LoadConfigFile(
    const std::string& path, procwarp::config::v1::DaemonConfig base);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_CONFIG_H_
