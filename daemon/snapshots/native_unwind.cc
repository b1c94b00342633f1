// See native_unwind.h.
#include "daemon/snapshots/native_unwind.h"

#include <cxxabi.h>
#include <elfutils/libdwfl.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/util/status_macros.h"

namespace procwarp::snapshots {
namespace {

// What the find_elf callback needs; libdwfl hands it each module's userdata,
// which SetSession points here.
struct Session {
  pid_t pid = 0;
  std::vector<ptrace::Mapping> maps;
};

// The module's file as the target mapped it. `base` is the start of the
// module's lowest mapping (dwfl_linux_proc_report reports it so); names
// that are not paths ("[vdso: PID]") are libdwfl's own to read from memory.
int FindElfInTarget(Dwfl_Module* module, void** userdata, const char* name,
                    Dwarf_Addr base, char** file_name, Elf** elf) {
  const auto* session = static_cast<const Session*>(*userdata);
  if (session == nullptr || name == nullptr || name[0] != '/') {
    return dwfl_linux_proc_find_elf(module, userdata, name, base, file_name, elf);
  }
  for (const ptrace::Mapping& mapping : session->maps) {
    if (mapping.start != base || mapping.path != name) continue;
    exec::LoadedObject object;
    object.path = mapping.path;
    object.first_start = mapping.start;
    object.first_end = mapping.end;
    absl::StatusOr<UniqueFd> fd = exec::OpenMappedObject(session->pid, object);
    if (!fd.ok()) return -1;
    *file_name = strdup(name);  // libdwfl frees it; it owns the fd from here
    return fd->Release();
  }
  return -1;
}

// No separate debuginfo: the CFI in .eh_frame and the symbol tables of the
// mapped file are enough to unwind and name frames, and a debuginfo search
// would read the daemon's files (/usr/lib/debug), not the target's.
int NoDebuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*,
                GElf_Word, char**) {
  return -1;
}

const Dwfl_Callbacks kCallbacks = {
    .find_elf = FindElfInTarget,
    .find_debuginfo = NoDebuginfo,
    .section_address = nullptr,
    .debuginfo_path = nullptr,
};

int SetSession(Dwfl_Module*, void** userdata, const char*, Dwarf_Addr, void* session) {
  *userdata = session;
  return DWARF_CB_OK;
}

struct DwflDeleter {
  void operator()(Dwfl* dwfl) const { dwfl_end(dwfl); }
};

std::string Demangle(const char* symbol) {
  int status = 0;
  std::unique_ptr<char, decltype(&free)> demangled(
      abi::__cxa_demangle(symbol, nullptr, nullptr, &status), &free);
  return status == 0 && demangled != nullptr ? std::string(demangled.get()) : symbol;
}

NativeFrame Describe(Dwfl* dwfl, Dwarf_Addr pc, bool activation) {
  NativeFrame frame;
  frame.pc = pc;
  // A return address may be the first byte after the call's function (a
  // noreturn callee): look up the call instruction itself.
  const Dwarf_Addr lookup = activation || pc == 0 ? pc : pc - 1;
  Dwfl_Module* module = dwfl_addrmodule(dwfl, lookup);
  if (module == nullptr) return frame;
  const char* name =
      dwfl_module_info(module, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (name != nullptr) frame.object = name;
  GElf_Addr bias = 0;
  if (dwfl_module_getelf(module, &bias) != nullptr) frame.elf_address = pc - bias;
  GElf_Off offset = 0;
  GElf_Sym symbol;
  const char* symbol_name =
      dwfl_module_addrinfo(module, lookup, &offset, &symbol, nullptr, nullptr, nullptr);
  if (symbol_name != nullptr) {
    frame.symbol = Demangle(symbol_name);
    frame.symbol_offset = offset + (pc - lookup);
  }
  return frame;
}

struct Walk {
  Dwfl* dwfl;
  int max_frames;
  UnwoundStack* out;
};

int OnFrame(Dwfl_Frame* state, void* arg) {
  auto* walk = static_cast<Walk*>(arg);
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(state, &pc, &activation)) return DWARF_CB_ABORT;
  walk->out->frames.push_back(Describe(walk->dwfl, pc, activation));
  if (static_cast<int>(walk->out->frames.size()) < walk->max_frames) return DWARF_CB_OK;
  walk->out->note = absl::StrCat("only the innermost ", walk->max_frames,
                                 " native frames are read (the limit)");
  return DWARF_CB_ABORT;
}

}  // namespace

absl::StatusOr<std::map<pid_t, UnwoundStack>> UnwindStoppedThreads(
    pid_t pid, absl::Span<const pid_t> tids, int max_frames, absl::Time deadline) {
  Session session;
  session.pid = pid;
  ASSIGN_OR_RETURN(session.maps, ptrace::ReadMaps(pid));
  std::unique_ptr<Dwfl, DwflDeleter> dwfl(dwfl_begin(&kCallbacks));
  if (dwfl == nullptr) {
    return absl::InternalError(absl::StrCat("dwfl_begin: ", dwfl_errmsg(-1)));
  }
  dwfl_report_begin(dwfl.get());
  const int reported = dwfl_linux_proc_report(dwfl.get(), pid);
  if (dwfl_report_end(dwfl.get(), nullptr, nullptr) != 0 || reported != 0) {
    return absl::InternalError(absl::StrCat("reading the mappings of pid ", pid, ": ",
                                            reported > 0 ? strerror(reported)
                                                         : dwfl_errmsg(-1)));
  }
  dwfl_getmodules(dwfl.get(), SetSession, &session, 0);
  const int attached = dwfl_linux_proc_attach(dwfl.get(), pid, /*assume_ptrace_stopped=*/true);
  if (attached != 0) {
    return absl::InternalError(absl::StrCat("unwinding pid ", pid, ": ",
                                            attached > 0 ? strerror(attached)
                                                         : dwfl_errmsg(-1)));
  }
  std::map<pid_t, UnwoundStack> out;
  for (pid_t tid : tids) {
    UnwoundStack& stack = out[tid];
    if (absl::Now() >= deadline) {
      stack.note = "not unwound: the call's deadline passed";
      continue;
    }
    Walk walk{dwfl.get(), max_frames, &stack};
    const int result = dwfl_getthread_frames(dwfl.get(), tid, OnFrame, &walk);
    // libdwfl may end a complete unwind with an error too (its header says
    // so): only an unwind that found nothing is told as a failure.
    if (result == -1 && stack.frames.empty()) {
      stack.note = absl::StrCat("the native stack could not be unwound: ", dwfl_errmsg(-1));
    }
  }
  return out;
}

}  // namespace procwarp::snapshots
