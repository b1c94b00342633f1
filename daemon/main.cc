// procwarpd: the procwarp daemon. Wires the pieces together: configuration,
// the local listener and its session registry, the gRPC services, systemd
// integration, and an orderly shutdown on SIGTERM/SIGINT.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/socket_path.h"
#include "daemon/admin/admin_service.h"
#include "daemon/admin/health_service.h"
#include "daemon/config.h"
#include "daemon/exec/exec_service.h"
#include "daemon/snapshots/snapshots_service.h"
#include "daemon/files/fd_side_channel.h"
#include "daemon/files/files_service.h"
#include "daemon/memory/memory_service.h"
#include "daemon/process/event_bus.h"
#include "daemon/process/process_table.h"
#include "daemon/process/processes_service.h"
#include "daemon/restart/keeper.h"
#include "daemon/restart/keeper_link.h"
#include "daemon/restart/restart_state.h"
#include "daemon/restart/systemd_fd_store.h"
#include "daemon/server/caller_context.h"
#include "daemon/server/listener.h"
#include "daemon/server/log.h"
#include "daemon/server/reflection_admission.h"
#include "daemon/server/session_registry.h"
#include "daemon/server/slot_limiter.h"
#include "daemon/server/systemd_notifier.h"
#include "daemon/thread/agent_launcher.h"
#include "daemon/thread/thread_table.h"
#include "daemon/thread/threads_service.h"
#include "daemon/tls/tls_listener.h"
#include "daemon/util/heap_trimmer.h"
#ifdef PROCWARP_TEST_FAULTS
#include "daemon/testing/fault_injector.h"
#endif
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_builder.h"

namespace procwarp {
namespace {

using procwarp::config::v1::DaemonConfig;

struct Flags {
  std::string config_path;
  std::optional<std::string> socket_path;
  std::optional<std::string> socket_mode;  // octal
  std::optional<std::string> admin_group;
  std::optional<std::string> agent_path;
  // Every field of config.proto's Limits, by its own name
  // (--max_calls_per_identity=...): see AddLimitFlags.
  std::map<std::string, std::optional<uint64_t>> limits;
  // Remote callers (docs/remote.md).
  std::vector<std::string> listen_tcp;
  std::optional<std::string> tls_ca;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  std::optional<std::string> state_dir;
  std::optional<std::string> keeper;
};

constexpr char kDefaultConfigPath[] = "/etc/procwarp/procwarpd.conf";
// How often the main thread looks at what the daemon holds, and the drop
// (connections + processes + threads) after which it trims the heap.
constexpr int kHousekeepingSeconds = 1;
constexpr size_t kTrimAfterDropOf = 256;

// Each Limits field becomes a flag of the same name, found by reflection, so
// a limit added to config.proto is settable from the command line with no
// code here (its meaning is documented in config.proto).
void AddLimitFlags(CLI::App& app,
                   std::map<std::string, std::optional<uint64_t>>& values) {
  using google::protobuf::FieldDescriptor;
  const procwarp::config::v1::Limits defaults = DefaultConfig().limits();
  const auto* descriptor = defaults.GetDescriptor();
  const auto* reflection = defaults.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_UINT32 &&
        field->cpp_type() != FieldDescriptor::CPPTYPE_UINT64) {
      continue;  // every limit is a count or a size today
    }
    uint64_t default_value =
        field->cpp_type() == FieldDescriptor::CPPTYPE_UINT32
            ? reflection->GetUInt32(defaults, field)
            : reflection->GetUInt64(defaults, field);
    app.add_option("--" + field->name(), values[field->name()],
                   absl::StrCat("limits.", field->name(),
                                " (config.proto; default ", default_value, ")"));
  }
}

absl::Status ApplyLimitFlags(
    const std::map<std::string, std::optional<uint64_t>>& values,
    procwarp::config::v1::Limits& limits) {
  using google::protobuf::FieldDescriptor;
  const auto* descriptor = limits.GetDescriptor();
  const auto* reflection = limits.GetReflection();
  for (const auto& [name, value] : values) {
    if (!value) continue;
    const FieldDescriptor* field = descriptor->FindFieldByName(name);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_UINT64) {
      reflection->SetUInt64(&limits, field, *value);
    } else if (*value <= UINT32_MAX) {
      reflection->SetUInt32(&limits, field, static_cast<uint32_t>(*value));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is at most ", UINT32_MAX));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DaemonConfig> ResolveConfig(const Flags& flags) {
  DaemonConfig config = DefaultConfig();
  std::string path = flags.config_path;
  if (path.empty() && access(kDefaultConfigPath, R_OK) == 0) {
    path = kDefaultConfigPath;
  }
  if (!path.empty()) {
    auto loaded = LoadConfigFile(path, config);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (flags.socket_path) config.set_socket_path(*flags.socket_path);
  if (flags.socket_mode) {
    config.set_socket_mode(std::stoul(*flags.socket_mode, nullptr, 8));
  }
  if (flags.admin_group) config.set_admin_group(*flags.admin_group);
  if (absl::Status set = ApplyLimitFlags(flags.limits, *config.mutable_limits());
      !set.ok()) {
    return set;
  }
  for (const std::string& address : flags.listen_tcp) config.add_listen_tcp(address);
  if (flags.tls_ca) config.mutable_tls()->set_ca_file(*flags.tls_ca);
  if (flags.tls_cert) config.mutable_tls()->set_cert_file(*flags.tls_cert);
  if (flags.tls_key) config.mutable_tls()->set_key_file(*flags.tls_key);
  if (flags.state_dir) config.set_state_dir(*flags.state_dir);
  if (flags.keeper) config.set_keeper(*flags.keeper);
  if (config.state_dir().empty() && config.socket_path().empty()) {
    std::string socket = StandardSocketPath();
    config.set_state_dir(socket.substr(0, socket.rfind('/')) + "/state");
  }
  if (config.state_dir() == "none") config.clear_state_dir();
  // As a systemd service the started process must stay the daemon (socket
  // activation, NotifyAccess=main): there the fd store holds the fds
  // (keeper "systemd", set by deploy/procwarpd.service), and a keeper
  // process needs keeper "process" said explicitly.
  if (getenv("INVOCATION_ID") != nullptr && config.keeper().empty() &&
      !config.state_dir().empty()) {
    LogInfo("restart state off under systemd: set keeper (see "
            "docs/architecture.md, \"Restart without loss\")");
    config.clear_state_dir();
  }
  if (!config.keeper().empty() && config.keeper() != "process" &&
      config.keeper() != "systemd") {
    return absl::InvalidArgumentError(absl::StrCat(
        "keeper \"", config.keeper(), "\" is neither \"process\" nor \"systemd\""));
  }
  if (config.socket_path().empty()) config.set_socket_path(StandardSocketPath());
  if (absl::Status valid = ValidateConfig(config); !valid.ok()) return valid;
  return config;
}

// Children inherit 0/1/2; if the daemon was started without them, the first
// pipe it makes would land there.
void EnsureStdioOpen() {
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) open("/dev/null", O_RDWR);
  }
}

std::optional<gid_t> LookUpAdminGroup(const std::string& name) {
  if (name.empty()) return std::nullopt;
  struct group* g = getgrnam(name.c_str());
  if (g == nullptr) return std::nullopt;
  return g->gr_gid;
}

// The daemon holds several fds per managed process and client, more than the
// usual soft limit of 1024 allows; children get the original limit back (see
// ProcessLimits::children_nofile), since many programs misbehave with more.
struct rlimit RaiseFileLimit() {
  struct rlimit original {};
  getrlimit(RLIMIT_NOFILE, &original);
  struct rlimit raised = original;
  raised.rlim_cur = raised.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    LogError(absl::StrCat("cannot raise RLIMIT_NOFILE to ", raised.rlim_max));
  }
  return original;
}

// gRPC's own bounds: message sizes (the largest legitimate messages are
// measured in daemon/message_limits_test.cc), the threads and memory
// it may use (ResourceQuota), and calls per connection. The daemon adds no
// listening port; these apply to the connections the Listener hands over.
void ApplyServerLimits(const procwarp::config::v1::Limits& limits,
                       grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(
      static_cast<int>(limits.max_receive_message_bytes()));
  builder->SetMaxSendMessageSize(
      static_cast<int>(limits.max_send_message_bytes()));
  grpc::ResourceQuota quota("procwarpd");
  quota.SetMaxThreads(static_cast<int>(limits.max_server_threads()));
  quota.Resize(limits.grpc_memory_bytes());
  builder->SetResourceQuota(quota);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                              static_cast<int>(limits.max_calls_per_connection()));
}

absl::StatusOr<std::unique_ptr<TlsListener>> CreateTlsListener(
    const DaemonConfig& config, std::optional<gid_t> admin_gid,
    SessionRegistry* sessions) {
  const auto& tls = config.tls();
  const auto& limits = config.limits();
  TlsListenerOptions options;
  options.addresses.assign(config.listen_tcp().begin(), config.listen_tcp().end());
  options.files = {.ca_file = tls.ca_file(),
                   .cert_file = tls.cert_file(),
                   .key_file = tls.key_file()};
  if (tls.max_connections() > 0) {
    options.max_connections = static_cast<int>(tls.max_connections());
  }
  if (tls.handshake_timeout_ms() > 0) {
    options.handshake_timeout = absl::Milliseconds(tls.handshake_timeout_ms());
  }
  if (tls.dead_peer_timeout_ms() > 0) {
    options.dead_peer_timeout = absl::Milliseconds(tls.dead_peer_timeout_ms());
  }
  options.limits = {
      .per_identity = static_cast<int>(limits.max_connections_per_identity()),
      .per_admin = static_cast<int>(limits.max_connections_per_admin()),
      .fd_reserve = static_cast<int>(limits.fd_reserve())};
  CertificateMapper mapper({tls.mappings().begin(), tls.mappings().end()},
                           admin_gid);
  return TlsListener::Create(std::move(options), std::move(mapper), sessions);
}

// Stops the gRPC server: calls in progress get up to `grace` to finish, then
// are cancelled. gRPC's shutdown also waits for every connection to close
// after its GOAWAY, and an idle gRPC client notices a GOAWAY only on its
// backup poll (every 5 s), so one idle client would hold a restart for the
// whole grace. Once no call is in progress the connections are hung up
// instead (no new call can start on them after the GOAWAY).
void StopServing(grpc::Server& server, const SlotLimiter& call_slots,
                 SessionRegistry& sessions, absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  absl::Notification stopped;
  std::thread hang_up_when_idle([&] {
    while (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
      if (call_slots.TotalInUse() == 0) {
        sessions.HangUpAll();
        return;
      }
    }
  });
  server.Shutdown(absl::ToChronoTime(deadline));
  stopped.Notify();
  hang_up_when_idle.join();
}

int Serve(const DaemonConfig& config, const std::string& agent_path,
          UniqueFd keeper_link) {
  // Signals are taken synchronously by the main thread; block them before
  // any thread starts so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // SIGHUP reloads the TLS credentials (docs/remote.md).
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client or child that goes away must not kill the daemon.
  signal(SIGPIPE, SIG_IGN);

  std::optional<gid_t> admin_gid = LookUpAdminGroup(config.admin_group());
  struct rlimit children_nofile = RaiseFileLimit();

  SystemdNotifier systemd;
  // Under systemd with keeper "systemd", the fd store comes back with the
  // activated socket.
  const bool systemd_keeps_fds =
      !config.state_dir().empty() && config.keeper() == "systemd";
  std::vector<std::pair<std::string, UniqueFd>> stored_fds;
  auto activated = TakeActivatedSocket(systemd_keeps_fds ? &stored_fds : nullptr);
  if (!activated.ok()) {
    LogError(activated.status().ToString());
    return 1;
  }
  bool socket_activated = activated->has_value();
  UniqueFd listen_fd;
  std::string where = config.socket_path();
  if (socket_activated) {
    listen_fd = std::move(**activated);
    where = "the socket systemd passed";
  } else {
    SocketOptions options;
    options.path = config.socket_path();
    options.mode = config.socket_mode();
    auto bound = BindUnixSocket(options);
    if (!bound.ok()) {
      LogError(bound.status().ToString());
      return 1;
    }
    listen_fd = *std::move(bound);
  }

  const auto& limits = config.limits();
  SessionRegistry sessions;
  // Every call holds a call slot while its handler runs, long-lived ones a
  // stream slot too (caller_context.h).
  SlotLimiter call_slots("concurrent calls in progress",
                         {.per_identity = limits.max_calls_per_identity(),
                          .per_admin = limits.max_calls_per_admin(),
                          .non_admin_total = limits.max_calls_non_admin_total()});
  SlotLimiter stream_slots(
      "open streams (Attach, Events, Wait, ReadStream, WriteStream, Execute, "
      "Watch) in progress",
      {.per_identity = limits.max_streams_per_identity(),
       .per_admin = limits.max_streams_per_admin()});
  CallerResolver callers(&sessions, &call_slots, &stream_slots);
  EventBus events(limits.max_queued_events(), limits.max_queued_event_bytes());
  ProcessLimits process_limits;
  process_limits.max_processes_per_identity =
      config.limits().max_processes_per_identity();
  process_limits.output_buffer_bytes = config.limits().output_buffer_bytes();
  process_limits.children_nofile = children_nofile;
  if (config.limits().spawn_timeout_ms() > 0) {
    process_limits.spawn_timeout =
        absl::Milliseconds(config.limits().spawn_timeout_ms());
  }
  if (config.limits().max_spawns_in_flight_per_identity() > 0) {
    process_limits.max_starting_per_identity =
        config.limits().max_spawns_in_flight_per_identity();
  }
  ProcessTable table(process_limits, &events);
  // Re-adopt what the previous daemon managed before anyone can call.
  std::unique_ptr<RestartState> restart_state;
  const bool keeper_running = keeper_link.valid();
  if (absl::Status prepared = config.state_dir().empty()
                                  ? absl::OkStatus()
                                  : PrepareStateDir(config.state_dir());
      !prepared.ok()) {
    LogError(prepared.ToString());
    return 1;
  }
  if (!config.state_dir().empty()) {
    std::unique_ptr<FdHolder> holder;
    if (systemd_keeps_fds) {
      holder = std::make_unique<SystemdFdStore>(std::move(stored_fds));
    } else {
      holder = std::make_unique<KeeperLink>(std::move(keeper_link), config.state_dir());
    }
    restart_state = std::make_unique<RestartState>(config.state_dir(),
                                                   std::move(holder), &table);
    restart_state->Restore();
  }
  SlotLimiter record_bytes(
      "bytes of argv and labels in process records",
      {.per_identity = limits.max_record_bytes_per_identity(),
       .per_admin = limits.max_record_bytes_per_admin()});
  ProcessesService processes(&table, &events, &callers, &record_bytes);
  AdminService admin(&callers, &sessions, &table);
  AgentLauncher agent_launcher(agent_path);
  if (!agent_launcher.status().ok()) {
    LogError(absl::StrCat("threads are unavailable: ",
                          agent_launcher.status().ToString()));
  }
  ThreadLimits thread_limits;
  thread_limits.max_threads_per_identity =
      config.limits().max_threads_per_identity();
  ThreadTable threads(&agent_launcher, &sessions, thread_limits);
  // Persistent threads outlive the daemon with restart state; reconnect to
  // the previous daemon's (docs/architecture.md, "Restart without loss").
  if (restart_state != nullptr) restart_state->AdoptThreads(&threads);
  absl::Cleanup detach_journal = [&] { threads.SetJournal(nullptr); };
  ThreadsService threads_service(&threads, &table, &callers);
  MemoryService memory_service(&threads, &callers);
  // The fd side socket sits next to the main one. Under socket activation
  // it goes next to the activated socket's path when that has one; without
  // it, ExportFd/ImportFd say so and everything else works.
  std::unique_ptr<FdSideChannel> fd_side_channel;
  {
    std::string main_path =
        socket_activated ? BoundUnixPath(listen_fd.get()) : config.socket_path();
    if (main_path.empty()) {
      LogInfo("fd export/import disabled: the activated socket has no path");
    } else {
      FdSideChannelLimits side_limits;
      side_limits.exchange_timeout =
          absl::Milliseconds(config.limits().side_exchange_timeout_ms());
      side_limits.max_connections_per_uid =
          config.limits().max_side_connections_per_identity();
      side_limits.max_connections = config.limits().max_side_connections();
      side_limits.max_tokens_per_uid =
          config.limits().max_fd_tokens_per_identity();
      auto opened = OpenFdSideChannel(main_path, side_limits);
      if (opened.ok()) {
        fd_side_channel = *std::move(opened);
      } else {
        LogError(absl::StrCat("fd export/import disabled: ",
                              opened.status().ToString()));
      }
    }
  }
  FilesService files_service(&threads, &callers, fd_side_channel.get());
  // Remote calls and library injection in processes procwarp did not spawn
  // (docs/attach.md); each RPC attaches for its own duration, or uses the
  // caller's attached thread.
  exec::ExecService exec_service(
      &callers,
      {.max_operation_time =
           absl::Milliseconds(config.limits().exec_operation_timeout_ms()),
       .max_library_handles_per_identity =
           config.limits().max_library_handles_per_identity()},
      &threads);
  // Python stack snapshots (docs/python.md): reads, bounded like Exec.
  snapshots::SnapshotsService snapshots_service(
      &callers, absl::Milliseconds(config.limits().exec_operation_timeout_ms()));

  HealthService health(
      {v1::Admin::service_full_name(), v1::Processes::service_full_name(),
       v1::Threads::service_full_name(), v1::Memory::service_full_name(),
       v1::Files::service_full_name(),
       exec::v1::Exec::service_full_name(),
       snapshots::v1::Snapshots::service_full_name()},
      &callers);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  ApplyServerLimits(limits, &builder);
  builder.RegisterService(&processes);
  builder.RegisterService(&admin);
  builder.RegisterService(&health);
  builder.RegisterService(&threads_service);
  builder.RegisterService(&memory_service);
  builder.RegisterService(&files_service);
  builder.RegisterService(&exec_service);
  builder.RegisterService(&snapshots_service);
  // Reflection streams run gRPC's own handler: admit them here.
  {
    std::vector<std::unique_ptr<
        grpc::experimental::ServerInterceptorFactoryInterface>>
        admission;
    admission.push_back(std::make_unique<ReflectionAdmission>(&callers));
    builder.experimental().SetInterceptorCreators(std::move(admission));
  }
  // Remote callers: bound before the server starts so GetStatus can name the
  // addresses; a listen_tcp that cannot be served stops the daemon rather
  // than leaving it silently local-only.
  std::unique_ptr<TlsListener> tls_listener;
  if (config.listen_tcp_size() > 0) {
    auto created = CreateTlsListener(config, admin_gid, &sessions);
    if (!created.ok()) {
      LogError(absl::StrCat("listen_tcp: ", created.status().message()));
      return 1;
    }
    tls_listener = *std::move(created);
    admin.SetTlsAddresses(tls_listener->addresses());
    callers.SetRemoteCallers(tls_listener->callers());
    tls_listener->AddTo(&builder);
  }
  // No listening ports: connections come only from our own accept loops,
  // which authenticate them first (unix) or have gRPC do the TLS and bind
  // them to their certificate's identity on their first call (TCP).
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    LogError("failed to start the gRPC server");
    return 1;
  }

  Listener listener(std::move(listen_fd), &sessions, admin_gid,
                    {.per_identity = static_cast<int>(
                         limits.max_connections_per_identity()),
                     .per_admin = static_cast<int>(
                         limits.max_connections_per_admin()),
                     .fd_reserve = static_cast<int>(limits.fd_reserve())});
  listener.Start(server.get());
  if (tls_listener != nullptr) {
    tls_listener->Start();
    absl::StrAppend(&where, " and mutual TLS on ",
                    absl::StrJoin(tls_listener->addresses(), ", "));
  }
  if (fd_side_channel != nullptr) fd_side_channel->Start();
  LogInfo(absl::StrCat("procwarpd ", kProcwarpVersion, " serving on ", where));
  // MAINPID: under a keeper the process that was started is the keeper; this
  // names the daemon itself.
  systemd.Ready(absl::StrCat("serving on ", where),
                keeper_running ? getpid() : 0);
  systemd.StartWatchdog();

  // Between signals the main thread gives freed heap back after a load
  // (heap_trimmer.h): it looks at what the daemon holds every second.
  HeapTrimmer trimmer(kTrimAfterDropOf);
  int signal_number = 0;
  for (;;) {
    const timespec tick = {.tv_sec = kHousekeepingSeconds, .tv_nsec = 0};
    signal_number = sigtimedwait(&stop_signals, nullptr, &tick);
    if (signal_number < 0) {
      const size_t live = static_cast<size_t>(sessions.LiveSessions()) +
                          table.size() + threads.size();
      if (trimmer.Note(live)) {
        LogInfo(absl::StrCat("gave freed heap back to the kernel (malloc_trim) "
                             "after a drop to ", live,
                             " connections, processes and threads"));
      }
      continue;
    }
    if (signal_number != SIGHUP) break;
    LogInfo("SIGHUP: reloading the TLS credentials");
    if (tls_listener != nullptr) tls_listener->Reload();
  }
  LogInfo(absl::StrCat("received signal ", signal_number, ", shutting down"));
  systemd.Stopping();
  health.SetShuttingDown();
  listener.Stop();
  if (tls_listener != nullptr) tls_listener->StopAccepting();
  if (fd_side_channel != nullptr) fd_side_channel->Stop();
  StopServing(*server, call_slots, sessions,
              absl::Milliseconds(config.limits().shutdown_grace_ms()));
  if (!socket_activated) unlink(config.socket_path().c_str());
  // Managed processes and persistent threads stay (their keeper holds their
  // fds); the state file already says everything about them.
  threads.SetJournal(nullptr);
  restart_state.reset();
  LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace procwarp

int main(int argc, char** argv) {
  procwarp::Flags flags;
  CLI::App app{"procwarpd: the procwarp daemon (process control over gRPC)"};
  app.add_option("--config", flags.config_path,
                 "text-format DaemonConfig file (default: /etc/procwarp/"
                 "procwarpd.conf when it exists; see deploy/procwarpd.conf.example)");
  app.add_option("--socket", flags.socket_path,
                 "unix socket path (default: /run/procwarp/procwarpd.sock as "
                 "root, $XDG_RUNTIME_DIR/procwarp/procwarpd.sock otherwise)");
  app.add_option("--socket_mode,--socket-mode", flags.socket_mode,
                 "socket file mode in octal (default: 0660 with group procwarp "
                 "when it exists, else 0600)");
  app.add_option("--admin_group,--admin-group", flags.admin_group,
                 "members of this group act as admins");
  app.add_option("--state_dir,--state-dir", flags.state_dir,
                 "where managed processes are recorded so a restarted daemon "
                 "re-adopts them (default: <socket dir>/state for the default "
                 "socket; \"none\": off)");
  app.add_option("--keeper", flags.keeper,
                 "who holds managed processes' fds while no daemon runs: "
                 "process (default: a keeper process, the daemon's parent) or "
                 "systemd (the service's fd store)");
  app.add_option("--agent_path,--agent-path", flags.agent_path,
                 "procwarp-agent binary for Threads (default: next to "
                 "procwarpd, then ../agent/procwarp-agent, then "
                 "/usr/local/libexec/procwarp/procwarp-agent)");
  app.add_option("--listen_tcp,--listen-tcp", flags.listen_tcp,
                 "also serve mutual TLS on HOST:PORT (repeatable; IPv6 as "
                 "[ADDR]:PORT); needs --tls_ca, --tls_cert, --tls_key or the "
                 "config's tls {} and certificate mappings (docs/remote.md)");
  app.add_option("--tls_ca,--tls-ca", flags.tls_ca,
                 "PEM CA bundle client certificates must chain to");
  app.add_option("--tls_cert,--tls-cert", flags.tls_cert,
                 "PEM server certificate (chain)");
  app.add_option("--tls_key,--tls-key", flags.tls_key, "PEM server private key");
  procwarp::AddLimitFlags(app, flags.limits);
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");
#ifdef PROCWARP_TEST_FAULTS
  // Only in //daemon:procwarpd_with_faults (daemon/util/fault_point.h).
  std::string test_fault_file;
  app.add_option("--test_fault_file", test_fault_file,
                 "TEST BUILD ONLY: kill the target at the fault point named "
                 "in this file (daemon/testing/fault_injector.h)");
#endif
  CLI11_PARSE(app, argc, argv);
#ifdef PROCWARP_TEST_FAULTS
  if (!test_fault_file.empty()) procwarp::InjectFaultsFromFile(test_fault_file);
#endif
  if (version) {
    printf("procwarpd %s\n", procwarp::kProcwarpVersion);
    return 0;
  }
#ifdef NDEBUG
  // Debian builds Abseil with Mutex deadlock detection on, which records
  // every lock-order edge in a global graph: a cost on each lock the daemon
  // takes per call. Optimised builds turn it off; test builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  procwarp::InitLogging();
  procwarp::EnsureStdioOpen();
  auto config = procwarp::ResolveConfig(flags);
  if (!config.ok()) {
    procwarp::LogError(config.status().ToString());
    return 2;
  }
  // Before any thread exists: the process that was started becomes the
  // keeper and the daemon continues in its child (daemon/restart/keeper.h).
  procwarp::UniqueFd keeper_link;
  if (!config->state_dir().empty() && config->keeper() != "systemd") {
    absl::Status prepared = procwarp::PrepareStateDir(config->state_dir());
    if (!prepared.ok()) {
      procwarp::LogError(prepared.ToString());
      return 2;
    }
    auto link = procwarp::ForkUnderKeeper(config->state_dir());
    if (!link.ok()) {
      procwarp::LogError(link.status().ToString());
      return 2;
    }
    keeper_link = *std::move(link);
  }
  return procwarp::Serve(*config,
                         flags.agent_path.value_or(procwarp::FindAgentBinary()),
                         std::move(keeper_link));
}
