// See stack_lines.h.
#include "daemon/python/stack_lines.h"

#include <cstdint>

namespace procwarp::python {
namespace {

// An address range with its line, walked forward through a table.
struct Range {
  int start = -1;
  int end = 0;
  int line = -1;
};

// Location-table entries (3.11+): the kind is bits 3-6 of the first byte.
constexpr int kLocationNone = 15;
constexpr int kLocationLong = 14;
constexpr int kLocationNoColumns = 13;
constexpr int kLocationOneLine0 = 10;

class Cursor {
 public:
  explicit Cursor(absl::string_view bytes) : bytes_(bytes) {}
  bool done() const { return pos_ >= bytes_.size(); }
  uint8_t Peek() const { return static_cast<uint8_t>(bytes_[pos_]); }
  uint8_t Next() { return done() ? 0 : static_cast<uint8_t>(bytes_[pos_++]); }
  // 6-bit groups, bit 6 set on all but the last.
  unsigned Varint() {
    unsigned read = Next();
    unsigned value = read & 63;
    unsigned shift = 0;
    while ((read & 64) != 0 && !done() && shift < 24) {
      read = Next();
      shift += 6;
      value |= (read & 63) << shift;
    }
    return value;
  }
  int SignedVarint() {
    unsigned value = Varint();
    return (value & 1) != 0 ? -static_cast<int>(value >> 1)
                            : static_cast<int>(value >> 1);
  }
  // Past the rest of a location entry: to the next byte with bit 7 set.
  void SkipToEntry() {
    while (!done() && (Peek() & 128) == 0) ++pos_;
  }

 private:
  absl::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

int LineFromLnotab(absl::string_view lnotab, int first_line, int offset) {
  int line = first_line;
  int address = 0;
  for (size_t i = 0; i + 1 < lnotab.size(); i += 2) {
    address += static_cast<uint8_t>(lnotab[i]);
    if (address > offset) break;
    line += static_cast<int8_t>(lnotab[i + 1]);
  }
  return line;
}

int LineFromLinetable310(absl::string_view table, int first_line, int offset) {
  if (offset < 0) return first_line;
  Range range;
  int computed = first_line;
  size_t i = 0;
  while (range.end <= offset) {
    // Zero-width ranges only carry line deltas.
    do {
      if (i + 1 >= table.size()) return -1;
      range.start = range.end;
      range.end += static_cast<uint8_t>(table[i]);
      int delta = static_cast<int8_t>(table[i + 1]);
      i += 2;
      if (delta == -128) {
        range.line = -1;
      } else {
        computed += delta;
        range.line = computed;
      }
    } while (range.start == range.end);
  }
  return range.line;
}

int LineFromLocationTable(absl::string_view table, int first_line, int offset) {
  if (offset < 0) return first_line;
  Cursor cursor(table);
  Range range;
  int computed = first_line;
  while (range.end <= offset) {
    if (cursor.done()) return -1;
    const uint8_t first = cursor.Next();
    if ((first & 128) == 0) return -1;  // not at an entry: a torn table
    const int kind = (first >> 3) & 15;
    range.start = range.end;
    range.end += ((first & 7) + 1) * 2;
    int delta = 0;
    if (kind == kLocationLong || kind == kLocationNoColumns) {
      delta = cursor.SignedVarint();
    } else if (kind >= kLocationOneLine0 && kind < kLocationNoColumns) {
      delta = kind - kLocationOneLine0;
    }
    if (kind == kLocationNone) {
      range.line = -1;
    } else {
      computed += delta;
      range.line = computed;
    }
    cursor.SkipToEntry();
  }
  return range.line;
}

}  // namespace procwarp::python
