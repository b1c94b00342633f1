"""cc_grpc_proto: protoc + grpc_cpp_plugin from Debian, as a genrule + cc_library."""

def cc_grpc_proto(name, srcs, deps = [], grpc = True, visibility = None):
    """Compiles .proto files to C++ (and gRPC stubs when grpc=True).

    srcs are relative to this package; protoc runs from the workspace root, so
    imports name full paths (`import "proto/procwarp/v1/common.proto";`) and
    generated headers are included the same way
    (`#include "proto/procwarp/v1/common.pb.h"`).
    deps are other cc_grpc_proto targets whose .proto files are imported.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [d + "_protos" for d in deps],
    )
    grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin " if grpc else ""
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_protos" for d in deps],
        outs = outs,
        cmd = "protoc -I. --cpp_out=$(GENDIR) " + grpc_flags +
              " ".join(["$(location %s)" % s for s in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpc"],
        visibility = visibility,
    )
