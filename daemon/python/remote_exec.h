// RunPython: Python source run inside a live CPython 3.8-3.13 process at a
// safe point, its output brought back (docs/python.md has the whole story).
//
// Two safe points, chosen per call from where the target's threads are
// (thread_survey.h), never by stopping a thread at an arbitrary instruction
// and calling into Python there:
//  - "blocked": a thread blocked in a system call that Python makes with the
//    GIL released (sleep, pipe read, select, ...; IsSafeBlockingSyscall), and
//    that the interpreter confirms — PyGILState_GetThisThreadState() is set
//    and PyGILState_Check() is 0 — gets a trampoline (trampoline.h) that
//    takes the GIL, runs the bootstrap, releases it and re-enters its call,
//    without the target seeing EINTR. The code runs at once.
//  - "pending": otherwise Py_AddPendingCall(PyRun_SimpleString, source) is
//    injected (on a blocked thread if there is one, else on the main thread
//    when it is stopped in the interpreter's own code outside the
//    pending-call and lock functions; else the stop is retried). The main
//    thread runs it between two bytecodes with the GIL held (the
//    interpreter's eval breaker, as for signal handlers and PEP 768).
// main_thread_only restricts "blocked" to the main thread; "pending" always
// runs there.
//
// Completion is the bootstrap's record and EOF on a pipe whose write end the
// daemon installed in the target (daemon/exec/fd_install.h). The run is
// claimed through a one-byte token pipe (bootstrap.h): at the deadline, on
// cancellation, or to move a pending call that waits for a main thread now
// blocked in a read to that blocked thread, the daemon takes the token
// itself — withdrawn code never runs, started code is never run twice and is
// left to finish (abandoning it would corrupt the target). The scratch
// mapping is unmapped after completion; a withdrawn or --no-wait exec leaves
// it (a few pages) because the target may still read it, and the next exec
// into that target frees it once the bootstrap closed its result pipe (at
// most 16 such per target; docs/python.md, "Memory left behind").
//
// Authorisation (the ptrace rule, before and inside each attach) is
// daemon/exec/transient_attach.h's; the opt-out is honoured here.
#ifndef PROCWARP_DAEMON_PYTHON_REMOTE_EXEC_H_
#define PROCWARP_DAEMON_PYTHON_REMOTE_EXEC_H_

#include <sys/types.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/python/bootstrap.h"
#include "daemon/python/interpreter.h"
#include "daemon/server/identity.h"

namespace procwarp::python {

struct RemoteExecRequest {
  pid_t pid = 0;
  std::string code;
  bool eval = false;
  bool main_thread_only = false;
  bool no_wait = false;
  // Run although the target opted out. The caller must be an admin: the
  // service checks that before.
  bool override_opt_out = false;
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled = [] { return false; };
};

struct RemoteExecResult {
  bool interpreter_found = false;
  Interpreter interpreter;
  Record record;
  pid_t ran_on_tid = 0;
  bool ran_on_main_thread = false;
  bool queued = false;
  std::string safe_point;  // "blocked", "pending" or "new-thread" (PyPy), for the audit
  bool opt_out_overridden = false;
};

// Each field of the record is cut to this in the target.
inline constexpr size_t kFieldLimit = 256 * 1024;

// See above. `result` is filled as far as the exec got, also on errors.
absl::Status RunPython(const Identity& caller, const RemoteExecRequest& request,
                       RemoteExecResult* result);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_REMOTE_EXEC_H_
