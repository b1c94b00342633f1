// See pypy.h.
#include "daemon/python/pypy.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/exec/remote_call.h"
#include "daemon/python/scratch_code.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python::pypy {
namespace {

// glibc x86-64: tcbhead_t { void* tcb; dtv_t* dtv; ... } at fs_base.
constexpr uint64_t kDtvInTcb = 8;
constexpr uint64_t kDtvEntry = 16;  // union { size_t counter; { void* val; void* to_free; } }
// Module ids are small (one per loaded object with TLS); anything larger is
// not a tls_index.
constexpr uint64_t kMaxModuleId = 4096;

template <typename T>
absl::StatusOr<T> ReadValue(ptrace::RemoteMemory& memory, uint64_t addr) {
  T value{};
  RETURN_IF_ERROR(memory.Read(addr, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value),
                                                   sizeof(value))));
  return value;
}

constexpr uint64_t kCodePage = 4096;
// cffi's embedding version tag (cffi 1.x: 0xB011..0xB0FF) and its module
// version tag (0x2601..0x28FF) for the empty module.
constexpr uint32_t kEmbedVersion = 0xB011;
constexpr uint32_t kModuleVersion = 0x2601;
constexpr absl::Duration kExitPoll = absl::Milliseconds(1);

void Put64(std::string& page, uint64_t offset, uint64_t value) {
  std::memcpy(page.data() + offset, &value, sizeof(value));
}

}  // namespace

std::optional<uint64_t> TlsIndexAddress(uint64_t function_address,
                                        absl::Span<const uint8_t> code) {
  // 66 48 8d 3d <disp32> 66 66 48 e8 <rel32>
  constexpr size_t kSequence = 16;
  for (size_t at = 0; at + kSequence <= code.size(); ++at) {
    const uint8_t* p = code.data() + at;
    if (p[0] == 0x66 && p[1] == 0x48 && p[2] == 0x8d && p[3] == 0x3d && p[8] == 0x66 &&
        p[9] == 0x66 && p[10] == 0x48 && p[11] == 0xe8) {
      int32_t disp = 0;
      std::memcpy(&disp, p + 4, sizeof(disp));
      return function_address + at + 8 + static_cast<int64_t>(disp);  // rip-relative
    }
  }
  return std::nullopt;
}

absl::StatusOr<bool> ThreadKnownToPyPy(ptrace::RemoteMemory& memory, uint64_t tls_index,
                                       uint64_t fs_base) {
  ASSIGN_OR_RETURN(uint64_t module, ReadValue<uint64_t>(memory, tls_index));
  ASSIGN_OR_RETURN(uint64_t offset, ReadValue<uint64_t>(memory, tls_index + 8));
  if (module == 0 || module > kMaxModuleId || fs_base == 0) return false;
  ASSIGN_OR_RETURN(uint64_t dtv, ReadValue<uint64_t>(memory, fs_base + kDtvInTcb));
  ASSIGN_OR_RETURN(uint64_t block, ReadValue<uint64_t>(memory, dtv + module * kDtvEntry));
  // Unallocated dynamic TLS is (void*)-1; static TLS always has a block.
  if (block == 0 || block == ~uint64_t{0}) return false;
  absl::StatusOr<int32_t> ready = ReadValue<int32_t>(memory, block + offset);
  if (!ready.ok()) return false;
  return *ready == kThreadLocalsReady;
}

uint64_t SpawnMappingSize(size_t source_size) {
  return (kCodePage + SpawnData::kSource + source_size + 1 + kCodePage - 1) & ~(kCodePage - 1);
}

std::string SpawnCode(uint64_t base) {
  const uint64_t data = base + kCodePage;
  // The start routine, entered with rdi = data (pthread_create's argument)
  // and the ABI's entry alignment; rbx keeps the data pointer.
  std::string code = {
      '\x53',                                      // push rbx (aligns rsp)
      '\x48', '\x89', '\xfb',                      // mov rbx, rdi
      '\xb8', '\xba', '\x00', '\x00', '\x00',        // mov eax, SYS_gettid
      '\x0f', '\x05',                              // syscall
      '\x89', '\x43', static_cast<char>(SpawnData::kTid),  // mov [rbx+tid], eax
      '\xff', '\x13',                              // call [rbx] (attach)
      '\xbf', '\x11', '\xb0', '\x00', '\x00',        // mov edi, kEmbedVersion
      '\x48', '\x8d', '\x73', static_cast<char>(SpawnData::kInitStruct),  // lea rsi, [rbx+init]
      '\xff', '\x53', static_cast<char>(SpawnData::kInit),  // call [rbx+8] (init)
      '\x48', '\xc7', '\x43', static_cast<char>(SpawnData::kDone), '\x01', '\x00', '\x00',
      '\x00',                                      // mov qword [rbx+done], 1
      '\x31', '\xc0',                              // xor eax, eax
      '\x5b',                                      // pop rbx
      '\xc3',                                      // ret (the thread ends)
  };
  static_assert(kEmbedVersion == 0xB011, "the mov edi above encodes it");
  code.resize(kInitFunctionOffset, '\xcc');  // int3 filler
  // The cffi init function: p[0] = module version, p[1] = type context.
  code += {'\x48', '\xc7', '\x07', '\x01', '\x26', '\x00', '\x00'};  // mov qword [rdi], 0x2601
  static_assert(kModuleVersion == 0x2601, "the mov above encodes it");
  code += {'\x48', '\xb8'};                               // movabs rax, imm64
  const uint64_t context = data + SpawnData::kTypeContext;
  code.append(reinterpret_cast<const char*>(&context), sizeof(context));
  code += {'\x48', '\x89', '\x47', '\x08'};                // mov [rdi+8], rax
  code += '\xc3';                                         // ret
  return code;
}

std::string SpawnDataPage(uint64_t base, uint64_t attach, uint64_t init,
                          absl::string_view source) {
  const uint64_t data = base + kCodePage;
  std::string page(SpawnData::kSource, '\0');
  Put64(page, SpawnData::kAttach, attach);
  Put64(page, SpawnData::kInit, init);
  Put64(page, SpawnData::kInitStruct, data + SpawnData::kName);
  Put64(page, SpawnData::kInitStruct + 8, base + kInitFunctionOffset);
  Put64(page, SpawnData::kInitStruct + 16, data + SpawnData::kSource);
  std::memcpy(page.data() + SpawnData::kName, kExecModule.data(), kExecModule.size());
  page.append(source.data(), source.size());
  page.push_back('\0');
  return page;
}

std::string SpawnBootstrapCleanup() {
  return absl::StrCat(
      "try:\n"
      "    __import__('sys').modules.pop('", kExecModule, "', None)\n"
      "    __import__('sys').modules.pop('", kExecModule, ".lib', None)\n"
      "except BaseException:\n"
      "    pass\n");
}

bool SafeToSpawnFrom(const user_regs_struct& regs, const std::vector<ptrace::Mapping>& maps,
                     absl::string_view interpreter_path) {
  if (static_cast<long>(regs.orig_rax) >= 0) return false;  // inside a system call
  for (const ptrace::Mapping& m : maps) {
    if (regs.rip >= m.start && regs.rip < m.end) {
      return m.exec && (m.path == interpreter_path || m.path.empty());
    }
  }
  return false;
}

absl::StatusOr<std::optional<GilAllocator>> FindGilAllocator(ptrace::RemoteMemory& memory,
                                                             uint64_t carefully_make_gil) {
  auto read = [&](uint64_t addr, size_t n) -> absl::StatusOr<std::vector<uint8_t>> {
    std::vector<uint8_t> bytes(n);
    RETURN_IF_ERROR(memory.Read(addr, absl::MakeSpan(bytes)));
    return bytes;
  };
  auto rel32 = [](const uint8_t* p) {
    int32_t v = 0;
    std::memcpy(&v, p, sizeof(v));
    return static_cast<int64_t>(v);
  };
  // pypy_carefully_make_gil: lea _cffi_init(%rip), %rsi (pthread_once's routine).
  ASSIGN_OR_RETURN(std::vector<uint8_t> outer, read(carefully_make_gil, 32));
  std::optional<uint64_t> cffi_init;
  for (size_t at = 0; at + 7 <= outer.size(); ++at) {
    if (outer[at] == 0x48 && outer[at + 1] == 0x8d && outer[at + 2] == 0x35) {
      cffi_init = carefully_make_gil + at + 7 + rel32(&outer[at + 3]);
      break;
    }
  }
  if (!cffi_init.has_value()) return std::nullopt;
  // _cffi_init: call RPyGilAllocate; xor %edi,%edi; mov $1,%esi; call pypy_setup_home
  ASSIGN_OR_RETURN(std::vector<uint8_t> init, read(*cffi_init, 96));
  constexpr uint8_t kThenSetupHome[] = {0x31, 0xff, 0xbe, 0x01, 0x00, 0x00, 0x00, 0xe8};
  std::optional<uint64_t> allocate;
  for (size_t at = 0; at + 5 + sizeof(kThenSetupHome) <= init.size(); ++at) {
    if (init[at] == 0xe8 &&
        std::memcmp(&init[at + 5], kThenSetupHome, sizeof(kThenSetupHome)) == 0) {
      allocate = *cffi_init + at + 5 + rel32(&init[at + 1]);
      break;
    }
  }
  if (!allocate.has_value()) return std::nullopt;
  // RPyGilAllocate: cmpq $0, rpy_waiting_threads(%rip); js ... (a `long`;
  // 7.3.11: 48 83 3d <disp32> 00 78)
  ASSIGN_OR_RETURN(std::vector<uint8_t> head, read(*allocate, 9));
  if (head[0] != 0x48 || head[1] != 0x83 || head[2] != 0x3d || head[7] != 0x00 ||
      head[8] != 0x78) {
    return std::nullopt;
  }
  return GilAllocator{.function = *allocate,
                      .waiting_threads = *allocate + 8 + rel32(&head[3])};
}

absl::Status StartExecThread(ptrace::Operation& op, const exec::SymbolResolver& symbols,
                             uint64_t base, uint64_t attach, uint64_t init,
                             uint64_t carefully_make_gil, absl::string_view source) {
  const uint64_t data = base + kCodePage;
  ASSIGN_OR_RETURN(std::optional<GilAllocator> gil,
                   FindGilAllocator(op.memory(), carefully_make_gil));
  if (!gil.has_value()) {
    return absl::FailedPreconditionError(
        "this PyPy's pypy_carefully_make_gil is not shaped as in 7.3's builds, so procwarp "
        "cannot make sure its GIL exists before starting a thread; a busy PyPy is refused "
        "(docs/python.md, \"PyPy\"); try again while the program waits in a system call");
  }
  ASSIGN_OR_RETURN(int64_t waiting, ReadValue<int64_t>(op.memory(), gil->waiting_threads));
  if (waiting < 0) {
    // No thread was ever started: allocate the GIL here, on the stopped
    // thread (outside libc and the GIL code: SafeToSpawnFrom).
    ASSIGN_OR_RETURN(exec::CallResult allocated, exec::CallFunction(op, gil->function, {}));
    ASSIGN_OR_RETURN(waiting, ReadValue<int64_t>(op.memory(), gil->waiting_threads));
    if (allocated.crashed() || waiting < 0) {
      return absl::InternalError("RPyGilAllocate did not set up PyPy's GIL in the target "
                                 "(the target was put back)");
    }
  }
  const std::string code = SpawnCode(base);
  const std::string page = SpawnDataPage(base, attach, init, source);
  RETURN_IF_ERROR(WriteBytes(op, base, code));
  RETURN_IF_ERROR(WriteBytes(op, data, page));
  RETURN_IF_ERROR(SealCode(op, base, kCodePage));
  ASSIGN_OR_RETURN(exec::CallResult created,
                   exec::CallSymbol(op, symbols, "pthread_create",
                                    {data + SpawnData::kThread, 0, base, data}));
  if (created.crashed() || static_cast<int>(created.value) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pthread_create in the target failed (",
        created.crashed() ? absl::StrCat("signal ", created.signal)
                          : std::string(strerror(static_cast<int>(created.value))),
        "); the target was put back"));
  }
  ASSIGN_OR_RETURN(uint64_t thread, ReadValue<uint64_t>(op.memory(), data + SpawnData::kThread));
  // Detached, the thread's resources go when it ends; failing that only
  // keeps them until the program exits.
  (void)exec::CallSymbol(op, symbols, "pthread_detach", {thread});
  return absl::OkStatus();
}

bool AwaitExecThreadExit(pid_t pid, uint64_t base, absl::Duration wait, pid_t* tid) {
  ptrace::RemoteMemory memory(pid, pid);
  const uint64_t data = base + kCodePage;
  const absl::Time deadline = absl::Now() + wait;
  *tid = 0;
  for (;;) {
    absl::StatusOr<uint64_t> done = ReadValue<uint64_t>(memory, data + SpawnData::kDone);
    absl::StatusOr<uint32_t> id = ReadValue<uint32_t>(memory, data + SpawnData::kTid);
    if (!done.ok() || !id.ok()) return false;
    *tid = static_cast<pid_t>(*id);
    std::error_code ec;
    if (*done == 1 && *tid > 0 &&
        !std::filesystem::exists(absl::StrCat("/proc/", pid, "/task/", *tid), ec)) {
      return true;
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kExitPoll);
  }
}

}  // namespace procwarp::python::pypy
