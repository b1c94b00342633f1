// CPythonLayout: where CPython 3.8-3.13 keep what a stack snapshot reads
// (runtime -> interpreters -> thread states -> frames -> code objects and the
// values of locals), one entry per minor release.
//
// The numbers are not written by hand: tools/python_layouts/generate.py
// computes them with the C compiler from each interpreter's own headers
// (internal ones included) and writes layout_table.inc; a test regenerates
// and compares wherever those headers are installed. CPython keeps these
// layouts fixed within a minor release (the generator refuses to merge two
// patch releases that disagree). From 3.13 on the target also carries its own
// offsets (_Py_DebugOffsets, at the start of _PyRuntime): ApplyDebugOffsets
// prefers those. See docs/python.md, "Stack snapshots".
#ifndef PROCWARP_DAEMON_PYTHON_LAYOUT_H_
#define PROCWARP_DAEMON_PYTHON_LAYOUT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace procwarp::python {

// Offsets are in bytes from the start of the named struct; -1 where the
// version has no such field. Field order is the generator's (probe.c).
struct CPythonLayout {
  int64_t minor = 0;  // 3.<minor>
  int64_t long_shift = 0;  // bits per PyLong digit
  // _PyRuntimeState
  int64_t runtime_interpreters_head = -1;
  int64_t runtime_main_thread = -1;
  int64_t runtime_tstate_current = -1;  // <= 3.11: the GIL holder
  int64_t runtime_gil = -1;             // <= 3.11: struct _gil_runtime_state
  // PyInterpreterState
  int64_t interp_gil_pointer = -1;      // 3.12+: ceval.gil
  int64_t gil_last_holder = -1;         // in struct _gil_runtime_state
  int64_t gil_locked = -1;
  int64_t interp_next = -1;
  int64_t interp_threads_head = -1;
  // PyThreadState
  int64_t tstate_next = -1;
  int64_t tstate_interp = -1;
  int64_t tstate_thread_id = -1;         // pthread_t
  int64_t tstate_frame = -1;             // <= 3.10: PyFrameObject*
  int64_t tstate_cframe = -1;            // 3.11, 3.12: _PyCFrame*
  int64_t cframe_current_frame = -1;
  int64_t tstate_current_frame = -1;     // 3.13
  int64_t tstate_native_thread_id = -1;  // 3.11+
  // PyFrameObject (<= 3.10) or _PyInterpreterFrame (3.11+)
  int64_t frame_back = -1;
  int64_t frame_code = -1;
  int64_t frame_instr = -1;  // 3.11+: prev_instr / instr_ptr
  int64_t frame_lasti = -1;  // <= 3.10
  int64_t frame_localsplus = -1;
  int64_t frame_owner = -1;
  int64_t frame_owned_by_cstack = -1;  // 3.12+: shim frames, not Python code
  // PyCodeObject
  int64_t code_filename = -1;
  int64_t code_name = -1;
  int64_t code_firstlineno = -1;
  int64_t code_argcount = -1;
  int64_t code_kwonlyargcount = -1;
  int64_t code_flags = -1;
  int64_t code_linetable = -1;  // co_lnotab (<= 3.9) / co_linetable
  int64_t code_qualname = -1;
  int64_t code_nlocals = -1;
  int64_t code_varnames = -1;   // co_varnames / co_localsplusnames
  int64_t code_localspluskinds = -1;
  int64_t code_code = -1;       // <= 3.10: bytes
  int64_t code_code_adaptive = -1;
  int64_t co_varargs = -1;
  int64_t co_varkeywords = -1;
  int64_t co_fast_local = -1;
  int64_t co_fast_cell = -1;
  // Objects
  int64_t object_type = -1;
  int64_t var_size = -1;
  int64_t type_name = -1;
  int64_t tuple_item = -1;
  int64_t list_item = -1;
  int64_t dict_used = -1;
  int64_t set_used = -1;
  int64_t float_value = -1;
  int64_t long_tag = -1;  // 3.12+
  int64_t long_digits = -1;
  int64_t bytes_data = -1;
  int64_t unicode_state = -1;
  int64_t unicode_length = -1;
  int64_t unicode_ascii_size = -1;
  int64_t unicode_compact_size = -1;
  int64_t unicode_data_pointer = -1;
  int64_t cell_ref = -1;
  // Instance attributes, for a threading.Thread's _name (ReadThreadName in
  // stack_reader.cc; docs/python.md, "Thread names").
  int64_t type_basicsize = -1;
  int64_t type_dictoffset = -1;       // <= 3.10: where an instance keeps its dict
  int64_t type_flags = -1;
  int64_t heaptype_cached_keys = -1;  // keys shared by the instances' values
  int64_t dict_keys = -1;
  int64_t dict_values = -1;           // non-null: a split table
  int64_t keys_nentries = -1;
  int64_t keys_indices = -1;          // entries follow the index table
  int64_t entry_size = -1;            // PyDictKeyEntry
  int64_t entry_key = -1;
  int64_t entry_value = -1;
  int64_t keys_size = -1;             // <= 3.10: index table slots
  int64_t keys_log2_index_bytes = -1;  // 3.11+
  int64_t keys_kind = -1;              // 3.11+: 0 general, else unicode entries
  int64_t unicode_entry_size = -1;     // 3.11+: PyDictUnicodeEntry
  int64_t unicode_entry_key = -1;
  int64_t unicode_entry_value = -1;
  int64_t values_values = -1;          // 3.11+: in PyDictValues
  int64_t values_valid = -1;           // 3.13
  int64_t tpflags_managed_dict = -1;   // 3.11+: Py_TPFLAGS_MANAGED_DICT
  int64_t tpflags_inline_values = -1;  // 3.13: values after tp_basicsize
  // 3.11+ (meaningful only where tpflags_managed_dict >= 0): byte offsets,
  // negative, from the object to its managed dict pointer (3.12: a word
  // holding the dict, or the values pointer + 1) and to its values pointer
  // (3.11 only).
  int64_t object_managed_dict = -1;
  int64_t object_managed_values = -1;
  // 3.13+: the size of _Py_DebugOffsets, and where in it the target keeps
  // its own value of the field named after dbg_.
  int64_t debug_offsets_size = -1;
  int64_t dbg_version = -1;
  int64_t dbg_runtime_interpreters_head = -1;
  int64_t dbg_interp_next = -1;
  int64_t dbg_interp_threads_head = -1;
  int64_t dbg_interp_gil_pointer = -1;
  int64_t dbg_tstate_next = -1;
  int64_t dbg_tstate_interp = -1;
  int64_t dbg_tstate_thread_id = -1;
  int64_t dbg_tstate_current_frame = -1;
  int64_t dbg_tstate_native_thread_id = -1;
  int64_t dbg_frame_back = -1;
  int64_t dbg_frame_code = -1;
  int64_t dbg_frame_instr = -1;
  int64_t dbg_frame_localsplus = -1;
  int64_t dbg_frame_owner = -1;
  int64_t dbg_code_filename = -1;
  int64_t dbg_code_name = -1;
  int64_t dbg_code_qualname = -1;
  int64_t dbg_code_linetable = -1;
  int64_t dbg_code_firstlineno = -1;
  int64_t dbg_code_argcount = -1;
  int64_t dbg_code_varnames = -1;
  int64_t dbg_code_localspluskinds = -1;
  int64_t dbg_code_code_adaptive = -1;
  int64_t dbg_object_type = -1;
  int64_t dbg_type_name = -1;
  int64_t dbg_tuple_item = -1;
  int64_t dbg_var_size = -1;
  int64_t dbg_float_value = -1;
  int64_t dbg_long_tag = -1;
  int64_t dbg_long_digits = -1;
  int64_t dbg_bytes_data = -1;
  int64_t dbg_unicode_state = -1;
  int64_t dbg_unicode_length = -1;
  int64_t dbg_unicode_ascii_size = -1;
  // 3.11: _PyInterpreterFrame.is_entry, set on the first frame each C call
  // of the evaluation loop runs (3.12+ mark it with a shim frame instead);
  // for merging native frames (native_merge.h).
  int64_t frame_is_entry = -1;
  // sys.modules (PyInterpreterState.modules, 3.12+ imports.modules) and a
  // module's __dict__ (PyModuleObject.md_dict): where threading keeps
  // _main_thread, whose name the main thread is reported by.
  int64_t interp_modules = -1;
  int64_t module_dict = -1;

  bool frames_are_objects() const { return tstate_frame >= 0; }  // <= 3.10
};

// The layout of CPython 3.<minor>; nullptr when the table has none.
const CPythonLayout* FindCPythonLayout(int minor);

// Replaces the fields the target's own _Py_DebugOffsets covers (`raw`: the
// first layout.debug_offsets_size bytes of its _PyRuntime) with its values.
// FAILED_PRECONDITION when `raw` is not a _Py_DebugOffsets of `hexversion`'s
// minor release (wrong cookie or version), or an offset is implausible.
absl::Status ApplyDebugOffsets(absl::Span<const uint8_t> raw, uint32_t hexversion,
                               CPythonLayout* layout);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_LAYOUT_H_
