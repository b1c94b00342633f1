// See config.h.
#include "daemon/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"

namespace procwarp {

using procwarp::config::v1::DaemonConfig;

DaemonConfig DefaultConfig() {
  DaemonConfig config;
  config.set_admin_group("procwarp-admin");
  auto* limits = config.mutable_limits();
  limits->set_max_processes_per_identity(1024);
  limits->set_max_streams_per_identity(256);
  limits->set_output_buffer_bytes(1 << 20);
  limits->set_shutdown_grace_ms(5000);
  limits->set_max_threads_per_identity(256);
  limits->set_side_exchange_timeout_ms(2000);
  limits->set_max_side_connections_per_identity(8);
  limits->set_max_side_connections(64);
  limits->set_max_fd_tokens_per_identity(64);
  limits->set_spawn_timeout_ms(10000);
  limits->set_max_spawns_in_flight_per_identity(16);
  return config;
}

absl::StatusOr<DaemonConfig> LoadConfigFile(const std::string& path,
                                            DaemonConfig base) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  DaemonConfig from_file;
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &from_file)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, " is not a valid text-format DaemonConfig "
        "(see deploy/procwarpd.conf.example)"));
  }
  // Fields set in the file replace the defaults; limits merge field by field.
  base.MergeFrom(from_file);
  return base;
}

}  // namespace procwarp
