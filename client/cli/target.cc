// See target.h.
#include "client/cli/target.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/cli_config.pb.h"
#include "google/protobuf/text_format.h"

namespace procwarp::cli {
namespace {

std::string EnvOr(const EnvLookup& env, const char* name) {
  const char* value = env(name);
  return value != nullptr ? value : "";
}

// The first non-empty of its arguments.
std::string FirstOf(std::initializer_list<std::string> values) {
  for (const std::string& v : values) {
    if (!v.empty()) return v;
  }
  return "";
}

// A path from the config file: "~/" is $HOME, relative is from the file's
// directory.
std::string ConfigPath(const std::string& path, const std::string& config_path,
                       const EnvLookup& env) {
  if (path.empty()) return path;
  if (absl::StartsWith(path, "~/")) {
    return absl::StrCat(EnvOr(env, "HOME"), path.substr(1));
  }
  if (path[0] == '/') return path;
  return (std::filesystem::path(config_path).parent_path() / path).string();
}

absl::StatusOr<CliConfig> LoadCliConfig(const std::string& path, bool* found) {
  CliConfig config;
  std::ifstream in(path);
  *found = static_cast<bool>(in);
  if (!*found) return config;
  std::stringstream text;
  text << in.rdbuf();
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &config)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a valid procwarp CLI config (text format, see "
              "client/cli/cli_config.proto)"));
  }
  return config;
}

}  // namespace

std::string DefaultCliConfigPath(const EnvLookup& env) {
  std::string base = EnvOr(env, "XDG_CONFIG_HOME");
  if (base.empty()) base = absl::StrCat(EnvOr(env, "HOME"), "/.config");
  return absl::StrCat(base, "/procwarp/config");
}

absl::StatusOr<Target> ResolveTarget(const GlobalOptions& flags,
                                     const EnvLookup& env,
                                     const std::string& config_path) {
  Target target;
  if (!flags.socket_path.empty()) {
    if (!flags.host.empty()) {
      return absl::InvalidArgumentError(
          "--socket and --host name two daemons; give one");
    }
    target.socket_path = flags.socket_path;
    return target;
  }
  bool found = false;
  absl::StatusOr<CliConfig> config = LoadCliConfig(config_path, &found);
  if (!config.ok()) return config.status();
  const std::string asked =
      FirstOf({flags.context, EnvOr(env, "PROCWARP_CONTEXT")});
  const std::string name = FirstOf({asked, config->current_context()});
  const Context* context = nullptr;
  if (!name.empty()) {
    std::vector<std::string> names;
    for (const Context& c : config->contexts()) {
      names.push_back(c.name());
      if (c.name() == name) context = &c;
    }
    if (context == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "no context '", name, "' in ", config_path,
          found ? absl::StrCat(" (it has: ", absl::StrJoin(names, ", "), ")")
                : " (the file does not exist)"));
    }
    target.context = name;
  }
  // A host named on the command line or in the environment is a target of
  // its own: the current context's certificate belongs to the context's
  // host, so it is not lent to another one (a context asked for by name
  // still fills in what the flags leave out).
  const bool host_given =
      !FirstOf({flags.host, EnvOr(env, "PROCWARP_HOST")}).empty();
  const Context empty;
  const Context& c =
      context != nullptr && (!host_given || !asked.empty()) ? *context : empty;
  target.host = FirstOf({flags.host, EnvOr(env, "PROCWARP_HOST"), c.host()});
  target.tls.ca = FirstOf({flags.ca, EnvOr(env, "PROCWARP_CA"),
                           ConfigPath(c.ca(), config_path, env)});
  target.tls.cert = FirstOf({flags.cert, EnvOr(env, "PROCWARP_CERT"),
                             ConfigPath(c.cert(), config_path, env)});
  target.tls.key = FirstOf({flags.key, EnvOr(env, "PROCWARP_KEY"),
                            ConfigPath(c.key(), config_path, env)});
  if (target.host.empty()) target.socket_path = c.socket();
  return target;
}

absl::StatusOr<Client> ConnectClient(const GlobalOptions& global) {
  EnvLookup env = [](const char* name) { return getenv(name); };
  absl::StatusOr<Target> target =
      ResolveTarget(global, env, DefaultCliConfigPath(env));
  if (!target.ok()) return target.status();
  if (target->host.empty()) return Client::Connect(target->socket_path);
  return Client::Connect(absl::StrCat("tls://", target->host), target->tls);
}

std::string ChosenContext(const GlobalOptions& global) {
  EnvLookup env = [](const char* name) { return getenv(name); };
  absl::StatusOr<Target> target =
      ResolveTarget(global, env, DefaultCliConfigPath(env));
  return target.ok() ? target->context : "";
}

}  // namespace procwarp::cli
