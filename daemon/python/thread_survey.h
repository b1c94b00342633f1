// Where each thread of a Python target is, read from /proc without stopping
// anything (/proc/PID/task/TID/syscall: "running", or the system call it is
// blocked in with its arguments, stack pointer and pc). Used to pick the
// thread a remote exec starts from and to say where a target is stuck when
// an exec times out (docs/python.md, "Safe points").
#ifndef PROCWARP_DAEMON_PYTHON_THREAD_SURVEY_H_
#define PROCWARP_DAEMON_PYTHON_THREAD_SURVEY_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/exec/elf_symbols.h"

namespace procwarp::python {

struct ThreadPlace {
  pid_t tid = 0;
  bool running = false;  // on a CPU or runnable: no system call to report
  long syscall = -1;     // blocked in this call (-1: stopped outside one)
  uint64_t pc = 0;
};

// Every thread of `pid` (at most `limit`), the main thread first.
absl::StatusOr<std::vector<ThreadPlace>> SurveyThreads(pid_t pid, size_t limit);

// Calls a thread blocked in them sits in with the GIL released and no
// interpreter or allocator lock held (Python wraps them in
// Py_BEGIN_ALLOW_THREADS), which the kernel restarts after an interruption:
// sleeps, reads and writes on pipes and sockets, select/poll/epoll, waits
// for children. Futex waits are not among them: a thread waiting for the
// GIL or inside malloc waits on one too.
bool IsSafeBlockingSyscall(long nr);

std::string SyscallName(long nr);

// "tid 12 (main): in read() at __GI___libc_read+0x12 in libc.so.6; tid 13:
// running" for a timeout message.
std::string DescribeThreads(pid_t pid, const exec::SymbolResolver* symbols,
                            size_t limit);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_THREAD_SURVEY_H_
