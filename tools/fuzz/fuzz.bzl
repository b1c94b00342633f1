"""procwarp_fuzzer: a libFuzzer target and its smoke test (docs/fuzzing.md).

Under --config=fuzz (clang, see .bazelrc) the binary is a libFuzzer fuzzer;
in the normal gcc build (and --config=asan) it links
//tools/fuzz:standalone_main instead, which feeds the same entry point a
fixed set of pseudo-random inputs. The smoke test `<name>_smoke` runs the
binary either way: a few seconds of fuzzing under --config=fuzz, the
pseudo-random inputs otherwise.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary")

def procwarp_fuzzer(name, srcs, deps = [], seconds = 5, **kwargs):
    cc_binary(
        name = name,
        srcs = srcs,
        deps = deps + select({
            "//tools/fuzz:fuzzing": [],
            "//conditions:default": ["//tools/fuzz:standalone_main"],
        }),
        linkopts = select({
            "//tools/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = ["procwarp_fuzzer"],
        **kwargs
    )
    native.sh_test(
        name = name + "_smoke",
        size = "small",
        srcs = ["//tools/fuzz:smoke_test.sh"],
        args = ["$(location :%s)" % name, str(seconds)],
        data = [":" + name],
        tags = ["fuzz_smoke"],
    )
