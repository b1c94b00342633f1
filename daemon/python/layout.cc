// See layout.h.
#include "daemon/python/layout.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace procwarp::python {
namespace {

const CPythonLayout kLayouts[] = {
#include "daemon/python/layout_table.inc"
};

// Each field _Py_DebugOffsets covers, with the field saying where it is.
struct DebugField {
  int64_t CPythonLayout::*value;
  int64_t CPythonLayout::*where;
};
#define PW_DEBUG_FIELD(name) {&CPythonLayout::name, &CPythonLayout::dbg_##name}
constexpr DebugField kDebugFields[] = {
    PW_DEBUG_FIELD(runtime_interpreters_head),
    PW_DEBUG_FIELD(interp_next),
    PW_DEBUG_FIELD(interp_threads_head),
    PW_DEBUG_FIELD(interp_gil_pointer),
    PW_DEBUG_FIELD(tstate_next),
    PW_DEBUG_FIELD(tstate_interp),
    PW_DEBUG_FIELD(tstate_thread_id),
    PW_DEBUG_FIELD(tstate_current_frame),
    PW_DEBUG_FIELD(tstate_native_thread_id),
    PW_DEBUG_FIELD(frame_back),
    PW_DEBUG_FIELD(frame_code),
    PW_DEBUG_FIELD(frame_instr),
    PW_DEBUG_FIELD(frame_localsplus),
    PW_DEBUG_FIELD(frame_owner),
    PW_DEBUG_FIELD(code_filename),
    PW_DEBUG_FIELD(code_name),
    PW_DEBUG_FIELD(code_qualname),
    PW_DEBUG_FIELD(code_linetable),
    PW_DEBUG_FIELD(code_firstlineno),
    PW_DEBUG_FIELD(code_argcount),
    PW_DEBUG_FIELD(code_varnames),
    PW_DEBUG_FIELD(code_localspluskinds),
    PW_DEBUG_FIELD(code_code_adaptive),
    PW_DEBUG_FIELD(object_type),
    PW_DEBUG_FIELD(type_name),
    PW_DEBUG_FIELD(tuple_item),
    PW_DEBUG_FIELD(var_size),
    PW_DEBUG_FIELD(float_value),
    PW_DEBUG_FIELD(long_tag),
    PW_DEBUG_FIELD(long_digits),
    PW_DEBUG_FIELD(bytes_data),
    PW_DEBUG_FIELD(unicode_state),
    PW_DEBUG_FIELD(unicode_length),
    PW_DEBUG_FIELD(unicode_ascii_size),
};
#undef PW_DEBUG_FIELD

// No struct the reader walks is anywhere near this big (PyInterpreterState,
// the largest, is a few hundred KiB at most).
constexpr uint64_t kMaxOffset = 1 << 20;

}  // namespace

const CPythonLayout* FindCPythonLayout(int minor) {
  for (const CPythonLayout& layout : kLayouts) {
    if (layout.minor == minor) return &layout;
  }
  return nullptr;
}

absl::Status ApplyDebugOffsets(absl::Span<const uint8_t> raw, uint32_t hexversion,
                               CPythonLayout* layout) {
  if (layout->debug_offsets_size < 0) return absl::OkStatus();
  if (raw.size() < static_cast<size_t>(layout->debug_offsets_size) ||
      std::memcmp(raw.data(), "xdebugpy", 8) != 0) {
    return absl::FailedPreconditionError(
        "_PyRuntime does not start with _Py_DebugOffsets (no \"xdebugpy\" cookie)");
  }
  auto word = [&](int64_t where) {
    uint64_t value;
    std::memcpy(&value, raw.data() + where, sizeof(value));
    return value;
  };
  const uint64_t version = word(layout->dbg_version);
  if ((version >> 16) != (hexversion >> 16)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "_Py_DebugOffsets says version 0x", absl::Hex(version),
        ", Py_Version says 0x", absl::Hex(hexversion)));
  }
  for (const DebugField& field : kDebugFields) {
    const int64_t where = layout->*field.where;
    if (where < 0) continue;
    const uint64_t value = word(where);
    if (value >= kMaxOffset) {
      return absl::FailedPreconditionError(
          absl::StrCat("_Py_DebugOffsets: implausible offset ", value));
    }
    layout->*field.value = static_cast<int64_t>(value);
  }
  return absl::OkStatus();
}

}  // namespace procwarp::python
