#!/usr/bin/env bash
# Installs what is missing, builds procwarpd and the CLI, and runs the daemon in
# the foreground on its default socket (/run/procwarp/procwarpd.sock as root).
# Extra arguments go to procwarpd (e.g. --socket PATH). With the default
# socket the daemon keeps restart state in /run/procwarp/state and runs under
# its keeper process, so stopping or killing it and running this again loses
# no managed process (docs/architecture.md, "Restart without loss"); with
# --socket, pass --state_dir DIR for the same.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build //daemon:procwarpd //client/cli:procwarp //agent:procwarp-agent
exec bazel-bin/daemon/procwarpd "$@"
