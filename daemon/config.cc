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
