#!/usr/bin/env bash
# install.sh: installs a procwarp build on a host, or into a root directory
# (a package staging tree, a container root file system for tests):
#   binaries        /usr/local/bin/{procwarpd,procwarp}
#                   /usr/local/libexec/procwarp/procwarp-agent (if built)
#   systemd units   /usr/local/lib/systemd/system/procwarpd.{service,socket}
#   tmpfiles.d      /usr/local/lib/tmpfiles.d/procwarp.conf
#   sysusers.d      /usr/local/lib/sysusers.d/procwarp.conf
#   example config  /etc/procwarp/procwarpd.conf.example (never overwritten)
# /usr/local/lib/{systemd/system,tmpfiles.d,sysusers.d} are on systemd's
# search paths, so nothing under /usr or /etc owned by packages is touched.
#
# Usage: deploy/install.sh [--root DIR] [--bazel-bin DIR]
#                          [--procwarpd FILE] [--procwarp FILE] [--agent FILE]
#                          [--no-activate]
#   --root DIR       install below DIR instead of / (DESTDIR=DIR works too)
#   --bazel-bin DIR  where to take binaries not named explicitly
#                    (default: bazel-bin of the repository holding this script)
#   --procwarpd/--procwarp/--agent FILE   binaries to install
#   --no-activate    do not run systemd-sysusers/systemd-tmpfiles/daemon-reload
# The activation steps run only when installing into / on a host whose PID 1
# is systemd: they change the running system, which a staging tree has not.
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 1; }
note() { echo "install.sh: $*" >&2; }

# Data files (units, conf) sit beside this script. Use the unresolved path
# first: in Bazel runfiles the script is a symlink in a directory of symlinks.
self_dir=$(cd "$(dirname "$0")" && pwd)
[[ -f $self_dir/procwarpd.service ]] || self_dir=$(dirname "$(readlink -f "$0")")
repo_dir=$(dirname "$(readlink -f "$0")")/..

root=${DESTDIR:-}
bazel_bin=$repo_dir/bazel-bin
procwarpd= procwarp= agent= activate=1
while (($#)); do
  case $1 in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --bazel-bin) bazel_bin=${2:?}; shift 2 ;;
    --bazel-bin=*) bazel_bin=${1#*=}; shift ;;
    --procwarpd) procwarpd=${2:?}; shift 2 ;;
    --procwarpd=*) procwarpd=${1#*=}; shift ;;
    --procwarp) procwarp=${2:?}; shift 2 ;;
    --procwarp=*) procwarp=${1#*=}; shift ;;
    --agent) agent=${2:?}; shift 2 ;;
    --agent=*) agent=${1#*=}; shift ;;
    --no-activate) activate=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# An empty root or "/" means the live system.
root=${root%/}
if [[ -n $root ]]; then
  mkdir -p "$root" || die "cannot create root directory $root"
  root=$(cd "$root" && pwd)
  [[ $root == / ]] && root=
fi

procwarpd=${procwarpd:-$bazel_bin/daemon/procwarpd}
procwarp=${procwarp:-$bazel_bin/client/cli/procwarp}
agent_explicit=${agent:+1}
agent=${agent:-$bazel_bin/agent/procwarp-agent}

for f in "$procwarpd" "$procwarp"; do
  [[ -f $f && -x $f ]] || die "binary $f not found or not executable (build with: bazel build //daemon:procwarpd //client/cli:procwarp, or pass --procwarpd/--procwarp)"
done
if [[ ! -f $agent ]]; then
  # The agent is optional until it exists; naming one that is missing is an error.
  [[ -z $agent_explicit ]] || die "agent binary $agent not found"
  agent=
fi
for f in procwarpd.service procwarpd.socket tmpfiles.d/procwarp.conf \
         sysusers.d/procwarp.conf procwarpd.conf.example; do
  [[ -f $self_dir/$f ]] || die "missing $self_dir/$f"
done

# `install` unlinks the destination before writing, so a running daemon's
# binary can be replaced ("text file busy" cannot happen).
put() {  # put MODE SRC DST
  install -D -m "$1" "$2" "$root$3"
  note "installed $root$3"
}
put 0755 "$procwarpd" /usr/local/bin/procwarpd
put 0755 "$procwarp" /usr/local/bin/procwarp
if [[ -n $agent ]]; then
  put 0755 "$agent" /usr/local/libexec/procwarp/procwarp-agent
else
  note "no procwarp-agent built; skipped"
fi
put 0644 "$self_dir/procwarpd.service" /usr/local/lib/systemd/system/procwarpd.service
put 0644 "$self_dir/procwarpd.socket" /usr/local/lib/systemd/system/procwarpd.socket
put 0644 "$self_dir/tmpfiles.d/procwarp.conf" /usr/local/lib/tmpfiles.d/procwarp.conf
put 0644 "$self_dir/sysusers.d/procwarp.conf" /usr/local/lib/sysusers.d/procwarp.conf

# /etc belongs to the administrator: never replace what is there.
example=/etc/procwarp/procwarpd.conf.example
if [[ -e $root$example ]]; then
  cmp -s "$self_dir/procwarpd.conf.example" "$root$example" ||
    note "kept existing $root$example (differs from $self_dir/procwarpd.conf.example)"
else
  put 0644 "$self_dir/procwarpd.conf.example" "$example"
fi

# /run/systemd/system exists exactly when systemd is PID 1 (sd_booted(3)).
if ((activate)) && [[ -z $root && -d /run/systemd/system ]]; then
  systemd-sysusers /usr/local/lib/sysusers.d/procwarp.conf
  systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/procwarp.conf
  systemctl daemon-reload
  note "group procwarp and /run/procwarp created, systemd reloaded"
  note "enable with: systemctl enable --now procwarpd.socket"
  note "a running daemon keeps the old binary until: systemctl restart procwarpd"
elif ((activate)); then
  note "not activating (installed under a root directory, or systemd is not PID 1)"
fi
