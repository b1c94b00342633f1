// The CLI's commands on processes procwarp did not start (attached threads,
// issue 9): `thread attach`, `fds` and `steal-fd`. Same contract as
// commands.h: each returns the CLI's exit code, or an error main() prints.
#ifndef PROCWARP_CLIENT_CLI_ATTACH_COMMANDS_H_
#define PROCWARP_CLIENT_CLI_ATTACH_COMMANDS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/commands.h"
#include "client/cli/cli_output.pb.h"
#include "proto/procwarp/v1/files.pb.h"

namespace procwarp::cli {

struct ThreadAttachOptions {
  pid_t pid = 0;
  pid_t tid = 0;  // 0: the main thread
  // Accepted for clarity: the CLI's attachments are always persistent (its
  // connection ends when it exits, which would detach at once).
  bool persistent = false;
  std::string name;
};

// Attaches to a thread of process `pid` and prints the thread id, usable
// with every `procwarp thread ...` command; `thread kill ID` detaches.
absl::StatusOr<int> RunThreadAttach(const GlobalOptions& global,
                                    const ThreadAttachOptions& options);

// Lists the fds of process `pid` (attached for the listing only): fd, type,
// flags, offset, and path or socket description.
absl::StatusOr<int> RunFds(const GlobalOptions& global, pid_t pid);

// Copies fd `fd` of process `pid` out of it (attached for the copy only).
// With a command: runs it with the copy as its stdin and exits with its exit
// code. Without: keeps the copy in a new persistent agent thread and prints
// where ("thread ID fd N").
absl::StatusOr<int> RunStealFd(const GlobalOptions& global, pid_t pid, int fd,
                               std::vector<std::string> command);

// The kind of file an fd's /proc link names: "socket", "pipe",
// "anon_inode", "device" (/dev/...), "file" or "other".
std::string FdType(absl::string_view path);
// "r", "w" or "rw", then ",append", ",nonblock", ",cloexec" as set.
std::string FdFlags(const v1::FdInfo& fd);
// What /proc/PID/net/{unix,tcp,tcp6,udp,udp6} (as `net_text` maps file
// name to contents) say of socket inode `inode`; "" if none does.
std::string DescribeSocket(
    uint64_t inode, const std::vector<std::pair<std::string, std::string>>& net_text);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_ATTACH_COMMANDS_H_
