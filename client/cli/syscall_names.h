// Syscalls as a person types them for `procwarp thread syscall`: names as
// strace prints them (x86-64 numbering, from the kernel's unistd_64.h at
// build time), integer arguments, and results printed like strace does.
#ifndef PROCWARP_CLIENT_CLI_SYSCALL_NAMES_H_
#define PROCWARP_CLIENT_CLI_SYSCALL_NAMES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cc/thread.h"

namespace procwarp::cli {

// The number of syscall `name` ("getpid"), if there is one.
std::optional<int64_t> SyscallNumberByName(absl::string_view name);

// The name of syscall `number`, or "" when unknown.
std::string SyscallName(int64_t number);

// A syscall given by name or by number ("getpid", "39").
// INVALID_ARGUMENT for anything else.
absl::StatusOr<int64_t> ParseSyscall(absl::string_view text);

// One integer argument: decimal (possibly negative) or 0x hex.
absl::StatusOr<int64_t> ParseSyscallArg(absl::string_view text);

// "42", or "-1 EBADF (Bad file descriptor)" for a failed call.
std::string FormatSyscallResult(const SyscallResult& result);

}  // namespace procwarp::cli

#endif  // PROCWARP_CLIENT_CLI_SYSCALL_NAMES_H_
