// See stack_reader.h.
#include "daemon/python/stack_reader.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/python/stack_lines.h"
#include "daemon/python/stack_values.h"
#include "daemon/util/status_macros.h"

namespace procwarp::python {
namespace {

namespace pb = snapshots::v1;

// Longest C string read for a type name (tp_name).
constexpr size_t kMaxTypeName = 128;
// Line tables longer than this are not decoded (line -1).
constexpr int64_t kMaxLineTable = 1 << 20;
// Frame chains and thread lists that loop or run past the limits.
absl::Status Torn(absl::string_view what) {
  return absl::AbortedError(absl::StrCat("torn read: ", what));
}

// What a frame needs from its code object, read once per pass.
struct CodeInfo {
  std::string function;
  std::string file;
  int first_line = 0;
  std::string line_table;
  std::vector<std::string> names;  // local variable names, by slot
  std::string kinds;               // 3.11+: co_localspluskinds
  int arguments = 0;               // slots that hold arguments
  bool names_read = false;         // names, kinds and arguments are set
};

class Walker {
 public:
  Walker(StackMemory& memory, const InterpreterAddresses& where, const StackLimits& limits)
      : m_(memory), w_(where), l_(where.layout), limits_(limits) {}

  absl::Status Walk(bool locals, std::vector<pb::PythonThread>* threads,
                    std::vector<uint64_t>* signature, std::vector<EvalEntries>* entries);

 private:
  template <typename T>
  absl::StatusOr<T> Get(uint64_t address) {
    T value;
    RETURN_IF_ERROR(m_.Read(address, &value, sizeof(value)));
    return value;
  }
  absl::StatusOr<uint64_t> Ptr(uint64_t address) { return Get<uint64_t>(address); }
  // A field at `offset` of the struct at `base`; offsets < 0 are a layout bug.
  absl::StatusOr<uint64_t> Field(uint64_t base, int64_t offset) {
    if (offset < 0) return absl::InternalError("layout has no such field");
    return Ptr(base + offset);
  }

  absl::StatusOr<std::string> TypeName(uint64_t object);
  // The code points of a str object (at most `max`; *truncated if more).
  absl::Status ReadCodePoints(uint64_t str, size_t max, std::vector<uint32_t>* out,
                              int64_t* length);
  absl::StatusOr<std::string> ReadText(uint64_t str);
  absl::StatusOr<std::string> ReadBytes(uint64_t bytes, size_t max, int64_t* length);
  absl::StatusOr<CodeInfo*> Code(uint64_t code);
  // The local variable names and argument count of `code` (for locals).
  absl::Status ReadNames(uint64_t code, CodeInfo* info);
  absl::Status ReadValue(uint64_t object, pb::PythonValue* value);
  absl::Status ReadLocals(uint64_t slots, const CodeInfo& code, pb::PythonFrame* frame);
  // `outermost` gets the thread's outermost Python frame and its code (0
  // when it has none), for ThreadName; `entries` which of its frames start
  // a C call of the evaluation loop (outermost first).
  absl::Status WalkThread(uint64_t tstate, bool locals, pb::PythonThread* thread,
                          std::vector<uint64_t>* signature, uint64_t outermost[2],
                          EvalEntries* entries);
  // threading's name of a thread whose outermost frame is Thread._bootstrap;
  // "" when it is not or anything read does not hold (docs/python.md,
  // "Thread names").
  std::string ThreadName(uint64_t frame, uint64_t code);
  absl::StatusOr<std::string> ReadThreadName(uint64_t frame);
  // The name of threading's main Thread (sys.modules["threading"].
  // _main_thread._name), which the program may have changed; "MainThread"
  // when threading is not imported or anything read does not hold.
  std::string MainThreadName(uint64_t interp);
  absl::StatusOr<std::string> ReadMainThreadName(uint64_t interp);
  // The str `object`'s text when it is a str, else "".
  absl::StatusOr<std::string> ReadName(uint64_t object);
  // The value under str key `name` in dict `dict`; 0 when absent.
  absl::StatusOr<uint64_t> DictItem(uint64_t dict, absl::string_view name);
  // The value of instance attribute `name` of `object`; 0 when it has none.
  absl::StatusOr<uint64_t> Attribute(uint64_t object, absl::string_view name);
  // The value stored under str key `name` in a dict's keys object; `values`:
  // the split table's values array, 0 for a combined table.
  absl::StatusOr<uint64_t> LookUp(uint64_t keys, uint64_t values, absl::string_view name);
  // The thread state holding interpreter `interp`'s GIL, 0 for none.
  absl::StatusOr<uint64_t> GilHolder(uint64_t interp);

  StackMemory& m_;
  const InterpreterAddresses& w_;
  const CPythonLayout& l_;
  const StackLimits& limits_;
  std::unordered_map<uint64_t, std::string> type_names_;
  std::unordered_map<uint64_t, CodeInfo> codes_;
  std::unordered_map<uint64_t, std::string> keys_text_;  // dict keys seen, by address
};

absl::StatusOr<std::string> Walker::TypeName(uint64_t object) {
  ASSIGN_OR_RETURN(uint64_t type, Field(object, l_.object_type));
  auto it = type_names_.find(type);
  if (it != type_names_.end()) return it->second;
  ASSIGN_OR_RETURN(uint64_t name_ptr, Field(type, l_.type_name));
  std::string name;
  for (size_t i = 0; i < kMaxTypeName; ++i) {
    ASSIGN_OR_RETURN(char c, Get<char>(name_ptr + i));
    if (c == '\0') break;
    name.push_back(c);
  }
  type_names_.emplace(type, name);
  return name;
}

absl::Status Walker::ReadCodePoints(uint64_t str, size_t max, std::vector<uint32_t>* out,
                                    int64_t* length) {
  ASSIGN_OR_RETURN(uint32_t state, Get<uint32_t>(str + l_.unicode_state));
  ASSIGN_OR_RETURN(int64_t size, Get<int64_t>(str + l_.unicode_length));
  const unsigned kind = (state >> 2) & 7;
  const bool compact = ((state >> 5) & 1) != 0;
  const bool ascii = ((state >> 6) & 1) != 0;
  if ((kind != 1 && kind != 2 && kind != 4) || size < 0 || size > (int64_t{1} << 40)) {
    return Torn("not a str object");
  }
  uint64_t data;
  if (compact) {
    data = str + (ascii ? l_.unicode_ascii_size : l_.unicode_compact_size);
  } else {
    ASSIGN_OR_RETURN(data, Field(str, l_.unicode_data_pointer));
  }
  *length = size;
  const size_t n = std::min<size_t>(size, max);
  std::string raw(n * kind, '\0');
  RETURN_IF_ERROR(m_.Read(data, raw.data(), raw.size()));
  out->resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t c = 0;
    std::memcpy(&c, raw.data() + i * kind, kind);  // little-endian
    (*out)[i] = c;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Walker::ReadText(uint64_t str) {
  ASSIGN_OR_RETURN(std::string type, TypeName(str));
  if (type != "str") return Torn(absl::StrCat("expected a str, found ", type));
  std::vector<uint32_t> points;
  int64_t length = 0;
  RETURN_IF_ERROR(ReadCodePoints(str, 4096, &points, &length));
  return Utf8(points);  // names and paths, as they are
}

absl::Status Walker::ReadNames(uint64_t code, CodeInfo* info) {
  ASSIGN_OR_RETURN(uint64_t names, Field(code, l_.code_varnames));
  ASSIGN_OR_RETURN(std::string type, TypeName(names));
  if (type != "tuple") return Torn("a code object's names are not a tuple");
  ASSIGN_OR_RETURN(int64_t count, Get<int64_t>(names + l_.var_size));
  if (l_.code_nlocals >= 0) {  // <= 3.10: co_varnames holds exactly the locals
    ASSIGN_OR_RETURN(int32_t nlocals, Get<int32_t>(code + l_.code_nlocals));
    count = std::min<int64_t>(count, nlocals);
  }
  if (count < 0) return Torn("negative local count");
  count = std::min<int64_t>(count, limits_.max_locals);
  info->names.clear();
  for (int64_t i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(uint64_t name, Ptr(names + l_.tuple_item + 8 * i));
    ASSIGN_OR_RETURN(std::string text, ReadText(name));
    info->names.push_back(std::move(text));
  }
  if (l_.code_localspluskinds >= 0) {
    ASSIGN_OR_RETURN(uint64_t kinds, Field(code, l_.code_localspluskinds));
    int64_t length = 0;
    ASSIGN_OR_RETURN(info->kinds, ReadBytes(kinds, count, &length));
    if (length < count) return Torn("co_localspluskinds is shorter than the names");
  }
  ASSIGN_OR_RETURN(int32_t argcount, Get<int32_t>(code + l_.code_argcount));
  ASSIGN_OR_RETURN(int32_t kwonly, Get<int32_t>(code + l_.code_kwonlyargcount));
  ASSIGN_OR_RETURN(int32_t flags, Get<int32_t>(code + l_.code_flags));
  info->arguments = argcount + kwonly + ((flags & l_.co_varargs) != 0 ? 1 : 0) +
                    ((flags & l_.co_varkeywords) != 0 ? 1 : 0);
  info->names_read = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Walker::ReadBytes(uint64_t bytes, size_t max, int64_t* length) {
  ASSIGN_OR_RETURN(int64_t size, Get<int64_t>(bytes + l_.var_size));
  if (size < 0 || size > (int64_t{1} << 40)) return Torn("not a bytes object");
  *length = size;
  std::string data(std::min<size_t>(size, max), '\0');
  RETURN_IF_ERROR(m_.Read(bytes + l_.bytes_data, data.data(), data.size()));
  return data;
}

absl::StatusOr<CodeInfo*> Walker::Code(uint64_t code) {
  auto it = codes_.find(code);
  if (it != codes_.end()) return &it->second;
  ASSIGN_OR_RETURN(uint64_t type, Field(code, l_.object_type));
  if (type != w_.code_type) return Torn("a frame's code is not a code object");
  CodeInfo info;
  ASSIGN_OR_RETURN(uint64_t name,
                   Field(code, l_.code_qualname >= 0 ? l_.code_qualname : l_.code_name));
  ASSIGN_OR_RETURN(info.function, ReadText(name));
  ASSIGN_OR_RETURN(uint64_t file, Field(code, l_.code_filename));
  ASSIGN_OR_RETURN(info.file, ReadText(file));
  ASSIGN_OR_RETURN(info.first_line, Get<int32_t>(code + l_.code_firstlineno));
  ASSIGN_OR_RETURN(uint64_t table, Field(code, l_.code_linetable));
  int64_t table_length = 0;
  ASSIGN_OR_RETURN(info.line_table, ReadBytes(table, kMaxLineTable, &table_length));
  codes_.emplace(code, std::move(info));
  return &codes_[code];
}

absl::Status Walker::ReadValue(uint64_t object, pb::PythonValue* value) {
  value->set_address(object);
  ASSIGN_OR_RETURN(std::string type, TypeName(object));
  value->set_type(type);
  if (type == "NoneType") {
    value->set_repr("None");
  } else if (type == "int" || type == "bool") {
    int64_t ndigits;
    bool negative = false;
    if (l_.long_tag >= 0) {  // 3.12+: lv_tag = ndigits << 3 | sign
      ASSIGN_OR_RETURN(uint64_t tag, Get<uint64_t>(object + l_.long_tag));
      ndigits = static_cast<int64_t>(tag >> 3);
      negative = (tag & 3) == 2;
    } else {
      ASSIGN_OR_RETURN(int64_t size, Get<int64_t>(object + l_.var_size));
      negative = size < 0;
      ndigits = negative ? -size : size;
    }
    if (ndigits > limits_.max_int_digits) {
      value->set_repr(absl::StrCat("<int of ", ndigits, " digits>"));
      value->set_truncated(true);
      return absl::OkStatus();
    }
    std::vector<uint32_t> digits(ndigits);
    RETURN_IF_ERROR(m_.Read(object + l_.long_digits, digits.data(), ndigits * 4));
    if (type == "bool") {
      bool set = std::any_of(digits.begin(), digits.end(), [](uint32_t d) { return d != 0; });
      value->set_repr(set ? "True" : "False");
    } else {
      value->set_repr(LongRepr(digits, static_cast<int>(l_.long_shift), negative));
    }
  } else if (type == "float") {
    ASSIGN_OR_RETURN(double d, Get<double>(object + l_.float_value));
    value->set_repr(FloatRepr(d));
  } else if (type == "str") {
    std::vector<uint32_t> points;
    int64_t length = 0;
    RETURN_IF_ERROR(ReadCodePoints(object, limits_.max_string, &points, &length));
    value->set_repr(StrRepr(points));
    value->set_length(length);
    value->set_truncated(length > limits_.max_string);
  } else if (type == "bytes") {
    int64_t length = 0;
    ASSIGN_OR_RETURN(std::string data, ReadBytes(object, limits_.max_string, &length));
    value->set_repr(BytesRepr(data));
    value->set_length(length);
    value->set_truncated(length > limits_.max_string);
  } else if (type == "list" || type == "tuple") {
    ASSIGN_OR_RETURN(int64_t size, Get<int64_t>(object + l_.var_size));
    value->set_length(size);
  } else if (type == "dict") {
    ASSIGN_OR_RETURN(int64_t used, Get<int64_t>(object + l_.dict_used));
    value->set_length(used);
  } else if (type == "set" || type == "frozenset") {
    ASSIGN_OR_RETURN(int64_t used, Get<int64_t>(object + l_.set_used));
    value->set_length(used);
  }
  return absl::OkStatus();
}

absl::Status Walker::ReadLocals(uint64_t slots, const CodeInfo& code, pb::PythonFrame* frame) {
  for (size_t i = 0; i < code.names.size(); ++i) {
    uint8_t kind = i < code.kinds.size() ? static_cast<uint8_t>(code.kinds[i]) : 0;
    if (!code.kinds.empty() && (kind & (l_.co_fast_local | l_.co_fast_cell)) == 0) {
      continue;  // a free variable: the enclosing function's local
    }
    ASSIGN_OR_RETURN(uint64_t object, Ptr(slots + 8 * i));
    if (object == 0) continue;  // not bound yet (or deleted)
    if (!code.kinds.empty() && (kind & l_.co_fast_cell) != 0) {
      ASSIGN_OR_RETURN(std::string type, TypeName(object));
      if (type == "cell") {
        ASSIGN_OR_RETURN(object, Field(object, l_.cell_ref));
        if (object == 0) continue;
      }
    }
    pb::PythonLocal* local = frame->add_locals();
    local->set_name(code.names[i]);
    local->set_is_argument(static_cast<int>(i) < code.arguments);
    RETURN_IF_ERROR(ReadValue(object, local->mutable_value()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Walker::GilHolder(uint64_t interp) {
  if (l_.runtime_tstate_current >= 0) {  // <= 3.11: gilstate.tstate_current
    return Ptr(w_.runtime + l_.runtime_tstate_current);
  }
  ASSIGN_OR_RETURN(uint64_t gil, Field(interp, l_.interp_gil_pointer));
  if (gil == 0) return 0;
  ASSIGN_OR_RETURN(int32_t locked, Get<int32_t>(gil + l_.gil_locked));
  if (locked == 0) return 0;
  return Field(gil, l_.gil_last_holder);
}

absl::Status Walker::WalkThread(uint64_t tstate, bool locals, pb::PythonThread* thread,
                                std::vector<uint64_t>* signature, uint64_t outermost[2],
                                EvalEntries* entries) {
  outermost[0] = outermost[1] = 0;
  ASSIGN_OR_RETURN(uint64_t ident, Field(tstate, l_.tstate_thread_id));
  thread->set_thread_ident(ident);
  if (l_.tstate_native_thread_id >= 0) {
    ASSIGN_OR_RETURN(uint64_t tid, Field(tstate, l_.tstate_native_thread_id));
    thread->set_tid(static_cast<int32_t>(tid));
  } else if (w_.pthread_tid_offset >= 0 && ident != 0) {
    // pthread_t is glibc's struct pthread; its tid field is where glibc's
    // own _thread_db_pthread_tid descriptor says.
    absl::StatusOr<int32_t> tid = Get<int32_t>(ident + w_.pthread_tid_offset);
    if (tid.ok()) thread->set_tid(*tid);
  }
  uint64_t frame;
  if (l_.tstate_frame >= 0) {
    ASSIGN_OR_RETURN(frame, Field(tstate, l_.tstate_frame));
  } else if (l_.tstate_cframe >= 0) {
    ASSIGN_OR_RETURN(uint64_t cframe, Field(tstate, l_.tstate_cframe));
    frame = 0;
    if (cframe != 0) {
      ASSIGN_OR_RETURN(frame, Field(cframe, l_.cframe_current_frame));
    }
  } else {
    ASSIGN_OR_RETURN(frame, Field(tstate, l_.tstate_current_frame));
  }
  signature->push_back(tstate);
  std::vector<pb::PythonFrame> frames;  // innermost first, as walked
  EvalEntries starts;                   // the same
  for (int depth = 0; frame != 0; ++depth) {
    if (depth >= limits_.max_frames) return Torn("a frame chain does not end");
    ASSIGN_OR_RETURN(uint64_t back, Field(frame, l_.frame_back));
    if (l_.frame_owned_by_cstack >= 0) {
      ASSIGN_OR_RETURN(uint8_t owner, Get<uint8_t>(frame + l_.frame_owner));
      if (owner == l_.frame_owned_by_cstack) {
        // A shim the evaluation loop pushes under the first frame each of
        // its C calls runs (3.12+).
        if (!starts.empty()) starts.back() = true;
        frame = back;
        continue;
      }
    }
    bool starts_call = l_.frame_owned_by_cstack < 0;  // <= 3.10: one call per frame
    if (l_.frame_is_entry >= 0) {  // 3.11
      ASSIGN_OR_RETURN(uint8_t is_entry, Get<uint8_t>(frame + l_.frame_is_entry));
      starts_call = is_entry != 0;
    }
    ASSIGN_OR_RETURN(uint64_t code_address, Field(frame, l_.frame_code));
    ASSIGN_OR_RETURN(CodeInfo* code, Code(code_address));
    signature->push_back(frame);
    signature->push_back(code_address);
    int line;
    if (l_.frame_lasti >= 0) {
      ASSIGN_OR_RETURN(int32_t lasti, Get<int32_t>(frame + l_.frame_lasti));
      line = l_.minor <= 9 ? LineFromLnotab(code->line_table, code->first_line, lasti)
                           : LineFromLinetable310(code->line_table, code->first_line,
                                                  lasti < 0 ? -1 : lasti * 2);
    } else {
      ASSIGN_OR_RETURN(uint64_t instr, Field(frame, l_.frame_instr));
      const int64_t offset =
          static_cast<int64_t>(instr - (code_address + l_.code_code_adaptive));
      line = offset < -2 || offset > (int64_t{1} << 30)
                 ? -1
                 : LineFromLocationTable(code->line_table, code->first_line,
                                         static_cast<int>(offset));
    }
    pb::PythonFrame out;
    out.set_function(code->function);
    out.set_file(code->file);
    out.set_line(line);
    if (locals) {
      if (!code->names_read) RETURN_IF_ERROR(ReadNames(code_address, code));
      RETURN_IF_ERROR(ReadLocals(frame + l_.frame_localsplus, *code, &out));
    }
    frames.push_back(std::move(out));
    starts.push_back(starts_call);
    outermost[0] = frame;
    outermost[1] = code_address;
    frame = back;
  }
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    *thread->add_frames() = std::move(*it);
  }
  entries->assign(starts.rbegin(), starts.rend());
  return absl::OkStatus();
}

std::string Walker::ThreadName(uint64_t frame, uint64_t code) {
  if (frame == 0) return "";
  auto info = codes_.find(code);
  if (info == codes_.end()) return "";
  const std::string& function = info->second.function;
  // <= 3.10 name the function, 3.11+ qualify it; subclasses of Thread run
  // the same method.
  if ((function != "_bootstrap" && function != "Thread._bootstrap") ||
      !absl::EndsWith(info->second.file, "threading.py")) {
    return "";  // not started by threading (e.g. _thread.start_new_thread)
  }
  absl::StatusOr<std::string> name = ReadThreadName(frame);
  return name.ok() ? *std::move(name) : "";
}

absl::StatusOr<std::string> Walker::ReadThreadName(uint64_t frame) {
  // _bootstrap(self): its first local slot is the Thread.
  ASSIGN_OR_RETURN(uint64_t self, Ptr(frame + l_.frame_localsplus));
  if (self == 0) return "";
  ASSIGN_OR_RETURN(uint64_t name, Attribute(self, "_name"));
  return ReadName(name);
}

absl::StatusOr<std::string> Walker::ReadName(uint64_t object) {
  if (object == 0) return "";
  ASSIGN_OR_RETURN(std::string type, TypeName(object));
  if (type != "str") return "";
  std::vector<uint32_t> points;
  int64_t length = 0;
  RETURN_IF_ERROR(ReadCodePoints(object, limits_.max_string, &points, &length));
  return Utf8(points);
}

std::string Walker::MainThreadName(uint64_t interp) {
  absl::StatusOr<std::string> name = ReadMainThreadName(interp);
  return name.ok() && !name->empty() ? *std::move(name) : "MainThread";
}

absl::StatusOr<std::string> Walker::ReadMainThreadName(uint64_t interp) {
  if (l_.interp_modules < 0 || l_.module_dict < 0) return "";
  ASSIGN_OR_RETURN(uint64_t modules, Field(interp, l_.interp_modules));
  ASSIGN_OR_RETURN(uint64_t threading, DictItem(modules, "threading"));
  if (threading == 0) return "";  // not imported: nobody renamed anything
  ASSIGN_OR_RETURN(std::string type, TypeName(threading));
  if (type != "module") return "";
  ASSIGN_OR_RETURN(uint64_t globals, Field(threading, l_.module_dict));
  ASSIGN_OR_RETURN(uint64_t thread, DictItem(globals, "_main_thread"));
  if (thread == 0) return "";
  ASSIGN_OR_RETURN(uint64_t name, Attribute(thread, "_name"));
  return ReadName(name);
}

absl::StatusOr<uint64_t> Walker::Attribute(uint64_t object, absl::string_view name) {
  ASSIGN_OR_RETURN(uint64_t type, Field(object, l_.object_type));
  ASSIGN_OR_RETURN(uint64_t flags, Field(type, l_.type_flags));
  uint64_t dict = 0;
  if (l_.tpflags_managed_dict >= 0 && (flags & l_.tpflags_managed_dict) != 0) {
    // 3.11+: the attributes live in a values array keyed by the class's
    // shared keys until something asks for __dict__; then in a dict.
    uint64_t values = 0;
    if (l_.minor == 11) {
      ASSIGN_OR_RETURN(values, Ptr(object + l_.object_managed_values));
    } else if (l_.minor == 12) {  // one word: the dict, or the values - 1
      ASSIGN_OR_RETURN(uint64_t word, Ptr(object + l_.object_managed_dict));
      if ((word & 1) != 0) values = word + 1;
    } else if (l_.tpflags_inline_values >= 0 && (flags & l_.tpflags_inline_values) != 0) {
      ASSIGN_OR_RETURN(int64_t basicsize, Get<int64_t>(type + l_.type_basicsize));
      if (basicsize <= 0 || basicsize > 4096) return Torn("implausible tp_basicsize");
      ASSIGN_OR_RETURN(uint8_t valid, Get<uint8_t>(object + basicsize + l_.values_valid));
      if (valid != 0) values = object + basicsize;
    }
    if (values != 0) {
      ASSIGN_OR_RETURN(uint64_t keys, Field(type, l_.heaptype_cached_keys));
      if (keys == 0) return 0;
      return LookUp(keys, values + l_.values_values, name);
    }
    ASSIGN_OR_RETURN(dict, Ptr(object + l_.object_managed_dict));  // or none yet
  } else {
    ASSIGN_OR_RETURN(int64_t offset, Get<int64_t>(type + l_.type_dictoffset));
    if (offset <= 0 || offset > 4096) return 0;  // no __dict__ at a fixed place
    ASSIGN_OR_RETURN(dict, Ptr(object + offset));
  }
  return DictItem(dict, name);
}

absl::StatusOr<uint64_t> Walker::DictItem(uint64_t dict, absl::string_view name) {
  if (dict == 0) return 0;
  ASSIGN_OR_RETURN(std::string type_name, TypeName(dict));
  if (type_name != "dict") return Torn("expected a dict, found " + type_name);
  ASSIGN_OR_RETURN(uint64_t keys, Field(dict, l_.dict_keys));
  ASSIGN_OR_RETURN(uint64_t values, Field(dict, l_.dict_values));
  if (values != 0 && l_.values_values >= 0) values += l_.values_values;
  return LookUp(keys, values, name);
}

absl::StatusOr<uint64_t> Walker::LookUp(uint64_t keys, uint64_t values, absl::string_view name) {
  ASSIGN_OR_RETURN(int64_t entries, Get<int64_t>(keys + l_.keys_nentries));
  constexpr int64_t kMaxEntries = 4096;  // far more than any Thread has
  if (entries < 0 || entries > kMaxEntries) return Torn("implausible dict size");
  int64_t index_bytes;
  bool unicode = false;
  if (l_.keys_size >= 0) {  // <= 3.10: dk_size slots of 1, 2, 4 or 8 bytes
    ASSIGN_OR_RETURN(int64_t size, Get<int64_t>(keys + l_.keys_size));
    if (size <= 0 || size > (int64_t{1} << 20) || (size & (size - 1)) != 0) {
      return Torn("implausible dict keys size");
    }
    index_bytes = size * (size <= 0xff ? 1 : size <= 0xffff ? 2 : 4);
  } else {
    ASSIGN_OR_RETURN(uint8_t log2_bytes, Get<uint8_t>(keys + l_.keys_log2_index_bytes));
    if (log2_bytes > 24) return Torn("implausible dict keys size");
    index_bytes = int64_t{1} << log2_bytes;
    ASSIGN_OR_RETURN(uint8_t kind, Get<uint8_t>(keys + l_.keys_kind));
    unicode = kind != 0;  // DICT_KEYS_UNICODE or DICT_KEYS_SPLIT: str keys only
  }
  const int64_t size = unicode ? l_.unicode_entry_size : l_.entry_size;
  const int64_t key_at = unicode ? l_.unicode_entry_key : l_.entry_key;
  const int64_t value_at = unicode ? l_.unicode_entry_value : l_.entry_value;
  std::string table(entries * size, '\0');
  RETURN_IF_ERROR(m_.Read(keys + l_.keys_indices + index_bytes, table.data(), table.size()));
  for (int64_t i = 0; i < entries; ++i) {
    uint64_t key, value;
    std::memcpy(&key, table.data() + i * size + key_at, 8);
    std::memcpy(&value, table.data() + i * size + value_at, 8);
    if (key == 0) continue;  // a deleted entry
    auto text = keys_text_.find(key);
    if (text == keys_text_.end()) {
      // Most keys of a big dict (sys.modules) differ in length: their text
      // is not read then. (Any object has the bytes read; a non-str's are
      // simply not a match.)
      ASSIGN_OR_RETURN(int64_t key_length, Get<int64_t>(key + l_.unicode_length));
      if (key_length != static_cast<int64_t>(name.size())) continue;
      ASSIGN_OR_RETURN(std::string type, TypeName(key));
      std::string key_text;
      if (type == "str") {
        ASSIGN_OR_RETURN(key_text, ReadText(key));
      }
      text = keys_text_.emplace(key, std::move(key_text)).first;
    }
    if (text->second != name) continue;
    if (values == 0) return value;
    return Ptr(values + 8 * i);
  }
  return 0;
}

absl::Status Walker::Walk(bool locals, std::vector<pb::PythonThread>* threads,
                          std::vector<uint64_t>* signature,
                          std::vector<EvalEntries>* entries) {
  ASSIGN_OR_RETURN(uint64_t main_ident, Field(w_.runtime, l_.runtime_main_thread));
  ASSIGN_OR_RETURN(uint64_t interp, Field(w_.runtime, l_.runtime_interpreters_head));
  int thread_count = 0;
  for (int i = 0; interp != 0; ++i) {
    if (i >= limits_.max_interpreters) return Torn("the interpreter list does not end");
    ASSIGN_OR_RETURN(uint64_t holder, GilHolder(interp));
    ASSIGN_OR_RETURN(uint64_t tstate, Field(interp, l_.interp_threads_head));
    std::vector<pb::PythonThread> found;  // newest first
    std::vector<EvalEntries> found_entries;
    while (tstate != 0) {
      if (++thread_count > limits_.max_threads) return Torn("the thread list does not end");
      pb::PythonThread thread;
      uint64_t outermost[2];
      EvalEntries starts;
      RETURN_IF_ERROR(WalkThread(tstate, locals, &thread, signature, outermost, &starts));
      thread.set_holds_gil(tstate == holder);
      thread.set_is_main(i == 0 && thread.thread_ident() == main_ident);
      // The main thread does not run Thread._bootstrap: its Thread object
      // is threading's _main_thread (docs/python.md, "Thread names").
      thread.set_name(thread.is_main() ? MainThreadName(interp)
                                       : ThreadName(outermost[0], outermost[1]));
      found.push_back(std::move(thread));
      found_entries.push_back(std::move(starts));
      ASSIGN_OR_RETURN(tstate, Field(tstate, l_.tstate_next));
    }
    for (auto it = found.rbegin(); it != found.rend(); ++it) {
      threads->push_back(std::move(*it));
    }
    if (entries != nullptr) {
      entries->insert(entries->end(), found_entries.rbegin(), found_entries.rend());
    }
    ASSIGN_OR_RETURN(interp, Field(interp, l_.interp_next));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadPythonStacks(StackMemory& memory, const InterpreterAddresses& where,
                              bool locals, const StackLimits& limits,
                              std::vector<pb::PythonThread>* threads,
                              std::vector<uint64_t>* signature,
                              std::vector<EvalEntries>* entries) {
  Walker walker(memory, where, limits);
  return walker.Walk(locals, threads, signature, entries);
}

absl::Status ReadStacksConsistent(StackMemory& memory, const InterpreterAddresses& where,
                                  bool locals, const StackLimits& limits,
                                  std::vector<pb::PythonThread>* threads, int* retries,
                                  std::vector<EvalEntries>* entries) {
  *retries = 0;
  absl::Status last = absl::OkStatus();
  for (int attempt = 0; attempt < limits.attempts; ++attempt) {
    if (attempt > 0) ++*retries;
    threads->clear();
    if (entries != nullptr) entries->clear();
    std::vector<uint64_t> first, second;
    memory.Reset();
    last = ReadPythonStacks(memory, where, locals, limits, threads, &first, entries);
    if (absl::IsNotFound(last)) return last;
    if (!last.ok()) continue;
    // The chain again, from fresh pages: unchanged means what was read
    // belongs together.
    std::vector<pb::PythonThread> again;
    memory.Reset();
    last = ReadPythonStacks(memory, where, /*locals=*/false, limits, &again, &second);
    if (absl::IsNotFound(last)) return last;
    if (!last.ok()) continue;
    if (first == second) return absl::OkStatus();
    last = Torn("the frame chains changed during the read");
  }
  threads->clear();
  if (entries != nullptr) entries->clear();
  return absl::AbortedError(absl::StrCat("the Python stacks kept changing during ",
                                         limits.attempts, " reads (last: ",
                                         last.message(), "); try --consistent"));
}

}  // namespace procwarp::python
