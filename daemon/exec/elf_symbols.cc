// See elf_symbols.h.
#include "daemon/exec/elf_symbols.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {
namespace {

constexpr char kMainProgram[] = "main-program";
// Bounds on what is read from the target's link map.
constexpr int kMaxDynamicEntries = 512;
constexpr int kMaxLinkMapEntries = 4096;

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};
using ElfPtr = std::unique_ptr<Elf, ElfCloser>;

absl::StatusOr<ElfPtr> OpenElf(int fd, const std::string& what) {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
  ElfPtr e(elf_begin(fd, ELF_C_READ_MMAP, nullptr));
  if (e == nullptr || elf_kind(e.get()) != ELF_K_ELF ||
      gelf_getclass(e.get()) != ELFCLASS64) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is not a 64-bit ELF object: ", elf_errmsg(-1)));
  }
  return e;
}

bool ParseDev(absl::string_view text, dev_t* dev) {
  std::pair<absl::string_view, absl::string_view> mm =
      absl::StrSplit(text, absl::MaxSplits(':', 1));
  unsigned int major_num = 0, minor_num = 0;
  if (!absl::SimpleHexAtoi(mm.first, &major_num) ||
      !absl::SimpleHexAtoi(mm.second, &minor_num)) {
    return false;
  }
  *dev = makedev(major_num, minor_num);
  return true;
}

// Fills bias and is_dynamic from the program headers. PT_DYNAMIC's address
// goes to *dynamic (0 when none).
absl::Status ReadLayout(Elf* e, uint64_t first_offset, LoadedObject* object,
                        uint64_t* dynamic) {
  GElf_Ehdr ehdr;
  if (gelf_getehdr(e, &ehdr) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(object->path, ": no ELF header"));
  }
  object->is_dynamic = ehdr.e_type == ET_DYN;
  size_t count = 0;
  if (elf_getphdrnum(e, &count) != 0) count = 0;
  bool placed = false;
  *dynamic = 0;
  for (size_t i = 0; i < count; ++i) {
    GElf_Phdr phdr;
    if (gelf_getphdr(e, static_cast<int>(i), &phdr) == nullptr) continue;
    if (phdr.p_type == PT_DYNAMIC) *dynamic = phdr.p_vaddr;
    if (phdr.p_type != PT_LOAD || placed) continue;
    uint64_t seg_file_start = phdr.p_offset & ~uint64_t{0xfff};
    if (first_offset >= seg_file_start && first_offset < phdr.p_offset + phdr.p_filesz + 0x1000) {
      // The mapping starts at file offset first_offset, which this segment
      // puts at p_vaddr + (first_offset - p_offset) before relocation.
      uint64_t unrelocated = phdr.p_vaddr - phdr.p_offset + first_offset;
      object->bias = object->first_start - unrelocated;
      placed = true;
    }
  }
  if (!placed) {
    return absl::FailedPreconditionError(
        absl::StrCat(object->path, ": no PT_LOAD covers its first mapping"));
  }
  if (!object->is_dynamic) object->bias = 0;
  return absl::OkStatus();
}

// The dynamic linker's link map (load order), as biases, read from the
// target: main program's DT_DEBUG -> r_debug -> r_map -> l_next...
std::vector<uint64_t> ReadLinkMapBiases(ptrace::RemoteMemory& memory,
                                        uint64_t dynamic_addr) {
  std::vector<uint64_t> biases;
  uint64_t r_debug = 0;
  for (int i = 0; i < kMaxDynamicEntries; ++i) {
    Elf64_Dyn dyn;
    if (!memory.Read(dynamic_addr + i * sizeof(dyn),
                     absl::MakeSpan(reinterpret_cast<uint8_t*>(&dyn), sizeof(dyn))).ok()) {
      return biases;
    }
    if (dyn.d_tag == DT_NULL) break;
    if (dyn.d_tag == DT_DEBUG) r_debug = dyn.d_un.d_ptr;
  }
  if (r_debug == 0) return biases;
  uint64_t node = 0;
  if (!memory.Read(r_debug + offsetof(struct r_debug, r_map),
                   absl::MakeSpan(reinterpret_cast<uint8_t*>(&node), sizeof(node))).ok()) {
    return biases;
  }
  for (int i = 0; i < kMaxLinkMapEntries && node != 0; ++i) {
    struct link_map entry;
    if (!memory.Read(node, absl::MakeSpan(reinterpret_cast<uint8_t*>(&entry),
                                          sizeof(entry))).ok()) {
      break;
    }
    biases.push_back(entry.l_addr);
    node = reinterpret_cast<uint64_t>(entry.l_next);
  }
  return biases;
}

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

absl::StatusOr<UniqueFd> OpenMappedObject(pid_t pid, const LoadedObject& object) {
  std::string via_map = absl::StrFormat("/proc/%d/map_files/%x-%x", pid,
                                        object.first_start, object.first_end);
  UniqueFd fd(open(via_map.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd) return fd;
  std::string via_root = absl::StrCat("/proc/", pid, "/root", object.path);
  fd.Reset(open(via_root.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd) return fd;
  return ErrnoStatus(errno, absl::StrCat("open(", via_map, " or ", via_root, ")"));
}

absl::StatusOr<SymbolResolver> SymbolResolver::ForProcess(
    pid_t pid, ptrace::RemoteMemory* memory) {
  ASSIGN_OR_RETURN(std::vector<ptrace::Mapping> maps, ptrace::ReadMaps(pid));
  struct stat exe_st;
  bool have_exe =
      stat(absl::StrCat("/proc/", pid, "/exe").c_str(), &exe_st) == 0;
  // One object per mapped file (dev, inode); its lowest-offset mapping.
  std::map<std::pair<dev_t, uint64_t>, std::pair<ptrace::Mapping, bool>> files;
  std::vector<std::pair<dev_t, uint64_t>> seen_order;
  for (const ptrace::Mapping& m : maps) {
    dev_t dev = 0;
    if (m.inode == 0 || m.path.empty() || m.path[0] != '/' || !ParseDev(m.dev, &dev)) {
      continue;
    }
    auto key = std::make_pair(dev, m.inode);
    auto it = files.find(key);
    if (it == files.end()) {
      bool main = have_exe && exe_st.st_ino == m.inode && exe_st.st_dev == dev;
      files.emplace(key, std::make_pair(m, main));
      seen_order.push_back(key);
    } else if (m.offset < it->second.first.offset) {
      it->second.first = m;
    }
  }
  SymbolResolver resolver;
  resolver.pid_ = pid;
  uint64_t main_dynamic = 0;
  uint64_t main_bias = 0;
  std::vector<LoadedObject> found;
  for (const auto& key : seen_order) {
    const auto& [m, main] = files[key];
    LoadedObject object;
    object.path = m.path;
    object.first_start = m.start;
    object.first_end = m.end;
    object.main_program = main;
    absl::StatusOr<UniqueFd> fd = OpenMappedObject(pid, object);
    if (!fd.ok()) continue;
    absl::StatusOr<ElfPtr> elf = OpenElf(fd->get(), object.path);
    if (!elf.ok()) continue;  // a data file (locale archive, ...)
    uint64_t dynamic = 0;
    if (!ReadLayout(elf->get(), m.offset, &object, &dynamic).ok()) continue;
    if (main) {
      main_dynamic = dynamic;
      main_bias = object.bias;
    }
    found.push_back(std::move(object));
  }
  // Fallback order: main program, then the highest mapping first (the order
  // in which top-down mmap placed the dynamic linker's loads).
  std::stable_sort(found.begin(), found.end(),
                   [](const LoadedObject& a, const LoadedObject& b) {
                     if (a.main_program != b.main_program) return a.main_program;
                     return a.first_start > b.first_start;
                   });
  std::vector<uint64_t> order;
  if (memory != nullptr && main_dynamic != 0) {
    order = ReadLinkMapBiases(*memory, main_dynamic + main_bias);
  }
  for (uint64_t bias : order) {
    for (LoadedObject& object : found) {
      if (!object.path.empty() && object.bias == bias &&
          (object.is_dynamic || object.main_program)) {
        resolver.objects_.push_back(std::move(object));
        object.path.clear();  // taken
        break;
      }
    }
  }
  for (LoadedObject& object : found) {
    if (!object.path.empty()) resolver.objects_.push_back(std::move(object));
  }
  return resolver;
}

const LoadedObject* SymbolResolver::FindObject(absl::string_view name) const {
  for (const LoadedObject& object : objects_) {
    if (name == kMainProgram) {
      if (object.main_program) return &object;
      continue;
    }
    if (absl::StrContains(name, '/')) {
      if (object.path == name) return &object;
      continue;
    }
    std::string base = Basename(object.path);
    if (base == name || absl::StartsWith(base, absl::StrCat(name, "."))) {
      return &object;
    }
  }
  return nullptr;
}

namespace {

struct SymbolSeen {
  absl::string_view name;
  const GElf_Sym& sym;
  bool dynamic;         // from .dynsym
  bool hidden_version;  // a non-default version (dlopen@GLIBC_2.2.5)
};

// Calls `visit` for every defined function/object symbol of `elf`, .symtab
// first, then .dynsym.
void ForEachSymbol(Elf* elf, const std::function<void(const SymbolSeen&)>& visit) {
  Elf_Data* versyms = nullptr;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr;
       scn = elf_nextscn(elf, scn)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) != nullptr && shdr.sh_type == SHT_GNU_versym) {
      versyms = elf_getdata(scn, nullptr);
    }
  }
  for (Elf64_Word type : {SHT_SYMTAB, SHT_DYNSYM}) {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr;
         scn = elf_nextscn(elf, scn)) {
      GElf_Shdr shdr;
      if (gelf_getshdr(scn, &shdr) == nullptr || shdr.sh_type != type ||
          shdr.sh_entsize == 0) {
        continue;
      }
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (data == nullptr) continue;
      size_t count = shdr.sh_size / shdr.sh_entsize;
      for (size_t i = 1; i < count; ++i) {
        GElf_Sym sym;
        if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) continue;
        if (sym.st_shndx == SHN_UNDEF) continue;
        int kind = GELF_ST_TYPE(sym.st_info);
        if (kind != STT_FUNC && kind != STT_GNU_IFUNC && kind != STT_OBJECT) continue;
        const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
        if (name == nullptr) continue;
        GElf_Versym version = 0;
        const bool hidden = type == SHT_DYNSYM && versyms != nullptr &&
                            gelf_getversym(versyms, static_cast<int>(i), &version) != nullptr &&
                            (version & 0x8000) != 0;
        visit({name, sym, type == SHT_DYNSYM, hidden});
      }
      break;  // one table of each type
    }
  }
}

}  // namespace

absl::StatusOr<ResolvedSymbol> SymbolResolver::Lookup(
    const LoadedObject& object, absl::string_view symbol) const {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenMappedObject(pid_, object));
  ASSIGN_OR_RETURN(ElfPtr elf, OpenElf(fd.get(), object.path));
  // .symtab (complete when not stripped), then .dynsym; in each, a global
  // over a local and the default version over hidden ones.
  int best_rank[2] = {-1, -1};
  GElf_Sym best[2];
  ForEachSymbol(elf.get(), [&](const SymbolSeen& seen) {
    if (seen.name != symbol) return;
    const int rank = (GELF_ST_BIND(seen.sym.st_info) != STB_LOCAL ? 2 : 0) +
                     (seen.hidden_version ? 0 : 1);
    const int table = seen.dynamic ? 1 : 0;
    if (rank > best_rank[table]) {
      best_rank[table] = rank;
      best[table] = seen.sym;
    }
  });
  for (int table : {0, 1}) {
    if (best_rank[table] < 0) continue;
    ResolvedSymbol out;
    out.address = best[table].st_value + object.bias;
    out.object = object.path;
    out.ifunc = GELF_ST_TYPE(best[table].st_info) == STT_GNU_IFUNC;
    return out;
  }
  return absl::NotFoundError(absl::StrCat("no symbol ", symbol, " in ", object.path,
                                          " of pid ", pid_));
}

namespace {

// LookupSymbols' answers per file version and name list, without the load
// bias: a big .symtab (an unstripped libpython has tens of thousands of
// entries) is read once, not on every remote exec. A file is known by
// device, inode, size and mtime, so one replaced or rewritten in place is
// read again. Bounded: cleared when full.
struct SymbolCacheKey {
  dev_t dev;
  ino_t ino;
  off_t size;
  int64_t mtime_ns;
  std::string names;
  bool operator<(const SymbolCacheKey& o) const {
    return std::tie(dev, ino, size, mtime_ns, names) <
           std::tie(o.dev, o.ino, o.size, o.mtime_ns, o.names);
  }
};
constexpr size_t kSymbolCacheEntries = 64;

std::mutex& SymbolCacheMutex() {
  static std::mutex mu;
  return mu;
}
std::map<SymbolCacheKey, std::map<std::string, SymbolResolver::SymbolRange, std::less<>>>&
SymbolCache() {
  static auto* cache = new std::map<
      SymbolCacheKey, std::map<std::string, SymbolResolver::SymbolRange, std::less<>>>();
  return *cache;
}

}  // namespace

absl::StatusOr<std::map<std::string, SymbolResolver::SymbolRange, std::less<>>>
SymbolResolver::LookupSymbols(const LoadedObject& object,
                              absl::Span<const absl::string_view> names) const {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenMappedObject(pid_, object));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "fstat(" + object.path + ")");
  SymbolCacheKey key{st.st_dev, st.st_ino, st.st_size,
                     st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
                     absl::StrJoin(names, ",")};
  auto with_bias = [&](std::map<std::string, SymbolRange, std::less<>> found) {
    for (auto& [name, range] : found) range.address += object.bias;
    return found;
  };
  {
    std::lock_guard<std::mutex> lock(SymbolCacheMutex());
    auto it = SymbolCache().find(key);
    if (it != SymbolCache().end()) return with_bias(it->second);
  }
  ASSIGN_OR_RETURN(ElfPtr elf, OpenElf(fd.get(), object.path));
  const std::set<absl::string_view> wanted(names.begin(), names.end());
  std::map<std::string, SymbolRange, std::less<>> found;  // without the bias
  std::set<std::string, std::less<>> global;
  ForEachSymbol(elf.get(), [&](const SymbolSeen& seen) {
    if (wanted.count(seen.name) == 0) return;
    const bool is_global = GELF_ST_BIND(seen.sym.st_info) != STB_LOCAL;
    if (found.count(seen.name) != 0 && (global.count(seen.name) != 0 || !is_global)) return;
    found[std::string(seen.name)] = {seen.sym.st_value, seen.sym.st_size};
    if (is_global) global.insert(std::string(seen.name));
  });
  {
    std::lock_guard<std::mutex> lock(SymbolCacheMutex());
    if (SymbolCache().size() >= kSymbolCacheEntries) SymbolCache().clear();
    SymbolCache()[key] = found;
  }
  return with_bias(std::move(found));
}

std::string SymbolResolver::DescribeAddress(const LoadedObject& object,
                                            uint64_t address) const {
  std::string best_name;
  uint64_t best = 0;
  absl::StatusOr<UniqueFd> fd = OpenMappedObject(pid_, object);
  absl::StatusOr<ElfPtr> elf =
      fd.ok() ? OpenElf(fd->get(), object.path) : absl::StatusOr<ElfPtr>(fd.status());
  if (elf.ok()) {
    ForEachSymbol(elf->get(), [&](const SymbolSeen& seen) {
      const GElf_Sym& sym = seen.sym;
      const absl::string_view name = seen.name;
      if (GELF_ST_TYPE(sym.st_info) != STT_FUNC) return;
      const uint64_t start = sym.st_value + object.bias;
      if (start <= address && start >= best &&
          (sym.st_size == 0 || address < start + sym.st_size)) {
        best = start;
        best_name = std::string(name);
      }
    });
  }
  if (!best_name.empty()) {
    return absl::StrCat(best_name, "+0x", absl::Hex(address - best), " in ",
                        Basename(object.path));
  }
  return absl::StrCat(Basename(object.path), "+0x", absl::Hex(address - object.bias));
}

absl::StatusOr<ResolvedSymbol> SymbolResolver::Resolve(absl::string_view spec) const {
  if (spec.empty()) return absl::InvalidArgumentError("empty function name");
  if (absl::StartsWith(spec, "0x")) {
    ResolvedSymbol out;
    if (!absl::SimpleHexAtoi(spec.substr(2), &out.address)) {
      return absl::InvalidArgumentError(absl::StrCat("malformed address ", spec));
    }
    return out;
  }
  size_t colon = spec.find(':');
  if (colon != absl::string_view::npos) {
    absl::string_view object_name = spec.substr(0, colon);
    absl::string_view symbol = spec.substr(colon + 1);
    if (object_name.empty() || symbol.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed function ", spec, " (want OBJECT:SYMBOL, SYMBOL or 0xADDRESS)"));
    }
    const LoadedObject* object = FindObject(object_name);
    if (object == nullptr) {
      return absl::NotFoundError(absl::StrCat("pid ", pid_, " has no ", object_name,
                                              " mapped (it has: ", DescribeObjects(), ")"));
    }
    return Lookup(*object, symbol);
  }
  for (const LoadedObject& object : objects_) {
    absl::StatusOr<ResolvedSymbol> found = Lookup(object, spec);
    if (found.ok()) return found;
  }
  return absl::NotFoundError(absl::StrCat("no symbol ", spec, " in any object of pid ",
                                          pid_, " (searched: ", DescribeObjects(), ")"));
}

std::string SymbolResolver::DescribeObjects() const {
  if (objects_.empty()) return "no ELF objects";
  return absl::StrJoin(objects_, ", ", [](std::string* out, const LoadedObject& o) {
    absl::StrAppend(out, o.main_program ? absl::StrCat(kMainProgram, "=") : "",
                    Basename(o.path));
  });
}

}  // namespace procwarp::exec
