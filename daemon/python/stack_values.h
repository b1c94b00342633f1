// How a stack snapshot prints the values of locals: exactly as Python's
// repr() would for int, float, str, bytes, bool and None, from the raw parts
// read out of the target (PyLong digits, the double, the code points, the
// bytes). Pure functions; the reader (stack_reader.h) does the reading.
#ifndef PROCWARP_DAEMON_PYTHON_STACK_VALUES_H_
#define PROCWARP_DAEMON_PYTHON_STACK_VALUES_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace procwarp::python {

// repr(float): the shortest text that reads back as the same double, in
// Python's style ("1.0", "0.1", "1e+16", "1.5e-07", "inf", "nan").
std::string FloatRepr(double value);

// repr(int) of the magnitude sum(digits[i] << (shift * i)) with a sign.
std::string LongRepr(absl::Span<const uint32_t> digits, int shift, bool negative);

// repr(str) of `code_points` ('...' or "..." as Python picks the quotes;
// control characters escaped).
std::string StrRepr(absl::Span<const uint32_t> code_points);

// The code points as UTF-8 (names and file paths, shown as they are).
std::string Utf8(absl::Span<const uint32_t> code_points);

// repr(bytes): b'...' with Python's escapes.
std::string BytesRepr(absl::string_view bytes);

}  // namespace procwarp::python

#endif  // PROCWARP_DAEMON_PYTHON_STACK_VALUES_H_
