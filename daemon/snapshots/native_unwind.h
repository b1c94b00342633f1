// UnwindStoppedThreads: the native (machine) stacks of threads the caller
// holds stopped under ptrace, unwound with elfutils' libdwfl from each
// object's CFI (.eh_frame; frame pointers where there is none) and named
// from its symbol tables (.symtab, else .dynsym). docs/python.md, "Native
// frames".
//
// It must run on the thread that seized the threads (a TracerThread's work,
// daemon/ptrace/tracer_thread.h): libdwfl reads their registers with
// PTRACE_GETREGS and their memory with process_vm_readv/PTRACE_PEEKDATA,
// and never attaches or detaches itself (dwfl_linux_proc_attach with
// assume_ptrace_stopped).
//
// The ELF files are the ones the target mapped, opened through
// /proc/PID/map_files (exec::OpenMappedObject), never by their path in the
// daemon's namespace; no separate debuginfo is looked for (it would be the
// daemon's files, not the target's). Everything read is the target owner's
// data: the frame count is bounded, and what it says only names frames of
// that target.
#ifndef PROCWARP_DAEMON_SNAPSHOTS_NATIVE_UNWIND_H_
#define PROCWARP_DAEMON_SNAPSHOTS_NATIVE_UNWIND_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace procwarp::snapshots {

struct NativeFrame {
  uint64_t pc = 0;             // a return address for all but the innermost
  std::string symbol;          // demangled; "" when no symbol covers it
  uint64_t symbol_offset = 0;  // pc - the symbol's start
  std::string object;          // the mapped file's path; "" when in none
  uint64_t elf_address = 0;    // pc - the object's load bias
};

struct UnwoundStack {
  std::vector<NativeFrame> frames;  // innermost first
  // Why the unwind found nothing, or that it stopped at the frame limit;
  // "" otherwise.
  std::string note;
};

// One UnwoundStack per tid of `tids` (threads of `pid`, all stopped by the
// calling thread), at most `max_frames` frames each. Threads not reached by
// `deadline` (the target is held stopped meanwhile) get no frames and a
// note. An error only when no thread can be unwound at all (the session
// could not be set up).
absl::StatusOr<std::map<pid_t, UnwoundStack>> UnwindStoppedThreads(
    pid_t pid, absl::Span<const pid_t> tids, int max_frames, absl::Time deadline);

}  // namespace procwarp::snapshots

#endif  // PROCWARP_DAEMON_SNAPSHOTS_NATIVE_UNWIND_H_
