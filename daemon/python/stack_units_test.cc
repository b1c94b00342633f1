// Unit tests of the pure parts of the Python stack reader: value reprs, line
// tables, the layout table and _Py_DebugOffsets checks. The reader against
// real interpreters is tests/integration/python_stack_test.cc.
#include <cstring>
#include <vector>

#include "daemon/python/layout.h"
#include "daemon/python/stack_lines.h"
#include "daemon/python/stack_target.h"
#include "daemon/python/stack_values.h"
#include "gtest/gtest.h"

namespace procwarp::python {
namespace {

TEST(FloatRepr, MatchesPython) {
  EXPECT_EQ(FloatRepr(1.0), "1.0");
  EXPECT_EQ(FloatRepr(0.1), "0.1");
  EXPECT_EQ(FloatRepr(-2.5), "-2.5");
  EXPECT_EQ(FloatRepr(3.14159), "3.14159");
  EXPECT_EQ(FloatRepr(1e16), "1e+16");
  EXPECT_EQ(FloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(FloatRepr(0.0001), "0.0001");
  EXPECT_EQ(FloatRepr(0.00001), "1e-05");
  EXPECT_EQ(FloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(FloatRepr(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(FloatRepr(0.0), "0.0");
  EXPECT_EQ(FloatRepr(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FloatRepr(1e308 * 10), "inf");
}

TEST(LongRepr, DigitsOf30Bits) {
  EXPECT_EQ(LongRepr({}, 30, false), "0");
  EXPECT_EQ(LongRepr({42}, 30, false), "42");
  EXPECT_EQ(LongRepr({7}, 30, true), "-7");
  // 2**30 + 5 and 2**90.
  EXPECT_EQ(LongRepr({5, 1}, 30, false), "1073741829");
  EXPECT_EQ(LongRepr({0, 0, 0, 1}, 30, false), "1237940039285380274899124224");
}

TEST(StrRepr, QuotesAndEscapes) {
  auto points = [](const char* s) {
    std::vector<uint32_t> out;
    for (; *s; ++s) out.push_back(static_cast<uint8_t>(*s));
    return out;
  };
  EXPECT_EQ(StrRepr(points("hello")), "'hello'");
  EXPECT_EQ(StrRepr(points("it's")), "\"it's\"");
  EXPECT_EQ(StrRepr(points("a'b\"c")), "'a\\'b\"c'");
  EXPECT_EQ(StrRepr(points("x\ny\t\\")), "'x\\ny\\t\\\\'");
  EXPECT_EQ(StrRepr(std::vector<uint32_t>{0x1, 0xe9, 0x4e2d}), "'\\x01\xc3\xa9\xe4\xb8\xad'");
  EXPECT_EQ(Utf8(std::vector<uint32_t>{'a', 0xD800}), "a\xef\xbf\xbd");
}

TEST(BytesRepr, Escapes) {
  EXPECT_EQ(BytesRepr(std::string("ab\x00\xff'", 5)), "b\"ab\\x00\\xff'\"");
  EXPECT_EQ(BytesRepr("x\n"), "b'x\\n'");
}

TEST(Lines, Lnotab) {
  // def f():      line 10
  //   a = 1       line 11: bytes 0..3
  //   b = 2       line 12: bytes 4..
  const std::string lnotab("\x00\x01\x04\x01", 4);
  EXPECT_EQ(LineFromLnotab(lnotab, 10, 0), 11);
  EXPECT_EQ(LineFromLnotab(lnotab, 10, 2), 11);
  EXPECT_EQ(LineFromLnotab(lnotab, 10, 6), 12);
}

TEST(Lines, Linetable310) {
  // Bytes 0-1: line 1 (first+0), 2-5: no line, 6-9: line 3.
  const std::string table("\x02\x00\x04\x80\x04\x02", 6);
  EXPECT_EQ(LineFromLinetable310(table, 1, 0), 1);
  EXPECT_EQ(LineFromLinetable310(table, 1, 4), -1);
  EXPECT_EQ(LineFromLinetable310(table, 1, 8), 3);
  EXPECT_EQ(LineFromLinetable310(table, 1, 20), -1);  // past the table
  EXPECT_EQ(LineFromLinetable310(table, 1, -1), 1);
}

TEST(Lines, LocationTable) {
  // 1 unit "one line, +1" (code 11), 2 units "no columns, +2" (code 13,
  // svarint 4), 1 unit "none" (code 15), 3 units short form (code 0).
  const std::string table(
      "\xd8\x00\x00"   // 1 0 1011 000: one-line +1, two column bytes
      "\xe9\x04"       // 1 1101 001: no columns, line delta svarint(4) = +2
      "\xf8"           // 1 1111 000: no location
      "\x82\x00",      // 1 0000 010: short form, same line
      8);
  EXPECT_EQ(LineFromLocationTable(table, 5, 0), 6);
  EXPECT_EQ(LineFromLocationTable(table, 5, 2), 8);
  EXPECT_EQ(LineFromLocationTable(table, 5, 4), 8);
  EXPECT_EQ(LineFromLocationTable(table, 5, 6), -1);
  EXPECT_EQ(LineFromLocationTable(table, 5, 8), 8);
  EXPECT_EQ(LineFromLocationTable(table, 5, 12), 8);
  EXPECT_EQ(LineFromLocationTable(table, 5, 14), -1);  // past the table
  EXPECT_EQ(LineFromLocationTable(std::string("\x01", 1), 5, 0), -1);  // torn
}

TEST(Layout, EverySupportedMinor) {
  for (int minor = 8; minor <= 13; ++minor) {
    const CPythonLayout* layout = FindCPythonLayout(minor);
    ASSERT_NE(layout, nullptr) << "3." << minor;
    EXPECT_EQ(layout->long_shift, 30);
    EXPECT_EQ(layout->frames_are_objects(), minor <= 10);
    EXPECT_EQ(layout->debug_offsets_size > 0, minor >= 13);
  }
  EXPECT_EQ(FindCPythonLayout(7), nullptr);
  EXPECT_EQ(FindCPythonLayout(14), nullptr);
}

TEST(Layout, DebugOffsetsAreChecked) {
  CPythonLayout layout = *FindCPythonLayout(13);
  std::vector<uint8_t> raw(layout.debug_offsets_size, 0);
  EXPECT_FALSE(ApplyDebugOffsets(raw, 0x030D00F0, &layout).ok());  // no cookie
  std::memcpy(raw.data(), "xdebugpy", 8);
  uint64_t version = 0x030C00F0;  // 3.12 offsets in a 3.13
  std::memcpy(raw.data() + layout.dbg_version, &version, 8);
  EXPECT_FALSE(ApplyDebugOffsets(raw, 0x030D00F0, &layout).ok());
  version = 0x030D00F0;
  std::memcpy(raw.data() + layout.dbg_version, &version, 8);
  uint64_t frame_back = 1234;
  std::memcpy(raw.data() + layout.dbg_frame_back, &frame_back, 8);
  ASSERT_TRUE(ApplyDebugOffsets(raw, 0x030D00F0, &layout).ok());
  EXPECT_EQ(layout.frame_back, 1234);
  uint64_t huge = uint64_t{1} << 40;
  std::memcpy(raw.data() + layout.dbg_code_name, &huge, 8);
  EXPECT_FALSE(ApplyDebugOffsets(raw, 0x030D00F0, &layout).ok());
}

TEST(Version, FromHex) {
  EXPECT_EQ(VersionFromHex(0x030B02F0), "3.11.2");
  EXPECT_EQ(VersionFromHex(0x030D00C1), "3.13.0rc1");
}

}  // namespace
}  // namespace procwarp::python
