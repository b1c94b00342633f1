// See library_injector.h.
#include "daemon/exec/library_injector.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/exec/remote_call.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

constexpr size_t kScratch = 4096;
constexpr size_t kMaxError = 1024;

absl::StatusOr<const LoadedObject*> Glibc(const ptrace::Operation& op,
                                          const SymbolResolver& symbols) {
  const LoadedObject* libc = symbols.FindObject("libc.so.6");
  if (libc != nullptr) return libc;
  std::string found = symbols.DescribeObjects();
  return absl::FailedPreconditionError(absl::StrCat(
      "no libc.so.6 mapped in pid ", op.pid(), " (it has: ", found,
      symbols.objects().size() <= 1 ? "; a static binary?" : "",
      "); library injection needs a glibc target"));
}

// The address of dlopen-or-equivalent and of dlerror (0 when absent).
absl::StatusOr<std::pair<ResolvedSymbol, uint64_t>> FindLoader(
    const ptrace::Operation& op, const SymbolResolver& symbols,
    const char* function) {
  ASSIGN_OR_RETURN(const LoadedObject* libc, Glibc(op, symbols));
  absl::StatusOr<ResolvedSymbol> fn = symbols.Lookup(*libc, function);
  if (!fn.ok() && std::string(function) == "dlopen") {
    fn = symbols.Lookup(*libc, "__libc_dlopen_mode");
  }
  if (!fn.ok()) {
    if (const LoadedObject* libdl = symbols.FindObject("libdl.so.2")) {
      fn = symbols.Lookup(*libdl, function);
    }
  }
  if (!fn.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", op.pid(), " has glibc but no ", function, " in ", libc->path));
  }
  absl::StatusOr<ResolvedSymbol> err = symbols.Lookup(*libc, "dlerror");
  return std::make_pair(*fn, err.ok() ? err->address : 0);
}

// dlerror()'s text in the target, bounded.
std::string RemoteDlerror(ptrace::Operation& op, uint64_t dlerror) {
  if (dlerror == 0) return "(no dlerror)";
  absl::StatusOr<CallResult> r = CallFunction(op, dlerror, {});
  if (!r.ok() || r->crashed() || r->value == 0) return "(no message)";
  std::string text;
  std::vector<uint8_t> chunk(64);
  for (uint64_t at = r->value; text.size() < kMaxError; at += chunk.size()) {
    if (!op.memory().Read(at, absl::MakeSpan(chunk)).ok()) break;
    for (uint8_t c : chunk) {
      if (c == 0) return text;
      text.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
    }
  }
  return text;
}

absl::Status CrashStatus(const ptrace::Operation& op, const char* what,
                         const CallResult& r) {
  return absl::AbortedError(absl::StrCat(
      what, " crashed in pid ", op.pid(), " with signal ", r.signal,
      " (fault address 0x", absl::Hex(r.fault_address), ", rip 0x",
      absl::Hex(r.fault_rip), "); the target was put back as it was"));
}

}  // namespace

absl::StatusOr<uint64_t> InjectLibrary(ptrace::Operation& op,
                                       const SymbolResolver& symbols,
                                       const std::string& path) {
  if (path.empty() || path.size() >= kScratch || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("library path must be 1..4095 bytes, no NUL");
  }
  ASSIGN_OR_RETURN(auto loader, FindLoader(op, symbols, "dlopen"));
  ASSIGN_OR_RETURN(ptrace::SyscallResult page,
                   op.Syscall(SYS_mmap, {0, kScratch, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS,
                                         static_cast<uint64_t>(-1), 0}));
  if (page.value < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "mmap of a scratch page in pid ", op.pid(), " failed: errno ", -page.value));
  }
  uint64_t scratch = static_cast<uint64_t>(page.value);
  std::vector<uint8_t> bytes(path.begin(), path.end());
  bytes.push_back(0);
  absl::Status st = op.memory().Write(scratch, absl::MakeConstSpan(bytes));
  absl::StatusOr<CallResult> opened;
  if (st.ok()) {
    // __libc_dlopen_mode takes the same (name, mode) arguments.
    opened = CallFunction(op, loader.first.address, {scratch, RTLD_NOW});
  }
  std::string error;
  if (st.ok() && opened.ok() && !opened->crashed() && opened->value == 0) {
    error = RemoteDlerror(op, loader.second);
  }
  // The scratch page goes whatever happened.
  absl::StatusOr<ptrace::SyscallResult> unmapped =
      op.Syscall(SYS_munmap, {scratch, kScratch});
  RETURN_IF_ERROR(st);
  if (!opened.ok()) return opened.status();
  if (opened->crashed()) return CrashStatus(op, "dlopen", *opened);
  if (!unmapped.ok()) return unmapped.status();
  if (opened->value == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dlopen(", path, ") in pid ", op.pid(), " failed: ", error));
  }
  return opened->value;
}

absl::Status UnloadLibrary(ptrace::Operation& op, const SymbolResolver& symbols,
                           uint64_t handle) {
  if (handle == 0) return absl::InvalidArgumentError("null library handle");
  ASSIGN_OR_RETURN(auto loader, FindLoader(op, symbols, "dlclose"));
  ASSIGN_OR_RETURN(CallResult closed,
                   CallFunction(op, loader.first.address, {handle}));
  if (closed.crashed()) return CrashStatus(op, "dlclose", closed);
  if (static_cast<int>(closed.value) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dlclose in pid ", op.pid(), " failed: ", RemoteDlerror(op, loader.second)));
  }
  return absl::OkStatus();
}

}  // namespace procwarp::exec
