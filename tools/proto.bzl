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

def _workspace_path(label):
    """"//proto:procwarp/v1/common.proto" -> "proto/procwarp/v1/common.proto"."""
    if not label.startswith("//") or ":" not in label:
        fail("py_grpc_proto: give srcs as //package:file.proto, not %s" % label)
    return label[2:].replace(":", "/")

def py_grpc_proto(name, srcs, strip_prefix = "proto/", prefix = "", visibility = None):
    """Compiles .proto files to Python modules and gRPC stubs (grpcio).

    Runs Debian's protoc with its grpc_python_plugin (no python3-grpc-tools).
    srcs are labels ("//proto:procwarp/v1/common.proto") of .proto files
    under `strip_prefix`; every file one of them imports must be among them.

    protoc names Python modules after the import path, and our protos import
    each other as "proto/procwarp/v1/common.proto", which would make the
    modules `proto.procwarp.v1.common_pb2`: a top-level `proto` package that
    clashes with other projects' (proto-plus). So the outputs go to the
    calling package with `strip_prefix` replaced by `prefix` in their paths
    (`procwarp/v1/common_pb2.py`), and the generated imports are rewritten to
    match (`from procwarp.v1 import common_pb2`): the Python modules follow
    the protobuf packages (procwarp.v1, procwarp.exec.v1), as googleapis'
    Python packages do. The descriptor pool keeps the .proto file names, so
    the wire format and reflection are unchanged. Empty __init__.py files are
    generated for every package directory below the first.

    Creates `name` (a filegroup of the generated .py files).
    """
    outs = []
    inits = {}
    scratch_files = []
    for src in srcs:
        path = _workspace_path(src)
        if not path.startswith(strip_prefix) or not path.endswith(".proto"):
            fail("%s is not a .proto file under %s" % (src, strip_prefix))
        base = prefix + path[len(strip_prefix):-len(".proto")]
        for suffix in ["_pb2.py", "_pb2_grpc.py"]:
            outs.append(base + suffix)
            scratch_files.append(path[:-len(".proto")] + suffix)
        parts = base.split("/")[:-1]
        for i in range(2, len(parts) + 1):
            inits["/".join(parts[:i]) + "/__init__.py"] = True

    # protoc writes to a scratch tree; each output is the scratch file with
    # its imports (and the module name it registers) rewritten. The grep
    # makes a generator change that adds another import form fail the build
    # rather than the import.
    old_module = strip_prefix.replace("/", ".").replace(".", "\\.")
    new_module = prefix.replace("/", ".")
    sed = ("sed -e 's/^from %s/from %s/' -e \"s/^\\(_builder\\..*\\)'%s/\\1'%s/\"" %
           (old_module, new_module, old_module, new_module))
    cmd = [
        "scratch=$(@D)/%s_scratch" % name,
        "rm -rf $$scratch && mkdir -p $$scratch",
        "protoc -I. --python_out=$$scratch --grpc_python_out=$$scratch " +
        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin " +
        " ".join(["$(location %s)" % s for s in srcs]),
    ]
    for scratch, out in zip(scratch_files, outs):
        cmd.append("%s $$scratch/%s > $(location %s)" % (sed, scratch, out))
        cmd.append("! grep -n '^\\(from\\|import\\) %s' $(location %s)" %
                   (old_module, out))
    for init in inits:
        cmd.append(": > $(location %s)" % init)
    cmd.append("rm -rf $$scratch")
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs + list(inits.keys()),
        cmd = " && ".join(cmd),
    )
    native.filegroup(
        name = name,
        srcs = outs + list(inits.keys()),
        visibility = visibility,
    )
