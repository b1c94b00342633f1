// Unit tests of the pure parts of the Python stack reader: value reprs, line
// tables, the layout table and _Py_DebugOffsets checks, merging native
// frames. The reader against real interpreters is
// tests/integration/python_stack_test.cc.
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "daemon/python/layout.h"
#include "daemon/python/native_merge.h"
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

namespace pb = snapshots::v1;

pb::PythonFrame Frame(const std::string& function, bool native) {
  pb::PythonFrame frame;
  frame.set_function(function);
  frame.set_is_native(native);
  return frame;
}

std::vector<pb::PythonFrame> Frames(std::initializer_list<const char*> names, bool native) {
  std::vector<pb::PythonFrame> out;
  for (const char* name : names) out.push_back(Frame(name, native));
  return out;
}

std::vector<std::string> Names(const std::vector<pb::PythonFrame>& frames) {
  std::vector<std::string> out;
  for (const pb::PythonFrame& f : frames) out.push_back(f.function());
  return out;
}

TEST(MergeNativeFrames, OneLoopFramePerPythonFrameUpTo310) {
  auto python = Frames({"<module>", "outer", "inner"}, false);
  auto native = Frames({"main", "_PyEval_EvalFrameDefault", "call", "_PyEval_EvalFrameDefault",
                        "call", "_PyEval_EvalFrameDefault", "time_sleep", "clock_nanosleep"},
                       true);
  auto merged = MergeNativeFrames(python, {true, true, true}, native);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(Names(*merged), (std::vector<std::string>{"main", "<module>", "call", "outer", "call",
                                                      "inner", "time_sleep",
                                                      "clock_nanosleep"}));
  EXPECT_FALSE((*merged)[1].is_native());
  EXPECT_TRUE((*merged)[2].is_native());
}

TEST(MergeNativeFrames, OneLoopFrameRunsSeveralPythonFramesFrom311) {
  // <module> calls outer and inner inline; inner calls a C function that
  // calls back into Python (callback: a second C call of the loop).
  auto python = Frames({"<module>", "outer", "inner", "callback"}, false);
  auto native = Frames({"main", "_PyEval_EvalFrameDefault.cold", "builtin",
                        "_PyEval_EvalFrameDefault", "read"},
                       true);
  auto merged = MergeNativeFrames(python, {true, false, false, true}, native);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(Names(*merged), (std::vector<std::string>{"main", "<module>", "outer", "inner",
                                                      "builtin", "callback", "read"}));
}

TEST(MergeNativeFrames, MismatchesAreRefusedWithTheReason) {
  auto python = Frames({"<module>", "inner"}, false);
  // A stripped interpreter: the loop has no symbol.
  auto merged = MergeNativeFrames(python, {true, true}, Frames({"main", "", "", "read"}, true));
  ASSERT_FALSE(merged.ok());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(merged.status().message().find("0 frames of the evaluation loop"),
            std::string::npos)
      << merged.status();
  // The outermost Python frame must start a call.
  EXPECT_FALSE(MergeNativeFrames(python, {false, true},
                                 Frames({"_PyEval_EvalFrameDefault"}, true))
                   .ok());
  // No Python frames, no loop frames: the native stack as it is.
  auto bare = MergeNativeFrames({}, {}, Frames({"start_thread", "poll"}, true));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(Names(*bare), (std::vector<std::string>{"start_thread", "poll"}));
  EXPECT_TRUE(IsEvalLoop("_PyEval_EvalFrameDefault"));
  EXPECT_FALSE(IsEvalLoop("_PyEval_EvalFrameDefaultX"));
  EXPECT_FALSE(IsEvalLoop("PyEval_EvalFrame"));
}

}  // namespace
}  // namespace procwarp::python
