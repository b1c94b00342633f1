// The Python payload of a remote exec and the record it sends back
// (docs/python.md, "The payload").
//
// BuildBootstrap() makes the one string handed to PyRun_SimpleString in the
// target. It is self-contained (only sys, os, io and, for an exception,
// traceback — all stdlib, nothing from the target's site-packages, no file
// staged) and leaves no name behind in __main__: the body runs through
// exec() in a dict of its own, and a top-level try makes sure
// PyRun_SimpleString returns 0 (a pending call returning -1 without an
// exception would raise SystemError in the target). The body:
//   0. claims the run: reads the one byte "G" from the token pipe (non-
//      blocking). The daemon withdraws code by reading that byte itself
//      first; whoever reads it owns the run, so withdrawn code never runs
//      and code that started is never run twice ("W" and return if the
//      token is gone);
//   1. writes "S" (started) to the result fd;
//   2. raises sys.audit("procwarp.remote_exec", code): a hook that raises
//      vetoes the exec (record status kVetoed);
//   3. swaps sys.stdout/stderr for StringIO buffers (put back afterwards
//      unless the code replaced them itself), compiles and runs the code in
//      __main__.__dict__ (eval: the repr of the value), catching everything
//      (BaseException: SystemExit must not end the target); the handled
//      exception state is the interpreter's own and is back when the except
//      block ends;
//   4. writes the record and closes the fd (EOF = completion).
// Record: "R", status byte, then six fields (stdout, stderr, value repr,
// exception type, exception message, traceback), each a 4-byte big-endian
// length and the bytes, each cut to `field_limit` in the target. "X" instead
// of "S" means the body never ran (an audit hook refused compiling or
// exec'ing it).
//
// Everything the target writes is untrusted: ParseRecord bounds every length.
#ifndef PROCWARP_DAEMON_PYTHON_BOOTSTRAP_H_
#define PROCWARP_DAEMON_PYTHON_BOOTSTRAP_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace procwarp::python {

enum class RecordStatus : uint8_t {
  kOk = 0,
  kRaised = 1,     // the code raised; exception fields set
  kVetoed = 2,     // an audit hook raised on procwarp.remote_exec
  kInternal = 3,   // the bootstrap itself failed (message in exception_message)
  kRefused = 4,    // "X": the body never ran
};

struct Record {
  RecordStatus status = RecordStatus::kOk;
  std::string stdout_text;
  std::string stderr_text;
  std::string value_repr;
  std::string exception_type;
  std::string exception_message;
  std::string traceback;
};

// The source for PyRun_SimpleString. `result_fd` is the fd in the target to
// write the record to, `token_fd` the token pipe's read end there (-1 for
// either: none, as for --no-wait). `pypy_entry`: the source is run by PyPy's
// pypy_execute_source (pypy.h), which runs it in a fresh dict and appends
// that dict to `sys._pypy_execute_source`; the bootstrap then takes its dict
// out again (and the attribute, once empty), so `sys` is left as found.
std::string BuildBootstrap(absl::string_view code, bool eval, int result_fd,
                           int token_fd, size_t field_limit, bool pypy_entry = false);

// A Python bytes literal (b'...') for arbitrary bytes, ASCII only.
std::string PythonBytesLiteral(absl::string_view bytes);

// What was read from the fd until EOF. `started` says whether the body ran
// at all (withdrawing is only possible before). INTERNAL/DATA_LOSS for a
// malformed or truncated record.
absl::StatusOr<Record> ParseRecord(absl::string_view data);
bool RecordStarted(absl::string_view data);
// "W": the body found its token taken (withdrawn) and did nothing.
bool RecordWithdrawn(absl::string_view data);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_BOOTSTRAP_H_
