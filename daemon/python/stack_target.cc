// See stack_target.h.
#include "daemon/python/stack_target.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <map>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python {
namespace {

// One ELF file mapped in the target, at its lowest-offset mapping.
struct MappedFile {
  std::string path;
  std::string dev;
  uint64_t inode = 0;
  uint64_t start = 0;
  uint64_t offset = 0;
};

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "libpython3.11.so.1.0" -> {3, 11}; "libpython3.7m.so" -> {3, 7}.
std::optional<std::pair<int, int>> LibpythonVersion(const std::string& base) {
  if (!absl::StartsWith(base, "libpython")) return std::nullopt;
  absl::string_view rest = absl::string_view(base).substr(9);
  size_t dot = rest.find('.');
  if (dot == absl::string_view::npos) return std::nullopt;
  size_t end = dot + 1;
  while (end < rest.size() && absl::ascii_isdigit(rest[end])) ++end;
  int major = 0, minor = 0;
  if (!absl::SimpleAtoi(rest.substr(0, dot), &major) ||
      !absl::SimpleAtoi(rest.substr(dot + 1, end - dot - 1), &minor)) {
    return std::nullopt;
  }
  if (!absl::StrContains(rest.substr(end), ".so")) return std::nullopt;
  return std::make_pair(major, minor);
}

// Symbol addresses relative to an object's lowest-offset mapping, per file:
// the same file is laid out the same way in every process that maps it.
class SymbolCache {
 public:
  // The addresses of `names` in `file` of `pid` (nullopt: not defined).
  std::vector<std::optional<uint64_t>> Find(pid_t pid, const MappedFile& file,
                                            const std::vector<std::string>& names) {
    const auto key = std::make_pair(file.dev, file.inode);
    std::vector<std::optional<uint64_t>> out;
    {
      absl::MutexLock lock(&mu_);
      auto it = cache_.find(key);
      if (it != cache_.end() && it->second.count(names[0]) != 0) {
        for (const std::string& name : names) {
          auto found = it->second.find(name);
          if (found == it->second.end() || !found->second.has_value()) {
            out.push_back(std::nullopt);
          } else {
            out.push_back(file.start + *found->second);
          }
        }
        if (out.size() == names.size()) return out;
      }
    }
    out.clear();
    std::map<std::string, std::optional<uint64_t>> relative;
    absl::StatusOr<exec::SymbolResolver> resolver =
        exec::SymbolResolver::ForProcess(pid, nullptr);
    const exec::LoadedObject* object =
        resolver.ok() ? resolver->FindObject(file.path) : nullptr;
    for (const std::string& name : names) {
      absl::StatusOr<exec::ResolvedSymbol> symbol =
          object != nullptr ? resolver->Lookup(*object, name)
                            : absl::NotFoundError("no object");
      if (symbol.ok()) {
        out.push_back(symbol->address);
        relative[name] = symbol->address - file.start;
      } else {
        out.push_back(std::nullopt);
        relative[name] = std::nullopt;
      }
    }
    if (object != nullptr) {
      absl::MutexLock lock(&mu_);
      if (cache_.size() >= kMaxFiles) cache_.clear();
      cache_[key] = std::move(relative);
    }
    return out;
  }

 private:
  static constexpr size_t kMaxFiles = 64;
  absl::Mutex mu_;
  std::map<std::pair<std::string, uint64_t>,
           std::map<std::string, std::optional<uint64_t>>>
      cache_ ABSL_GUARDED_BY(mu_);
};

SymbolCache& Symbols() {
  static SymbolCache* cache = new SymbolCache;
  return *cache;
}

// Every ELF-looking file mapping, once, at its lowest offset; the executable.
struct Files {
  std::vector<MappedFile> files;
  int exe = -1;  // index in files
};

absl::StatusOr<Files> MappedFiles(pid_t pid) {
  ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
  Files out;
  std::map<std::pair<std::string, uint64_t>, size_t> index;
  for (const ptrace::Mapping& m : maps) {
    if (m.inode == 0 || m.path.empty() || m.path[0] != '/') continue;
    auto key = std::make_pair(m.dev, m.inode);
    auto it = index.find(key);
    if (it == index.end()) {
      index.emplace(key, out.files.size());
      out.files.push_back({m.path, m.dev, m.inode, m.start, m.offset});
    } else if (m.offset < out.files[it->second].offset) {
      out.files[it->second].start = m.start;
      out.files[it->second].offset = m.offset;
    }
  }
  struct stat exe {};
  if (stat(absl::StrCat("/proc/", pid, "/exe").c_str(), &exe) == 0) {
    const std::string dev = absl::StrFormat("%02x:%02x", major(exe.st_dev), minor(exe.st_dev));
    for (size_t i = 0; i < out.files.size(); ++i) {
      if (out.files[i].inode == exe.st_ino && out.files[i].dev == dev) out.exe = i;
    }
    if (out.exe < 0) {  // overlayfs shows another device
      for (size_t i = 0; i < out.files.size(); ++i) {
        if (out.files[i].inode == exe.st_ino) out.exe = i;
      }
    }
  }
  return out;
}

absl::Status Unsupported(pid_t pid, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      "pid ", pid, " runs ", what,
      "; stack snapshots support CPython 3.8 to 3.13 (docs/python.md)"));
}

}  // namespace

std::string VersionFromHex(uint32_t hexversion) {
  std::string out = absl::StrCat((hexversion >> 24) & 0xFF, ".", (hexversion >> 16) & 0xFF,
                                 ".", (hexversion >> 8) & 0xFF);
  const unsigned level = (hexversion >> 4) & 0xF;
  const unsigned serial = hexversion & 0xF;
  if (level == 0xA) absl::StrAppend(&out, "a", serial);
  if (level == 0xB) absl::StrAppend(&out, "b", serial);
  if (level == 0xC) absl::StrAppend(&out, "rc", serial);
  return out;
}

absl::StatusOr<StackTarget> FindStackTarget(pid_t pid, StackMemory& memory) {
  ASSIGN_OR_RETURN(Files mapped, MappedFiles(pid));
  const MappedFile* libpython = nullptr;
  const MappedFile* libc = nullptr;
  std::optional<std::pair<int, int>> named;
  for (const MappedFile& f : mapped.files) {
    const std::string base = Basename(f.path);
    if (absl::StartsWith(base, "libpypy")) {
      return Unsupported(pid, absl::StrCat(
          "PyPy (", f.path, "): its frames live in the JIT's own structures, "
          "which have no stable layout to read from outside; while one of its threads "
          "waits, `procwarp py exec PID -c \"import sys, traceback; "
          "[traceback.print_stack(f) for f in sys._current_frames().values()]\"` prints "
          "them from inside (docs/python.md, \"PyPy\")"));
    }
    if (auto version = LibpythonVersion(base); version && libpython == nullptr) {
      libpython = &f;
      named = version;
    }
    if (base == "libc.so.6") libc = &f;
  }
  if (named && (named->first != 3 || named->second < 8)) {
    return Unsupported(pid, absl::StrCat("Python ", named->first, ".", named->second,
                                         " (", libpython->path, ")"));
  }
  const MappedFile* object =
      libpython != nullptr ? libpython
                           : mapped.exe >= 0 ? &mapped.files[mapped.exe] : nullptr;
  if (object == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("pid ", pid, ": no executable or libpython to read"));
  }
  const std::vector<std::optional<uint64_t>> symbols = Symbols().Find(
      pid, *object, {"_PyRuntime", "PyCode_Type", "Py_Version"});
  if (!symbols[0] || !symbols[1]) {
    if (absl::StrContains(Basename(object->path), "pypy")) {
      return Unsupported(pid, absl::StrCat("PyPy (", object->path, ")"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, " is not a CPython 3.8+ process: ", object->path,
        " defines no _PyRuntime/PyCode_Type and no libpython is mapped"));
  }
  StackTarget target;
  target.implementation = "CPython";
  target.object = object->path;
  uint32_t hexversion = 0;
  if (symbols[2]) {
    RETURN_IF_ERROR(memory.Read(*symbols[2], &hexversion, sizeof(hexversion)));
    target.version = VersionFromHex(hexversion);
  } else if (named) {
    hexversion = (3u << 24) | (static_cast<uint32_t>(named->second) << 16);
    target.version = absl::StrCat("3.", named->second);
  } else {
    return Unsupported(pid, absl::StrCat(
        "a CPython older than 3.11 linked into ", object->path,
        " (no Py_Version, no libpython: the version cannot be told without "
        "running code)"));
  }
  const int major = (hexversion >> 24) & 0xFF;
  const int minor = (hexversion >> 16) & 0xFF;
  if (named && (named->first != major || named->second != minor)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, ": ", object->path, " says Python ", target.version));
  }
  const CPythonLayout* layout = major == 3 ? FindCPythonLayout(minor) : nullptr;
  if (layout == nullptr) {
    return Unsupported(pid, absl::StrCat("CPython ", target.version, " (", object->path, ")"));
  }
  target.where.layout = *layout;
  target.where.runtime = *symbols[0];
  target.where.code_type = *symbols[1];
  if (layout->debug_offsets_size > 0) {
    std::vector<uint8_t> raw(layout->debug_offsets_size);
    RETURN_IF_ERROR(memory.Read(target.where.runtime, raw.data(), raw.size()));
    RETURN_IF_ERROR(ApplyDebugOffsets(raw, hexversion, &target.where.layout));
  }
  if (libc != nullptr && target.where.layout.tstate_native_thread_id < 0) {
    // glibc's descriptor for libthread_db: {bits, count, offset}.
    std::optional<uint64_t> tid =
        Symbols().Find(pid, *libc, {"_thread_db_pthread_tid"})[0];
    uint32_t desc[3] = {0, 0, 0};
    if (tid && memory.Read(*tid, desc, sizeof(desc)).ok() && desc[0] == 32 &&
        desc[1] == 1 && desc[2] < 4096) {
      target.where.pthread_tid_offset = desc[2];
    }
  }
  return target;
}

}  // namespace procwarp::python
