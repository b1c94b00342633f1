// See bootstrap.h.
#include "daemon/python/bootstrap.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace procwarp::python {
namespace {

// The body, run by exec() in its own dict with
// A = (fd, token_fd, code, eval, limit).
// Python 3.8+ syntax only.
constexpr absl::string_view kBody = R"PY(
def _run(fd, token_fd, code, is_eval, limit):
    import sys, os
    def send(data):
        if fd < 0:
            return
        while data:
            try:
                n = os.write(fd, data)
            except OSError:
                return
            data = data[n:]
    def cut(text):
        data = text.encode('utf-8', 'backslashreplace')
        if len(data) > limit:
            data = data[:limit] + b'\n[procwarp: %d bytes cut]' % (len(data) - limit)
        return data
    def text_of(e):
        try:
            return str(e)
        except BaseException:
            return '<str() failed>'
    def record(status, out='', err='', value='', etype='', emsg='', tb=''):
        parts = [cut(x) for x in (out, err, value, etype, emsg, tb)]
        send(b'R' + bytes([status]) +
             b''.join(len(p).to_bytes(4, 'big') + p for p in parts))
    try:
        if token_fd >= 0:
            try:
                os.set_blocking(token_fd, False)
                claimed = os.read(token_fd, 1) == b'G'
            except OSError:
                claimed = False
            finally:
                os.close(token_fd)
            if not claimed:
                send(b'W')
                return
        send(b'S')
        try:
            sys.audit('procwarp.remote_exec', code)
        except BaseException as e:
            record(2, etype=type(e).__name__, emsg=text_of(e))
            return
        import io
        out, err = io.StringIO(), io.StringIO()
        saved_out, saved_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        status, value, etype, emsg, tb = 0, '', '', '', ''
        try:
            compiled = compile(code, '<procwarp>', 'eval' if is_eval else 'exec')
            result = eval(compiled, sys.modules['__main__'].__dict__)
            if is_eval:
                value = repr(result)
        except BaseException as e:
            status, etype, emsg = 1, type(e).__name__, text_of(e)
            try:
                import traceback
                tb = ''.join(traceback.format_exception(
                    type(e), e, e.__traceback__.tb_next if e.__traceback__ else None))
            except BaseException:
                tb = ''
        finally:
            if sys.stdout is out:
                sys.stdout = saved_out
            if sys.stderr is err:
                sys.stderr = saved_err
        record(status, out.getvalue(), err.getvalue(), value, etype, emsg, tb)
    except BaseException as e:
        try:
            record(3, emsg=repr(e))
        except BaseException:
            pass
    finally:
        if fd >= 0:
            try:
                os.close(fd)
            except BaseException:
                pass
_run(*A)
)PY";

constexpr size_t kFields = 6;

bool ReadField(absl::string_view& data, std::string* out) {
  if (data.size() < 4) return false;
  const uint32_t len = (static_cast<uint32_t>(static_cast<uint8_t>(data[0])) << 24) |
                       (static_cast<uint32_t>(static_cast<uint8_t>(data[1])) << 16) |
                       (static_cast<uint32_t>(static_cast<uint8_t>(data[2])) << 8) |
                       static_cast<uint32_t>(static_cast<uint8_t>(data[3]));
  data.remove_prefix(4);
  if (len > data.size()) return false;
  out->assign(data.data(), len);
  data.remove_prefix(len);
  return true;
}

}  // namespace

std::string PythonBytesLiteral(absl::string_view bytes) {
  std::string out = "b'";
  out.reserve(bytes.size() + 3);
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  out.push_back('\'');
  return out;
}

// Appended for pypy_entry (see bootstrap.h); binds no name either.
constexpr absl::string_view kPyPyEntryCleanup =
    "try:\n"
    "    __import__('builtins').exec(\"import sys\\n"
    "l = getattr(sys, '_pypy_execute_source', None)\\n"
    "if isinstance(l, list):\\n"
    "    l[:] = [d for d in l if d is not G]\\n"
    "    if not l:\\n"
    "        del sys._pypy_execute_source\\n\", {'G': globals()})\n"
    "except BaseException:\n"
    "    pass\n";

std::string BuildBootstrap(absl::string_view code, bool eval, int result_fd,
                           int token_fd, size_t field_limit, bool pypy_entry) {
  const std::string fd = absl::StrCat(result_fd);
  const std::string token = absl::StrCat(token_fd);
  // The top level runs in __main__'s globals: it binds no name and cannot
  // raise (see bootstrap.h).
  return absl::StrCat(
      "try:\n"
      "    __import__('builtins').exec(", PythonBytesLiteral(kBody),
      ", {'A': (", fd, ", ", token, ", ", PythonBytesLiteral(code), ".decode('utf-8', "
      "'surrogateescape'), ", eval ? "True" : "False", ", ", field_limit, ")})\n"
      "except BaseException:\n"
      "    try:\n"
      "        if ", token, " >= 0:\n"
      "            __import__('os').close(", token, ")\n"
      "    except BaseException:\n"
      "        pass\n"
      "    try:\n"
      "        if ", fd, " >= 0:\n"
      "            __import__('os').write(", fd, ", b'X')\n"
      "            __import__('os').close(", fd, ")\n"
      "    except BaseException:\n"
      "        pass\n",
      pypy_entry ? kPyPyEntryCleanup : "");
}

bool RecordStarted(absl::string_view data) { return !data.empty() && data[0] == 'S'; }
bool RecordWithdrawn(absl::string_view data) { return !data.empty() && data[0] == 'W'; }

absl::StatusOr<Record> ParseRecord(absl::string_view data) {
  Record record;
  if (!data.empty() && data[0] == 'X') {
    record.status = RecordStatus::kRefused;
    return record;
  }
  if (data.size() < 3 || data[0] != 'S' || data[1] != 'R') {
    return absl::DataLossError(absl::StrCat(
        "the target sent no complete result (", data.size(), " bytes)"));
  }
  const uint8_t status = static_cast<uint8_t>(data[2]);
  if (status > static_cast<uint8_t>(RecordStatus::kInternal)) {
    return absl::DataLossError(absl::StrCat("unknown result status ", status));
  }
  record.status = static_cast<RecordStatus>(status);
  data.remove_prefix(3);
  std::string* fields[kFields] = {&record.stdout_text,     &record.stderr_text,
                                  &record.value_repr,      &record.exception_type,
                                  &record.exception_message, &record.traceback};
  for (std::string* field : fields) {
    if (!ReadField(data, field)) {
      return absl::DataLossError("the target's result record is truncated");
    }
  }
  return record;
}

}  // namespace procwarp::python
