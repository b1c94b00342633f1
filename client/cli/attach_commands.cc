// See attach_commands.h.
#include "client/cli/attach_commands.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cc/client.h"
#include "client/cli/output.h"

namespace procwarp::cli {
namespace {

// TCP states as /proc/net/tcp numbers them.
const char* TcpState(int state) {
  static const char* const kNames[] = {
      "?",         "ESTABLISHED", "SYN_SENT",   "SYN_RECV", "FIN_WAIT1",
      "FIN_WAIT2", "TIME_WAIT",   "CLOSE",      "CLOSE_WAIT", "LAST_ACK",
      "LISTEN",    "CLOSING"};
  return state >= 0 && state < 12 ? kNames[state] : "?";
}

// "0100007F:0050" (v4) or 32 hex digits + ":port" (v6) as "127.0.0.1:80".
std::string DecodeAddress(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, ':');
  uint32_t port = 0;
  if (!absl::SimpleHexAtoi(parts.second, &port)) return std::string(text);
  // The kernel prints each 32-bit word of the address as a native integer.
  uint8_t bytes[16];
  const size_t words = parts.first.size() / 8;
  if (words != 1 && words != 4) return std::string(text);
  for (size_t i = 0; i < words; ++i) {
    uint32_t word = 0;
    if (!absl::SimpleHexAtoi(parts.first.substr(i * 8, 8), &word)) {
      return std::string(text);
    }
    memcpy(bytes + i * 4, &word, 4);
  }
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(words == 1 ? AF_INET : AF_INET6, bytes, buf, sizeof(buf)) ==
      nullptr) {
    return std::string(text);
  }
  return words == 1 ? absl::StrCat(buf, ":", port)
                    : absl::StrCat("[", buf, "]:", port);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// An attachment for this command only: it ends with the CLI's connection
// even if the command fails half-way.
absl::StatusOr<Thread> AttachTransiently(const Client& client, pid_t pid) {
  return client.AttachThread(pid, /*tid=*/0, /*persistent=*/false);
}

}  // namespace

std::string FdType(absl::string_view path) {
  if (absl::StartsWith(path, "socket:")) return "socket";
  if (absl::StartsWith(path, "pipe:")) return "pipe";
  if (absl::StartsWith(path, "anon_inode:")) return "anon_inode";
  if (absl::StartsWith(path, "/dev/")) return "device";
  if (absl::StartsWith(path, "/")) return "file";
  return "other";
}

std::string FdFlags(const v1::FdInfo& fd) {
  std::string flags;
  switch (fd.flags() & O_ACCMODE) {
    case O_RDONLY:
      flags = "r";
      break;
    case O_WRONLY:
      flags = "w";
      break;
    default:
      flags = "rw";
  }
  if (fd.flags() & O_APPEND) flags += ",append";
  if (fd.flags() & O_NONBLOCK) flags += ",nonblock";
  if (fd.cloexec()) flags += ",cloexec";
  return flags;
}

std::string DescribeSocket(
    uint64_t inode,
    const std::vector<std::pair<std::string, std::string>>& net_text) {
  const std::string wanted = absl::StrCat(inode);
  for (const auto& [name, text] : net_text) {
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> fields =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (name == "unix") {
        // Num RefCount Protocol Flags Type St Inode [Path]
        if (fields.size() >= 7 && fields[6] == wanted) {
          return fields.size() > 7 ? absl::StrCat("unix ", fields[7])
                                   : "unix (unnamed)";
        }
        continue;
      }
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      if (fields.size() < 10 || fields[9] != wanted) continue;
      int state = 0;
      absl::SimpleHexAtoi(fields[3], &state);
      std::string out = absl::StrCat(name, " ", DecodeAddress(fields[1]));
      if (absl::StartsWith(name, "tcp")) {
        if (state != 10) absl::StrAppend(&out, " -> ", DecodeAddress(fields[2]));
        absl::StrAppend(&out, " ", TcpState(state));
      }
      return out;
    }
  }
  return "";
}

absl::StatusOr<int> RunThreadAttach(const GlobalOptions& global,
                                    const ThreadAttachOptions& options) {
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  v1::AttachThreadRequest request;
  request.set_pid(options.pid);
  if (options.tid != 0) request.set_tid(options.tid);
  request.set_persistent(true);
  if (!options.name.empty()) (*request.mutable_labels())["name"] = options.name;
  absl::StatusOr<Thread> thread = client->AttachThread(request);
  if (!thread.ok()) return thread.status();
  v1::AttachThreadResponse response;
  *response.mutable_thread() = thread->info();
  thread->Release();
  if (global.json) {
    if (absl::Status printed = PrintJson(response); !printed.ok()) return printed;
    return 0;
  }
  std::cout << EscapeForTerminal(response.thread().id()) << std::endl;
  return 0;
}

absl::StatusOr<int> RunFds(const GlobalOptions& global, pid_t pid) {
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread = AttachTransiently(*client, pid);
  if (!thread.ok()) return thread.status();
  absl::StatusOr<std::vector<v1::FdInfo>> fds = thread->ListFds();
  absl::Status detached = thread->Exit();
  if (!fds.ok()) return fds.status();
  if (!detached.ok()) return detached;
  // Socket details as this user may read them (best effort).
  std::vector<std::pair<std::string, std::string>> net;
  for (const char* name : {"unix", "tcp", "tcp6", "udp", "udp6"}) {
    net.emplace_back(name, ReadText(absl::StrCat("/proc/", pid, "/net/", name)));
  }
  FdsOutput output;
  output.set_pid(pid);
  for (const v1::FdInfo& fd : *fds) {
    FdEntry* entry = output.add_fds();
    *entry->mutable_info() = fd;
    entry->set_type(FdType(fd.path()));
    std::string description = fd.path();
    uint64_t inode = 0;
    absl::string_view path = fd.path();
    if (entry->type() == "socket" && absl::ConsumePrefix(&path, "socket:[") &&
        absl::ConsumeSuffix(&path, "]") && absl::SimpleAtoi(path, &inode)) {
      std::string socket = DescribeSocket(inode, net);
      if (!socket.empty()) description = absl::StrCat(fd.path(), " ", socket);
    }
    entry->set_description(description);
  }
  if (global.json) {
    if (absl::Status printed = PrintJson(output); !printed.ok()) return printed;
    return 0;
  }
  std::cout << absl::StrFormat("%4s  %-10s  %-20s  %10s  %s\n", "FD", "TYPE",
                               "FLAGS", "OFFSET", "PATH");
  for (const FdEntry& entry : output.fds()) {
    std::cout << absl::StrFormat(
        "%4d  %-10s  %-20s  %10d  %s\n", entry.info().fd(), entry.type(),
        FdFlags(entry.info()), entry.info().position(),
        EscapeForTerminal(entry.description()));
  }
  return 0;
}

absl::StatusOr<int> RunStealFd(const GlobalOptions& global, pid_t pid, int fd,
                               std::vector<std::string> command) {
  // CLI11 passes the "--" people write before the command on.
  if (!command.empty() && command.front() == "--") command.erase(command.begin());
  absl::StatusOr<Client> client = Client::Connect(global.socket_path);
  if (!client.ok()) return client.status();
  absl::StatusOr<Thread> thread = AttachTransiently(*client, pid);
  if (!thread.ok()) return thread.status();
  StealFdOutput output;
  output.set_pid(pid);
  output.set_fd(fd);
  // The target's fd is borrowed: the handle must not close it.
  FileDescriptor theirs = thread->AdoptFd(fd);
  if (command.empty()) {
    // Kept where it outlives this command: a persistent agent thread.
    ThreadOptions options;
    options.persistent = true;
    options.labels["name"] = absl::StrCat("steal-fd ", pid, ":", fd);
    absl::StatusOr<Thread> keeper = client->CreateThread(options);
    if (!keeper.ok()) {
      theirs.Release();
      return keeper.status();
    }
    absl::StatusOr<FileDescriptor> copy = thread->TransferFd(theirs, *keeper);
    theirs.Release();
    if (!copy.ok()) {
      keeper->Exit().IgnoreError();
      return copy.status();
    }
    output.set_thread_id(keeper->id());
    output.set_thread_fd(copy->Release());
    keeper->Release();
    if (absl::Status detached = thread->Exit(); !detached.ok()) return detached;
    if (global.json) {
      if (absl::Status printed = PrintJson(output); !printed.ok()) return printed;
      return 0;
    }
    std::cout << "thread " << EscapeForTerminal(output.thread_id()) << " fd "
              << output.thread_fd() << std::endl;
    return 0;
  }
  absl::StatusOr<int> local = thread->ExportFd(theirs);
  theirs.Release();
  absl::Status detached = thread->Exit();
  if (!local.ok()) return local.status();
  if (!detached.ok()) {
    close(*local);
    return detached;
  }
  std::vector<char*> argv;
  for (std::string& arg : command) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t child = fork();
  if (child < 0) {
    close(*local);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (child == 0) {
    // dup2 clears close-on-exec on the copy.
    if (dup2(*local, 0) < 0) _exit(126);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(*local);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status)
                                     : 128 + WTERMSIG(status);
  if (global.json) {
    output.set_exit_code(code);
    if (absl::Status printed = PrintJson(output); !printed.ok()) return printed;
  }
  return code;
}

}  // namespace procwarp::cli
