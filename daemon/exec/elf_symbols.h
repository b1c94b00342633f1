// SymbolResolver: turns "libc.so.6:getpid", "getpid", "main-program:my_func"
// or "0x7f12..." into an address in a target process, from the ELF objects
// the target has mapped, with elfutils' libelf.
//
// - The files are opened through /proc/PID/map_files/START-END (the very
//   file the target mapped, even if its path was replaced or lives in
//   another mount namespace, as in a container), falling back to
//   /proc/PID/root/PATH (the target's root, for chroots), never by the path
//   alone in the daemon's namespace.
// - .symtab is used when present (unstripped objects), else .dynsym; for
//   versioned symbols the default version wins over hidden ones
//   (dlopen@@GLIBC_2.34 over dlopen@GLIBC_2.2.5). STT_GNU_IFUNC symbols are
//   reported as such: their address is a resolver to call first.
// - The load bias comes from the object's first mapping and the PT_LOAD that
//   covers its file offset.
// - "getpid" alone is searched in load order: the dynamic linker's link map
//   (r_debug, found through the main program's DT_DEBUG), read from the
//   target's memory; when there is none (a static binary) or it cannot be
//   read, the main program first and then the objects as the kernel's
//   top-down mmap placed them (highest address first).
//
// Everything read here (files, link map) is under the target owner's
// control: it can only change which address in that target is called, every
// read is bounded, and nothing from it is trusted for the daemon's own
// memory safety.
#ifndef PROCWARP_DAEMON_EXEC_ELF_SYMBOLS_H_
#define PROCWARP_DAEMON_EXEC_ELF_SYMBOLS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/remote_memory.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {

// One ELF object mapped in the target.
struct LoadedObject {
  std::string path;          // as the target sees it
  uint64_t first_start = 0;  // start of its lowest-offset mapping
  uint64_t first_end = 0;
  uint64_t bias = 0;         // load bias (0 for ET_EXEC)
  bool main_program = false;
  bool is_dynamic = false;   // ET_DYN
};

struct ResolvedSymbol {
  uint64_t address = 0;
  std::string object;  // path of the object it was found in ("" for an address)
  bool ifunc = false;  // address is an IFUNC resolver
};

// The file behind `object` as the target mapped it: /proc/PID/map_files/
// START-END of its first mapping, else PATH under /proc/PID/root; never the
// path in the daemon's own namespace.
absl::StatusOr<UniqueFd> OpenMappedObject(pid_t pid, const LoadedObject& object);

class SymbolResolver {
 public:
  // Lists the ELF objects mapped in `pid`. `memory` (optional) is used to
  // read the dynamic linker's link map for the load order.
  static absl::StatusOr<SymbolResolver> ForProcess(pid_t pid,
                                                   ptrace::RemoteMemory* memory);

  pid_t pid() const { return pid_; }

  // The objects in search (load) order.
  const std::vector<LoadedObject>& objects() const { return objects_; }

  // The object named `name`: "main-program", a basename ("libc.so.6"), or a
  // full path. nullptr when none is mapped.
  const LoadedObject* FindObject(absl::string_view name) const;

  // Resolves "OBJECT:SYMBOL", "SYMBOL" or a hex address ("0x...").
  // NOT_FOUND names what was searched; INVALID_ARGUMENT for a malformed spec.
  absl::StatusOr<ResolvedSymbol> Resolve(absl::string_view spec) const;

  // Looks `symbol` up in one object.
  absl::StatusOr<ResolvedSymbol> Lookup(const LoadedObject& object,
                                        absl::string_view symbol) const;

  // Every symbol of `object` (.symtab and .dynsym, functions and objects)
  // whose name is in `names`, with its address in the target and its size.
  // A global definition wins over a local one of the same name. One pass
  // over the file, for callers that need several symbols of one object.
  struct SymbolRange {
    uint64_t address = 0;
    uint64_t size = 0;
    bool contains(uint64_t a) const { return a >= address && a < address + size; }
  };
  absl::StatusOr<std::map<std::string, SymbolRange, std::less<>>> LookupSymbols(
      const LoadedObject& object, absl::Span<const absl::string_view> names) const;

  // "function+0x1c" for an address inside `object` (the nearest function
  // symbol at or below it), else "object+0xoffset".
  std::string DescribeAddress(const LoadedObject& object, uint64_t address) const;

  // "libc.so.6, ld-linux-x86-64.so.2, ..." for messages.
  std::string DescribeObjects() const;

 private:
  pid_t pid_ = 0;
  std::vector<LoadedObject> objects_;
};

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_ELF_SYMBOLS_H_
