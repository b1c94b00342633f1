// See interpreter.h.
#include "daemon/python/interpreter.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python {
namespace {

constexpr size_t kVersionBuffer = 64;

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

bool LooksLikeInterpreterFile(const exec::LoadedObject& object) {
  const std::string base = Basename(object.path);
  return object.main_program || absl::StartsWith(base, "libpython") ||
         absl::StartsWith(base, "libpypy");
}

// "3.8.18 (default, ..." -> {3, 8, 18}. False when `text` does not start so.
bool ParseVersionText(absl::string_view text, int* major, int* minor, int* micro) {
  size_t end = text.find_first_not_of("0123456789.");
  std::vector<absl::string_view> parts =
      absl::StrSplit(text.substr(0, end), '.');
  if (parts.size() < 3) return false;
  return absl::SimpleAtoi(parts[0], major) && absl::SimpleAtoi(parts[1], minor) &&
         absl::SimpleAtoi(parts[2], micro) && *major >= 2 && *major <= 3;
}

// "libpython3.8.so.1.0", "libpython3.7m.so", "python3.11", "libpypy3.9-c.so"
// -> {3, 8}.
bool ParseVersionFromName(absl::string_view name, int* major, int* minor) {
  for (absl::string_view marker : {"python", "pypy"}) {
    size_t at = name.rfind(marker);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = name.substr(at + marker.size());
    size_t dot = rest.find('.');
    if (dot == absl::string_view::npos) continue;
    size_t end = rest.find_first_not_of("0123456789", dot + 1);
    if (absl::SimpleAtoi(rest.substr(0, dot), major) &&
        absl::SimpleAtoi(rest.substr(dot + 1, end - dot - 1), minor)) {
      return true;
    }
  }
  return false;
}

void FillVersion(const exec::SymbolResolver& symbols, ptrace::RemoteMemory& memory,
                 const std::map<std::string, exec::SymbolResolver::SymbolRange,
                                std::less<>>& found,
                 Interpreter* interp) {
  if (auto it = found.find("Py_Version"); it != found.end()) {
    uint32_t hex = 0;  // PY_VERSION_HEX (an unsigned long; little-endian low half)
    if (memory.Read(it->second.address,
                    absl::MakeSpan(reinterpret_cast<uint8_t*>(&hex), sizeof(hex)))
            .ok() &&
        (hex >> 24) == 3) {
      interp->major = static_cast<int>(hex >> 24);
      interp->minor = static_cast<int>((hex >> 16) & 0xff);
      interp->micro = static_cast<int>((hex >> 8) & 0xff);
      return;
    }
  }
  if (auto it = found.find("version.0"); it != found.end()) {
    char text[kVersionBuffer] = {};
    if (memory.Read(it->second.address,
                    absl::MakeSpan(reinterpret_cast<uint8_t*>(text), sizeof(text) - 1))
            .ok() &&
        ParseVersionText(text, &interp->major, &interp->minor, &interp->micro)) {
      return;
    }
  }
  ParseVersionFromName(Basename(interp->object.path), &interp->major, &interp->minor);
}

bool IsOptOutXOption(absl::string_view option) {
  return option == "disable_remote_debug" || option == "disable-remote-debug" ||
         absl::StartsWith(option, "disable_remote_debug=") ||
         absl::StartsWith(option, "disable-remote-debug=");
}

}  // namespace

std::string Interpreter::Version() const {
  if (micro < 0) return absl::StrCat(major, ".", minor);
  return absl::StrCat(major, ".", minor, ".", micro);
}

std::string Interpreter::Describe() const {
  const char* impl = implementation == Implementation::kPyPy ? "PyPy" : "CPython";
  const std::string version = major == 0 ? "(version unknown)" : Version();
  return absl::StrCat(impl, " ", version, " (", object.path, ")");
}

std::string Interpreter::CApi(absl::string_view cpython_name) const {
  if (implementation != Implementation::kPyPy) return std::string(cpython_name);
  return absl::StrCat("PyPy", cpython_name.substr(2));  // "Py" -> "PyPy"
}

bool Interpreter::IsCPythonAtLeast(int want_major, int want_minor) const {
  return implementation == Implementation::kCPython &&
         (major > want_major || (major == want_major && minor >= want_minor));
}

absl::StatusOr<Interpreter> FindInterpreter(const exec::SymbolResolver& symbols,
                                            ptrace::RemoteMemory& memory) {
  static constexpr absl::string_view kNames[] = {
      "Py_AddPendingCall", "PyPyGILState_Ensure", "Py_Version", "version.0"};
  std::vector<const exec::LoadedObject*> order;
  for (const exec::LoadedObject& o : symbols.objects()) {
    if (LooksLikeInterpreterFile(o)) order.push_back(&o);
  }
  for (const exec::LoadedObject& o : symbols.objects()) {
    if (!LooksLikeInterpreterFile(o)) order.push_back(&o);
  }
  for (const exec::LoadedObject* object : order) {
    auto found = symbols.LookupSymbols(*object, kNames);
    if (!found.ok()) continue;
    Interpreter interp;
    interp.object = *object;
    if (found->count("PyPyGILState_Ensure") != 0) {
      interp.implementation = Implementation::kPyPy;
      ParseVersionFromName(Basename(object->path), &interp.major, &interp.minor);
      return interp;
    }
    if (found->count("Py_AddPendingCall") == 0) continue;
    FillVersion(symbols, memory, *found, &interp);
    return interp;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "pid ", symbols.pid(), " is not running a Python interpreter: no mapped object "
      "defines Py_AddPendingCall or PyPyGILState_Ensure (mapped: ",
      symbols.DescribeObjects(), ")"));
}

OptOut ReadOptOut(pid_t pid) {
  OptOut out;
  absl::StatusOr<std::string> environ = ptrace::ReadProcFile(absl::StrCat("/proc/", pid, "/environ"));
  if (environ.ok()) {
    for (absl::string_view entry : absl::StrSplit(*environ, '\0')) {
      constexpr absl::string_view kVar = "PYTHON_DISABLE_REMOTE_DEBUG=";
      if (absl::StartsWith(entry, kVar) && entry.size() > kVar.size()) {
        out.opted_out = true;
        out.evidence = absl::StrCat(entry, " in its environment");
        return out;
      }
    }
  }
  absl::StatusOr<std::string> cmdline = ptrace::ReadProcFile(absl::StrCat("/proc/", pid, "/cmdline"));
  if (!cmdline.ok()) return out;
  std::vector<absl::string_view> args = absl::StrSplit(*cmdline, '\0');
  // The interpreter's own options come before the script, -c or -m.
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg.empty() || arg[0] != '-' || arg == "-" || arg == "-c" || arg == "-m") break;
    absl::string_view option;
    if (arg == "-W") {  // takes the next word as its value
      ++i;
      continue;
    }
    if (arg == "-X" && i + 1 < args.size()) {
      option = args[++i];
    } else if (absl::StartsWith(arg, "-X")) {
      option = arg.substr(2);
    } else {
      continue;
    }
    if (IsOptOutXOption(option)) {
      out.opted_out = true;
      out.evidence = absl::StrCat("-X ", option, " on its command line");
      return out;
    }
  }
  return out;
}

}  // namespace procwarp::python
