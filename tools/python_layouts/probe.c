/* Prints the offsets and sizes procwarpd's Python stack reader needs
 * (daemon/python/layout.h), computed by the compiler from one CPython's own
 * headers (its internal ones included: Py_BUILD_CORE). Built and run by
 * generate.py once per interpreter; see tools/python_layouts/README.md.
 * Output: "field value" lines; -1 for what this version does not have. */
#define Py_BUILD_CORE 1
#define NDEBUG 1 /* the header functions called below assert on a live object */
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h>
#endif
#if PY_VERSION_HEX < 0x03090000
#include <internal/pycore_pystate.h>
#else
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
#endif
#include <internal/pycore_gil.h>
#if PY_VERSION_HEX >= 0x030A0000
#include <internal/pycore_moduleobject.h>
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_object.h>
#endif
/* 3.8-3.10 do not install their dict keys layout (it is in their
 * Objects/dict-common.h), nor 3.8-3.9 PyModuleObject (in their
 * Objects/moduleobject.c): for those fields the probe prints "dwarf", and
 * generate.py fills them in from the interpreter's debug information
 * (dwarf_layout.py). */
#define DWARF(name) printf("%s dwarf\n", name)

#define OUT(name, value) printf("%s %ld\n", name, (long)(value))
#define OFF(name, type, member) OUT(name, offsetof(type, member))
#define NONE(name) OUT(name, -1)

int main(void) {
  OUT("version_hex", PY_VERSION_HEX);
  OUT("long_shift", PyLong_SHIFT);
  /* _PyRuntime */
  OFF("runtime_interpreters_head", _PyRuntimeState, interpreters.head);
  OFF("runtime_main_thread", _PyRuntimeState, main_thread);
#if PY_VERSION_HEX < 0x030C0000
  OFF("runtime_tstate_current", _PyRuntimeState, gilstate.tstate_current);
  OFF("runtime_gil", _PyRuntimeState, ceval.gil);
  NONE("interp_gil_pointer");
#else
  NONE("runtime_tstate_current");
  NONE("runtime_gil");
  OFF("interp_gil_pointer", PyInterpreterState, ceval.gil);
#endif
  OFF("gil_last_holder", struct _gil_runtime_state, last_holder);
  OFF("gil_locked", struct _gil_runtime_state, locked);
  /* PyInterpreterState */
  OFF("interp_next", PyInterpreterState, next);
#if PY_VERSION_HEX < 0x030B0000
  OFF("interp_threads_head", PyInterpreterState, tstate_head);
#else
  OFF("interp_threads_head", PyInterpreterState, threads.head);
#endif
  /* PyThreadState */
  OFF("tstate_next", PyThreadState, next);
  OFF("tstate_interp", PyThreadState, interp);
  OFF("tstate_thread_id", PyThreadState, thread_id);
#if PY_VERSION_HEX < 0x030B0000
  OFF("tstate_frame", PyThreadState, frame);
  NONE("tstate_cframe");
  NONE("cframe_current_frame");
  NONE("tstate_current_frame");
#elif PY_VERSION_HEX < 0x030D0000
  NONE("tstate_frame");
  OFF("tstate_cframe", PyThreadState, cframe);
  OFF("cframe_current_frame", _PyCFrame, current_frame);
  NONE("tstate_current_frame");
#else
  NONE("tstate_frame");
  NONE("tstate_cframe");
  NONE("cframe_current_frame");
  OFF("tstate_current_frame", PyThreadState, current_frame);
#endif
#if PY_VERSION_HEX >= 0x030B0000
  OFF("tstate_native_thread_id", PyThreadState, native_thread_id);
#else
  NONE("tstate_native_thread_id");
#endif
  /* Frames: PyFrameObject (<= 3.10) or _PyInterpreterFrame (3.11+). */
#if PY_VERSION_HEX < 0x030B0000
  OFF("frame_back", PyFrameObject, f_back);
  OFF("frame_code", PyFrameObject, f_code);
  NONE("frame_instr");
  OFF("frame_lasti", PyFrameObject, f_lasti);
  OFF("frame_localsplus", PyFrameObject, f_localsplus);
  NONE("frame_owner");
#else
  OFF("frame_back", _PyInterpreterFrame, previous);
#if PY_VERSION_HEX < 0x030D0000
  OFF("frame_code", _PyInterpreterFrame, f_code);
  OFF("frame_instr", _PyInterpreterFrame, prev_instr);
#else
  OFF("frame_code", _PyInterpreterFrame, f_executable);
  OFF("frame_instr", _PyInterpreterFrame, instr_ptr);
#endif
  NONE("frame_lasti");
  OFF("frame_localsplus", _PyInterpreterFrame, localsplus);
  OFF("frame_owner", _PyInterpreterFrame, owner);
#endif
#if PY_VERSION_HEX >= 0x030C0000
  OUT("frame_owned_by_cstack", FRAME_OWNED_BY_CSTACK);
#else
  NONE("frame_owned_by_cstack");
#endif
  /* PyCodeObject */
  OFF("code_filename", PyCodeObject, co_filename);
  OFF("code_name", PyCodeObject, co_name);
  OFF("code_firstlineno", PyCodeObject, co_firstlineno);
  OFF("code_argcount", PyCodeObject, co_argcount);
  OFF("code_kwonlyargcount", PyCodeObject, co_kwonlyargcount);
  OFF("code_flags", PyCodeObject, co_flags);
#if PY_VERSION_HEX < 0x030A0000
  OFF("code_linetable", PyCodeObject, co_lnotab);
#else
  OFF("code_linetable", PyCodeObject, co_linetable);
#endif
#if PY_VERSION_HEX < 0x030B0000
  NONE("code_qualname");
  OFF("code_nlocals", PyCodeObject, co_nlocals);
  OFF("code_varnames", PyCodeObject, co_varnames);
  NONE("code_localspluskinds");
  OFF("code_code", PyCodeObject, co_code);
  NONE("code_code_adaptive");
#else
  OFF("code_qualname", PyCodeObject, co_qualname);
  NONE("code_nlocals");
  OFF("code_varnames", PyCodeObject, co_localsplusnames);
  OFF("code_localspluskinds", PyCodeObject, co_localspluskinds);
  NONE("code_code");
  OFF("code_code_adaptive", PyCodeObject, co_code_adaptive);
#endif
  OUT("co_varargs", CO_VARARGS);
  OUT("co_varkeywords", CO_VARKEYWORDS);
#if PY_VERSION_HEX >= 0x030B0000
  OUT("co_fast_local", CO_FAST_LOCAL);
  OUT("co_fast_cell", CO_FAST_CELL);
#else
  NONE("co_fast_local");
  NONE("co_fast_cell");
#endif
  /* Objects */
  OFF("object_type", PyObject, ob_type);
  OFF("var_size", PyVarObject, ob_size);
  OFF("type_name", PyTypeObject, tp_name);
  OFF("tuple_item", PyTupleObject, ob_item);
  OFF("list_item", PyListObject, ob_item);
  OFF("dict_used", PyDictObject, ma_used);
  OFF("set_used", PySetObject, used);
  OFF("float_value", PyFloatObject, ob_fval);
#if PY_VERSION_HEX < 0x030C0000
  NONE("long_tag");
  OFF("long_digits", PyLongObject, ob_digit);
#else
  OFF("long_tag", PyLongObject, long_value.lv_tag);
  OFF("long_digits", PyLongObject, long_value.ob_digit);
#endif
  OFF("bytes_data", PyBytesObject, ob_sval);
  OFF("unicode_state", PyASCIIObject, state);
  OFF("unicode_length", PyASCIIObject, length);
  OUT("unicode_ascii_size", sizeof(PyASCIIObject));
  OUT("unicode_compact_size", sizeof(PyCompactUnicodeObject));
  OFF("unicode_data_pointer", PyUnicodeObject, data.any);
  OFF("cell_ref", PyCellObject, ob_ref);
  /* Instance attributes (a threading.Thread's _name: ReadThreadName). */
  OFF("type_basicsize", PyTypeObject, tp_basicsize);
  OFF("type_dictoffset", PyTypeObject, tp_dictoffset);
  OFF("type_flags", PyTypeObject, tp_flags);
  OFF("heaptype_cached_keys", PyHeapTypeObject, ht_cached_keys);
  OFF("dict_keys", PyDictObject, ma_keys);
  OFF("dict_values", PyDictObject, ma_values);
#if PY_VERSION_HEX < 0x030B0000
  DWARF("keys_nentries");
  DWARF("keys_indices");
  DWARF("entry_size");
  DWARF("entry_key");
  DWARF("entry_value");
  DWARF("keys_size");
  NONE("keys_log2_index_bytes");
  NONE("keys_kind");
  NONE("unicode_entry_size");
  NONE("unicode_entry_key");
  NONE("unicode_entry_value");
  NONE("values_values");
  NONE("values_valid");
  NONE("tpflags_managed_dict");
  NONE("tpflags_inline_values");
  NONE("object_managed_dict");
  NONE("object_managed_values");
#else
  OFF("keys_nentries", PyDictKeysObject, dk_nentries);
  OFF("keys_indices", PyDictKeysObject, dk_indices);
  OUT("entry_size", sizeof(PyDictKeyEntry));
  OFF("entry_key", PyDictKeyEntry, me_key);
  OFF("entry_value", PyDictKeyEntry, me_value);
  NONE("keys_size");
  OFF("keys_log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
  OFF("keys_kind", PyDictKeysObject, dk_kind);
  OUT("unicode_entry_size", sizeof(PyDictUnicodeEntry));
  OFF("unicode_entry_key", PyDictUnicodeEntry, me_key);
  OFF("unicode_entry_value", PyDictUnicodeEntry, me_value);
  OFF("values_values", PyDictValues, values);
#if PY_VERSION_HEX < 0x030D0000
  NONE("values_valid");
  OUT("tpflags_managed_dict", Py_TPFLAGS_MANAGED_DICT);
  NONE("tpflags_inline_values");
#else
  OFF("values_valid", PyDictValues, valid);
  OUT("tpflags_managed_dict", Py_TPFLAGS_MANAGED_DICT);
  OUT("tpflags_inline_values", Py_TPFLAGS_INLINE_VALUES);
#endif
  {
    /* Where, relative to the object, the header's own accessors look. */
    PyObject *objects[8];
    PyObject *o = (PyObject *)&objects[6];
#if PY_VERSION_HEX < 0x030C0000 /* 3.11: a values pointer and a dict pointer */
    OUT("object_managed_dict", (char *)_PyObject_ManagedDictPointer(o) - (char *)o);
    OUT("object_managed_values", (char *)_PyObject_ValuesPointer(o) - (char *)o);
#elif PY_VERSION_HEX < 0x030D0000 /* 3.12: one tagged dict-or-values word */
    OUT("object_managed_dict", (char *)_PyObject_DictOrValuesPointer(o) - (char *)o);
    NONE("object_managed_values");
#else /* 3.13: a dict pointer; values inline after the object's basicsize */
    OUT("object_managed_dict", (char *)_PyObject_ManagedDictPointer(o) - (char *)o);
    NONE("object_managed_values");
#endif
  }
#endif
  /* Where 3.13+'s _Py_DebugOffsets (at the start of _PyRuntime) keeps the
   * target's own value of each of the fields above. */
#if PY_VERSION_HEX >= 0x030D0000
  OUT("debug_offsets_size", sizeof(_Py_DebugOffsets));
  OFF("dbg_version", _Py_DebugOffsets, version);
  OFF("dbg_runtime_interpreters_head", _Py_DebugOffsets, runtime_state.interpreters_head);
  OFF("dbg_interp_next", _Py_DebugOffsets, interpreter_state.next);
  OFF("dbg_interp_threads_head", _Py_DebugOffsets, interpreter_state.threads_head);
  OFF("dbg_interp_gil_pointer", _Py_DebugOffsets, interpreter_state.ceval_gil);
  OFF("dbg_tstate_next", _Py_DebugOffsets, thread_state.next);
  OFF("dbg_tstate_interp", _Py_DebugOffsets, thread_state.interp);
  OFF("dbg_tstate_thread_id", _Py_DebugOffsets, thread_state.thread_id);
  OFF("dbg_tstate_current_frame", _Py_DebugOffsets, thread_state.current_frame);
  OFF("dbg_tstate_native_thread_id", _Py_DebugOffsets, thread_state.native_thread_id);
  OFF("dbg_frame_back", _Py_DebugOffsets, interpreter_frame.previous);
  OFF("dbg_frame_code", _Py_DebugOffsets, interpreter_frame.executable);
  OFF("dbg_frame_instr", _Py_DebugOffsets, interpreter_frame.instr_ptr);
  OFF("dbg_frame_localsplus", _Py_DebugOffsets, interpreter_frame.localsplus);
  OFF("dbg_frame_owner", _Py_DebugOffsets, interpreter_frame.owner);
  OFF("dbg_code_filename", _Py_DebugOffsets, code_object.filename);
  OFF("dbg_code_name", _Py_DebugOffsets, code_object.name);
  OFF("dbg_code_qualname", _Py_DebugOffsets, code_object.qualname);
  OFF("dbg_code_linetable", _Py_DebugOffsets, code_object.linetable);
  OFF("dbg_code_firstlineno", _Py_DebugOffsets, code_object.firstlineno);
  OFF("dbg_code_argcount", _Py_DebugOffsets, code_object.argcount);
  OFF("dbg_code_varnames", _Py_DebugOffsets, code_object.localsplusnames);
  OFF("dbg_code_localspluskinds", _Py_DebugOffsets, code_object.localspluskinds);
  OFF("dbg_code_code_adaptive", _Py_DebugOffsets, code_object.co_code_adaptive);
  OFF("dbg_object_type", _Py_DebugOffsets, pyobject.ob_type);
  OFF("dbg_type_name", _Py_DebugOffsets, type_object.tp_name);
  OFF("dbg_tuple_item", _Py_DebugOffsets, tuple_object.ob_item);
  OFF("dbg_var_size", _Py_DebugOffsets, tuple_object.ob_size);
  OFF("dbg_float_value", _Py_DebugOffsets, float_object.ob_fval);
  OFF("dbg_long_tag", _Py_DebugOffsets, long_object.lv_tag);
  OFF("dbg_long_digits", _Py_DebugOffsets, long_object.ob_digit);
  OFF("dbg_bytes_data", _Py_DebugOffsets, bytes_object.ob_sval);
  OFF("dbg_unicode_state", _Py_DebugOffsets, unicode_object.state);
  OFF("dbg_unicode_length", _Py_DebugOffsets, unicode_object.length);
  OFF("dbg_unicode_ascii_size", _Py_DebugOffsets, unicode_object.asciiobject_size);
#else
  NONE("debug_offsets_size");
  NONE("dbg_version");
  NONE("dbg_runtime_interpreters_head");
  NONE("dbg_interp_next");
  NONE("dbg_interp_threads_head");
  NONE("dbg_interp_gil_pointer");
  NONE("dbg_tstate_next");
  NONE("dbg_tstate_interp");
  NONE("dbg_tstate_thread_id");
  NONE("dbg_tstate_current_frame");
  NONE("dbg_tstate_native_thread_id");
  NONE("dbg_frame_back");
  NONE("dbg_frame_code");
  NONE("dbg_frame_instr");
  NONE("dbg_frame_localsplus");
  NONE("dbg_frame_owner");
  NONE("dbg_code_filename");
  NONE("dbg_code_name");
  NONE("dbg_code_qualname");
  NONE("dbg_code_linetable");
  NONE("dbg_code_firstlineno");
  NONE("dbg_code_argcount");
  NONE("dbg_code_varnames");
  NONE("dbg_code_localspluskinds");
  NONE("dbg_code_code_adaptive");
  NONE("dbg_object_type");
  NONE("dbg_type_name");
  NONE("dbg_tuple_item");
  NONE("dbg_var_size");
  NONE("dbg_float_value");
  NONE("dbg_long_tag");
  NONE("dbg_long_digits");
  NONE("dbg_bytes_data");
  NONE("dbg_unicode_state");
  NONE("dbg_unicode_length");
  NONE("dbg_unicode_ascii_size");
#endif
  /* Merging native frames: which frame starts a C call of the eval loop. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
  OFF("frame_is_entry", _PyInterpreterFrame, is_entry);
#else
  NONE("frame_is_entry");
#endif
  /* The main thread's name: sys.modules["threading"]._main_thread._name. */
#if PY_VERSION_HEX < 0x030C0000
  OFF("interp_modules", PyInterpreterState, modules);
#else
  OFF("interp_modules", PyInterpreterState, imports.modules);
#endif
#if PY_VERSION_HEX >= 0x030A0000
  OFF("module_dict", PyModuleObject, md_dict);
#else
  DWARF("module_dict"); /* 3.8, 3.9: in their Objects/moduleobject.c */
#endif
  return 0;
}
