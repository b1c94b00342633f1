// Library injection into an attached glibc target: dlopen() called remotely
// (remote_call.h), its constructors run inside the target; dlclose() to
// unload.
//
// The path is written into a scratch page the target gets from an injected
// mmap and loses again by an injected munmap, so nothing is left behind but
// the library itself. dlopen is looked up in libc.so.6 (glibc 2.34+ has it
// there), then as __libc_dlopen_mode (older glibc), then in libdl.so.2.
// Targets without glibc (static binaries, musl, no libc at all) get
// FAILED_PRECONDITION saying what was found instead.
//
// `path` is opened by the target's dynamic loader with the target's
// credentials. The service must make sure the caller may read it (e.g. open
// it as the caller and pass "/proc/self/fd/N" after installing the fd in the
// target) — this layer only loads what it is given.
#ifndef PROCWARP_DAEMON_EXEC_LIBRARY_INJECTOR_H_
#define PROCWARP_DAEMON_EXEC_LIBRARY_INJECTOR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/operation.h"

namespace procwarp::exec {

// Loads `path` (as the target sees it) with dlopen(path, RTLD_NOW) and
// returns the handle. dlopen's failure comes back with dlerror()'s text.
absl::StatusOr<uint64_t> InjectLibrary(ptrace::Operation& op,
                                       const SymbolResolver& symbols,
                                       const std::string& path);

// dlclose(handle); dlerror()'s text on failure.
absl::Status UnloadLibrary(ptrace::Operation& op, const SymbolResolver& symbols,
                           uint64_t handle);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_LIBRARY_INJECTOR_H_
