// The state file parser refuses whatever is not a whole file of its version.
#include "daemon/restart/state_file.h"

#include <string>

#include "gtest/gtest.h"

namespace procwarp {
namespace {

procwarp::state::v1::DaemonState Sample() {
  procwarp::state::v1::DaemonState state;
  state.set_writer_pid(42);
  auto* record = state.add_processes();
  record->mutable_info()->set_id("abc");
  record->mutable_info()->set_pid(1234);
  record->mutable_info()->add_argv("/bin/true");
  record->set_start_time_ticks(99);
  record->set_stdout_pipe(true);
  return state;
}

TEST(StateFileTest, RoundTrips) {
  auto parsed = ParseStateFile(EncodeStateFile(Sample()));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->processes_size(), 1);
  EXPECT_EQ(parsed->processes(0).info().id(), "abc");
  EXPECT_EQ(parsed->processes(0).start_time_ticks(), 99u);
}

TEST(StateFileTest, PreEncodedRecordsAreProcessesEntries) {
  procwarp::state::v1::DaemonState header;
  header.set_writer_pid(7);
  std::vector<std::string> records;
  const procwarp::state::v1::DaemonState sample = Sample();
  for (const auto& record : sample.processes()) {
    records.push_back(record.SerializeAsString());
  }
  procwarp::state::v1::ProcessRecord long_record;  // a multi-byte length
  long_record.mutable_info()->add_argv(std::string(300, 'x'));
  records.push_back(long_record.SerializeAsString());
  auto parsed = ParseStateFile(EncodeStateFile(header, records));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->writer_pid(), 7);
  ASSERT_EQ(parsed->processes_size(), 2);
  EXPECT_EQ(parsed->processes(0).info().id(), "abc");
  EXPECT_EQ(parsed->processes(1).info().argv(0).size(), 300u);
}

TEST(StateFileTest, EveryTruncationIsRefused) {
  const std::string bytes = EncodeStateFile(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(ParseStateFile(bytes.substr(0, n)).ok()) << "length " << n;
  }
}

TEST(StateFileTest, EveryFlippedByteIsRefused) {
  const std::string bytes = EncodeStateFile(Sample());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string corrupt = bytes;
    corrupt[i] ^= 0x5a;
    EXPECT_FALSE(ParseStateFile(corrupt).ok()) << "byte " << i;
  }
}

TEST(StateFileTest, ForeignVersionIsFailedPrecondition) {
  std::string bytes = EncodeStateFile(Sample());
  bytes[8] = static_cast<char>(kStateFormatVersion + 1);
  auto parsed = ParseStateFile(bytes);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(parsed.status().message().find("version"), std::string::npos);
}

TEST(StateFileTest, GarbageIsRefused) {
  EXPECT_FALSE(ParseStateFile("").ok());
  EXPECT_FALSE(ParseStateFile(std::string(100, '\xff')).ok());
  EXPECT_FALSE(ParseStateFile("PWSTATE\nxx").ok());
}

}  // namespace
}  // namespace procwarp
