// See config.h.
#include "daemon/config.h"

#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"

namespace procwarp {

using procwarp::config::v1::DaemonConfig;

DaemonConfig DefaultConfig() {
  DaemonConfig config;
  config.set_admin_group("procwarp-admin");
  auto* limits = config.mutable_limits();
  limits->set_max_processes_per_identity(1024);
  limits->set_max_streams_per_identity(32);
  limits->set_output_buffer_bytes(1 << 20);
  limits->set_shutdown_grace_ms(5000);
  limits->set_max_threads_per_identity(256);
  limits->set_side_exchange_timeout_ms(2000);
  limits->set_max_side_connections_per_identity(8);
  limits->set_max_side_connections(64);
  limits->set_max_fd_tokens_per_identity(64);
  limits->set_spawn_timeout_ms(10000);
  limits->set_max_spawns_in_flight_per_identity(16);
  // What one user can make the daemon hold (see config.proto). Sized for a
  // 2-CPU host with a few GiB: one non-admin pins at most 64 threads, all
  // non-admins together 256 of the 1024 gRPC may run.
  limits->set_max_calls_per_identity(64);
  limits->set_max_calls_per_admin(256);
  limits->set_max_calls_non_admin_total(256);
  limits->set_max_streams_per_admin(128);
  limits->set_max_server_threads(1024);
  limits->set_grpc_memory_bytes(uint64_t{1} << 30);
  limits->set_max_receive_message_bytes(6 << 20);
  limits->set_max_send_message_bytes(4 << 20);
  limits->set_max_calls_per_connection(64);
  limits->set_max_connections_per_identity(64);
  limits->set_max_connections_per_admin(1024);
  limits->set_fd_reserve(256);
  limits->set_max_queued_events(10000);
  limits->set_max_queued_event_bytes(1 << 20);
  limits->set_max_record_bytes_per_identity(64 << 20);
  limits->set_max_record_bytes_per_admin(uint64_t{1} << 30);
  limits->set_exec_operation_timeout_ms(60000);
  limits->set_max_library_handles_per_identity(64);
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
  return ParseConfigText(text.str(), std::move(base),
                         absl::StrCat("config file ", path));
}

absl::StatusOr<DaemonConfig> ParseConfigText(absl::string_view text,
                                             DaemonConfig base,
                                             absl::string_view origin) {
  DaemonConfig from_file;
  // TextFormat takes its input by std::string.
  if (!google::protobuf::TextFormat::ParseFromString(std::string(text),
                                                     &from_file)) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, " is not a valid text-format DaemonConfig "
        "(see deploy/procwarpd.conf.example)"));
  }
  // Fields set in the file replace the defaults; limits merge field by field.
  base.MergeFrom(from_file);
  return base;
}

absl::Status ValidateConfig(const DaemonConfig& config) {
  const auto& limits = config.limits();
  // Root is served whatever non-admins do only if they cannot take every
  // thread gRPC may run.
  // In 64 bits: two uint32 limits must not wrap around to a small sum.
  if (limits.max_calls_non_admin_total() == 0 ||
      uint64_t{limits.max_server_threads()} <=
          uint64_t{limits.max_calls_non_admin_total()} +
              limits.max_calls_per_admin()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "limits.max_server_threads (", limits.max_server_threads(),
        ") must be more than limits.max_calls_non_admin_total (",
        limits.max_calls_non_admin_total(), ", not 0) plus "
        "limits.max_calls_per_admin (", limits.max_calls_per_admin(),
        "): otherwise non-admin users together could take the threads root "
        "needs"));
  }
  // gRPC takes these as int: larger values would wrap to negative ones.
  const std::pair<const char*, uint64_t> int_limits[] = {
      {"max_server_threads", limits.max_server_threads()},
      {"max_receive_message_bytes", limits.max_receive_message_bytes()},
      {"max_send_message_bytes", limits.max_send_message_bytes()},
      {"max_calls_per_connection", limits.max_calls_per_connection()},
  };
  for (const auto& [name, value] : int_limits) {
    if (value > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "limits.", name, " (", value, ") is more than gRPC takes (",
          std::numeric_limits<int>::max(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace procwarp
