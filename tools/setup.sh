#!/usr/bin/env bash
# Installs what procwarp needs to build, run and test on Debian 12 (as root),
# from Debian's packages only. Idempotent: does nothing when all is present.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-rules-java bazel-platforms gcc g++ python3
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev libsystemd-dev libgtest-dev libgmock-dev libcli11-dev
  # ELF symbol lookup in attached targets (daemon/exec)
  libelf-dev libdw-dev
  # the fuzz build (--config=fuzz, docs/fuzzing.md): clang and its libFuzzer
  # and sanitizer runtimes
  clang libclang-rt-dev
  # tests: unit verification, the real-systemd container test, and a daemon
  # confined by seccomp
  systemd debootstrap debian-archive-keyring systemd-container zstd procps
  util-linux libseccomp-dev
  # remote callers: TLS in the daemon and client diagnostics (libssl-dev),
  # certificates made by deploy/tls (openssl), the Kubernetes manifest
  # check (python3-yaml), network namespaces for multi-host tests (iproute2)
  libssl-dev openssl python3-yaml iproute2
  # the Python client (client/python): grpcio and protobuf at run time (the
  # stubs are generated with protoc's grpc_python_plugin from
  # protobuf-compiler-grpc), pytest for its tests
  python3-grpcio python3-protobuf python3-pytest
  # Python remote exec targets (docs/python.md): PyPy 3.9
  pypy3
  # Debian CPython 3.11's headers, internal ones included: the source of
  # its stack-snapshot layout; pyelftools reads 3.8-3.10's dict keys layout
  # from their debug information (tools/python_layouts/README.md)
  libpython3.11-dev python3-pyelftools
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "procwarp setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
