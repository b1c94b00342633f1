// The driver of a fuzz target in builds without libFuzzer (gcc, the normal
// and --config=asan builds): feeds LLVMFuzzerTestOneInput the files named on
// the command line, then a fixed sequence of pseudo-random inputs, so every
// `bazel test` runs each fuzz target's checks on hostile bytes. Arguments
// starting with '-' (libFuzzer's flags) are ignored; see docs/fuzzing.md.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

constexpr int kRandomInputs = 3000;
constexpr size_t kMaxRandomSize = 512;

void RunFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    // A libFuzzer corpus directory (or nothing): no file to replay.
    if (!std::filesystem::is_regular_file(argv[i])) continue;
    RunFile(argv[i]);
    ++files;
  }
  // Fixed seed: a failure here reproduces run after run.
  std::mt19937_64 random(20261201);
  std::vector<uint8_t> input;
  for (int n = 0; n < kRandomInputs; ++n) {
    input.resize(random() % kMaxRandomSize);
    // Mostly small values, as protobuf tags and lengths are.
    for (uint8_t& byte : input) {
      byte = static_cast<uint8_t>(random() % 4 == 0 ? random() : random() % 64);
    }
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("standalone fuzz driver: %d files and %d pseudo-random inputs, "
              "no crash\n", files, kRandomInputs);
  return 0;
}
