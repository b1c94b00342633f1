// Line numbers of the instruction a Python frame is executing, decoded from
// the code object's line table, in each format CPython 3.8-3.13 uses
// (CPython's Objects/lnotab_notes.txt and InternalDocs describe them):
//  - co_lnotab (<= 3.9): (bytecode delta, signed line delta) byte pairs;
//  - co_linetable 3.10: (bytecode delta, signed line delta or -128 for "no
//    line") byte pairs over address ranges;
//  - co_linetable 3.11+: the location table, variable-length entries of
//    code units with line (and column) deltas.
// Input is the target's bytes: any table is decoded without reading outside
// it, and a table that ends early gives -1.
#ifndef PROCWARP_DAEMON_PYTHON_STACK_LINES_H_
#define PROCWARP_DAEMON_PYTHON_STACK_LINES_H_

#include "absl/strings/string_view.h"

namespace procwarp::python {

// The line of the instruction at byte offset `offset` (f_lasti) in 3.8/3.9.
int LineFromLnotab(absl::string_view lnotab, int first_line, int offset);

// 3.10: `offset` is a byte offset (f_lasti * 2); negative: not started yet.
int LineFromLinetable310(absl::string_view table, int first_line, int offset);

// 3.11+: `offset` is a byte offset (code units * 2) of the instruction.
int LineFromLocationTable(absl::string_view table, int first_line, int offset);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_STACK_LINES_H_
