#!/usr/bin/env bash
# Installs what is missing, builds procwarpd and the CLI, and runs the daemon in
# the foreground on its default socket (/run/procwarp/procwarpd.sock as root).
# Extra arguments go to procwarpd (e.g. --socket PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build //daemon:procwarpd //client/cli:procwarp //agent:procwarp-agent
exec bazel-bin/daemon/procwarpd "$@"
