// The machine code that runs Python on a thread blocked in a system call
// with the GIL released, and then puts the thread back in its call
// (docs/python.md, "Safe points").
//
// Why machine code in the target and not a remote call (daemon/exec/
// remote_call.h): a remote call returns to a trap the tracer must catch, so
// the tracer can never leave while the code runs, and abandoning it at a
// deadline would put the thread back while Python holds the GIL and half a
// frame — a corrupt target. The trampoline returns on its own: the daemon
// only sets it up and detaches, and a timeout leaves it to finish.
//
// Layout of the scratch mapping (one anonymous mapping, made by an injected
// mmap): page 0 is the code (made read+execute once written); the data
// pages follow: the function pointers, the thread's registers as they must
// be when it goes back (the syscall rewound to run again, as the kernel's
// restart does), a "done" word, the XSAVE area, then the source.
//
// The code, entered with r12 = data base and a 16-byte aligned rsp below the
// thread's red zone:
//   xsave64 [data+XSAVE]          (every vector/FPU register)
//   g = PyGILState_Ensure()        (takes the GIL: a Python thread at a safe
//   PyRun_SimpleString(source)      point, as after Py_END_ALLOW_THREADS)
//   PyGILState_Release(g)          (releases it again)
//   (PyPy: only pypy_execute_source(source), which takes the GIL itself)
//   xrstor64 [data+XSAVE]; done = 1
//   rflags, every general register, rsp from the saved block; jmp [saved rip]
// which re-executes the interrupted `syscall` instruction with its original
// arguments (or restart_syscall for an ERESTART_RESTARTBLOCK sleep).
#ifndef PROCWARP_DAEMON_PYTHON_TRAMPOLINE_H_
#define PROCWARP_DAEMON_PYTHON_TRAMPOLINE_H_

#include <sys/user.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace procwarp::python {

inline constexpr uint64_t kPage = 4096;

// Offsets in the data block (which starts at base + kPage).
struct TrampolineData {
  static constexpr uint64_t kEnsure = 0x00;
  static constexpr uint64_t kRun = 0x08;
  static constexpr uint64_t kRelease = 0x10;
  static constexpr uint64_t kGilState = 0x18;
  static constexpr uint64_t kDone = 0x20;
  static constexpr uint64_t kRegs = 0x40;     // 16 GPRs in encoding order
  static constexpr uint64_t kRip = 0xc0;
  static constexpr uint64_t kRflags = 0xc8;
  static constexpr uint64_t kXsave = 0x100;   // 64-byte aligned
};

struct TrampolineLayout {
  uint64_t base = 0;         // the mapping; code at base
  uint64_t data = 0;         // base + kPage
  uint64_t source = 0;       // NUL-terminated bootstrap
  uint64_t size = 0;         // whole mapping, page-rounded
};

// The layout for a source of `source_size` bytes (NUL excluded) and an
// XSAVE area of `xsave_size` bytes, placed at `base`.
TrampolineLayout LayoutTrampoline(uint64_t base, size_t source_size, size_t xsave_size);
// Just the size of that mapping (to mmap it before the base is known).
uint64_t TrampolineSize(size_t source_size, size_t xsave_size);

// What the trampoline calls. CPython: PyGILState_Ensure(), run(source),
// PyGILState_Release(). PyPy: run(source) alone — pypy_execute_source takes
// and releases the GIL itself (pypy.h).
enum class TrampolineEntryCalls { kGilStateAroundRun, kRunOnly };

// The code page's bytes for `layout`.
std::string TrampolineCode(const TrampolineLayout& layout,
                           TrampolineEntryCalls calls = TrampolineEntryCalls::kGilStateAroundRun);

// The data block's header (up to kXsave): function pointers (0 for those
// kRunOnly does not call) and the
// registers the thread resumes with, from `stopped` — its registers in a
// ptrace-stop inside a system call (rax = -ERESTART*, orig_rax = the call).
// INVALID_ARGUMENT when `stopped` is not a restartable interrupted call.
absl::StatusOr<std::string> TrampolineHeader(uint64_t ensure, uint64_t run,
                                             uint64_t release,
                                             const user_regs_struct& stopped);

// True when `regs` are those of a thread interrupted in a system call that
// the kernel would restart (rax = -ERESTARTSYS, -ERESTARTNOINTR,
// -ERESTARTNOHAND or -ERESTART_RESTARTBLOCK).
bool InRestartableSyscall(const user_regs_struct& regs);

// The registers that start the trampoline on the stopped thread.
user_regs_struct TrampolineEntry(const TrampolineLayout& layout,
                                 const user_regs_struct& stopped);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_TRAMPOLINE_H_
