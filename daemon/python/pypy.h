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
// A busy PyPy thread has no safe point procwarp can reach: 7.3.11 has no
// remote-exec hook, and `PyPy_AddPendingCall` is a cpyext wrapper whose
// queue lives behind the same GIL. Such targets are refused.
#ifndef PROCWARP_DAEMON_PYTHON_PYPY_H_
#define PROCWARP_DAEMON_PYTHON_PYPY_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
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

}  // namespace procwarp::python::pypy

#endif  // PROCWARP_DAEMON_PYTHON_PYPY_H_
