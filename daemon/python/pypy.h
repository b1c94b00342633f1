// What remote exec needs to know about PyPy (Debian's pypy3, 7.3.11,
// libpypy3.9-c.so; docs/python.md, "PyPy").
//
// PyPy's safe entry from C is its embedding API, `pypy_execute_source(src)`:
// an RPython "entrypoint" that takes the GIL itself (a compare-and-swap of
// `rpy_fastgil` from 0 to the calling thread's ident, else the waiting
// queue), runs the source, and releases the GIL — what a cffi callback does
// from a C function the program called with the GIL released. So it is safe
// on a thread that (1) PyPy knows (its RPython thread-locals are set up) and
// (2) sits in a blocking system call made with the GIL released. On a thread
// that holds the GIL it would wait for itself forever, and on a thread PyPy
// never saw it would run RPython code without the thread's GC state.
//
// (1) is read from memory: the thread's RPython thread-local block (one
// `__thread` struct of libpypy, found through the thread's TLS, below) has
// `ready` == 42 once set up. (2) is asked of PyPy on the stopped thread:
// `PyPyGILState_Check()` is plain C in 7.3.11 (reads that block and compares
// `rpy_fastgil` with the thread's ident; no lock, no allocation when ready).
//
// Finding the block without symbols: every exported function that touches it
// starts with the x86-64 general-dynamic TLS sequence (fixed by the ELF TLS
// ABI so the linker can relax it):
//   66 48 8d 3d <disp32>   data16 lea tls_index(%rip), %rdi
//   66 66 48 e8 <rel32>    data16 data16 rex.W call __tls_get_addr
// `tls_index` is {module id, offset}; the block is dtv[module].val + offset,
// where dtv = *(fs_base + 8) (glibc's tcbhead_t) and each dtv entry is 16
// bytes. libpypy is a DT_NEEDED library, so its TLS is static: allocated in
// every thread at creation.
//
// A busy PyPy (no thread in a blocking call) gets a *new* thread instead
// (the "new thread" safe point): a busy thread is stopped where it cannot
// hold a glibc lock (libpypy's own text or the JIT's anonymous code, not in
// a system call) and made to call pthread_create() on a stub in a scratch
// mapping. The stub runs on the new thread, outside the target's code:
//   pypy_thread_attach()                       (GC state for the thread)
//   pypy_init_embedded_cffi_module(0xB011, &init)
// The latter is the entry cffi's embedding mode uses for threads PyPy never
// saw: it takes the GIL (waiting until the busy thread yields it at its
// periodic switch, a bytecode boundary), enters the thread into PyPy's
// thread-locals (try_enter_thread: an execution context), loads an empty
// cffi module `init.name` (an init function in the stub reports an empty
// type context) and runs `init.code` — the bootstrap — in a fresh module
// dict, then leaves the thread and releases the GIL. pypy_execute_source
// cannot be used on such a thread: it makes no execution context, and
// crashes there (tried on 7.3.11). The bootstrap removes the module from
// sys.modules again; the run token (bootstrap.h) stops a withdrawn exec
// from running when the GIL finally comes.
#ifndef PROCWARP_DAEMON_PYTHON_PYPY_H_
#define PROCWARP_DAEMON_PYTHON_PYPY_H_

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/ptrace/operation.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/remote_memory.h"

namespace procwarp::python::pypy {

// The value of the thread-local block's `ready` field once set up
// (RPython's threadlocal.h).
inline constexpr int32_t kThreadLocalsReady = 42;

// The address of the `tls_index` a function's first instructions pass to
// __tls_get_addr, given the function's first `code` bytes read from
// `function_address`; nullopt when they are not the general-dynamic
// sequence (after an optional `sub $8, %rsp` / `push`es).
std::optional<uint64_t> TlsIndexAddress(uint64_t function_address,
                                        absl::Span<const uint8_t> code);

// Whether the thread whose fs base is `fs_base` has PyPy's thread-locals set
// up, reading its TLS through `memory`. `tls_index` from TlsIndexAddress.
absl::StatusOr<bool> ThreadKnownToPyPy(ptrace::RemoteMemory& memory, uint64_t tls_index,
                                       uint64_t fs_base);

// ---- The "new thread" safe point (above) ----

// The cffi module name the bootstrap runs under (and removes again).
inline constexpr absl::string_view kExecModule = "_procwarp_exec";

// Offsets in the scratch mapping: code page, then the data page.
struct SpawnData {
  static constexpr uint64_t kAttach = 0x00;     // pypy_thread_attach
  static constexpr uint64_t kInit = 0x08;       // pypy_init_embedded_cffi_module
  static constexpr uint64_t kInitStruct = 0x10; // {name, init function, code}
  static constexpr uint64_t kThread = 0x28;     // pthread_t from pthread_create
  static constexpr uint64_t kDone = 0x30;       // 1 once the entry returned
  static constexpr uint64_t kTid = 0x38;        // the new thread's kernel tid
  static constexpr uint64_t kName = 0x40;       // kExecModule, NUL-terminated
  static constexpr uint64_t kTypeContext = 0x80;  // an empty cffi type context
  static constexpr uint64_t kSource = 0x100;    // the bootstrap
};
// The cffi init function's place in the code page.
inline constexpr uint64_t kInitFunctionOffset = 0x80;

// The size of the scratch mapping for a bootstrap of `source_size` bytes.
uint64_t SpawnMappingSize(size_t source_size);

// The code page for a mapping at `base`: the thread's start routine at
// base, the cffi init function at base + kInitFunctionOffset.
std::string SpawnCode(uint64_t base);

// The data page for a mapping at `base` (source included, NUL-terminated).
std::string SpawnDataPage(uint64_t base, uint64_t attach, uint64_t init,
                          absl::string_view source);

// Python appended to the bootstrap on this path: takes kExecModule out of
// sys.modules again; binds no name, cannot raise.
std::string SpawnBootstrapCleanup();

// Whether a busy thread stopped with `regs` may be made to call
// pthread_create: it is running user code (not in a system call) in the
// interpreter object's text or in an anonymous executable mapping (the
// JIT's code) — never in libc or ld.so, where it could hold the lock
// pthread_create needs.
bool SafeToSpawnFrom(const user_regs_struct& regs, const std::vector<ptrace::Mapping>& maps,
                     absl::string_view interpreter_path);

// RPython's GIL exists only once the program started a thread: before
// that, a second thread waiting for it is a fatal error ("the GIL was not
// initialized"). RPyGilAllocate() sets it up, and is idempotent, but is not
// exported: it is the call cffi's embedding init (`_cffi_init`, the
// pthread_once routine of the exported pypy_carefully_make_gil) makes right
// before pypy_setup_home(NULL, 1), and it starts with
// `cmpq $0, rpy_waiting_threads(%rip); js` (-42 until allocated).
struct GilAllocator {
  uint64_t function = 0;         // RPyGilAllocate
  uint64_t waiting_threads = 0;  // &rpy_waiting_threads (a long)
};
// Found from pypy_carefully_make_gil's code; nullopt when the code is not
// shaped as in 7.3's builds.
absl::StatusOr<std::optional<GilAllocator>> FindGilAllocator(ptrace::RemoteMemory& memory,
                                                             uint64_t carefully_make_gil);

// On the stopped thread of `op`: fills the mapping at `base` (made by the
// caller, read+write, SpawnMappingSize bytes), makes its code page
// executable and starts the thread (pthread_create + pthread_detach, from
// libc through `symbols`).
// Allocates the GIL first when the program has not (GilAllocator), with
// `carefully_make_gil` = pypy_carefully_make_gil.
absl::Status StartExecThread(ptrace::Operation& op, const exec::SymbolResolver& symbols,
                             uint64_t base, uint64_t attach, uint64_t init,
                             uint64_t carefully_make_gil, absl::string_view source);

// After the bootstrap reported: waits up to `wait` for the new thread of
// the mapping at `base` to finish and exit (its tid gone from /proc), so
// the mapping can go. Its tid goes to `tid` (0 if never seen).
bool AwaitExecThreadExit(pid_t pid, uint64_t base, absl::Duration wait, pid_t* tid);

}  // namespace procwarp::python::pypy

#endif  // PROCWARP_DAEMON_PYTHON_PYPY_H_
