#!/usr/bin/env bash
# nspawn_test.sh: runs procwarpd under a real systemd. The CI and developer
# machines do not boot systemd as PID 1, so this boots Debian bookworm's
# systemd in a systemd-nspawn container (see docs/architecture.md, "systemd"),
# installs the build with deploy/install.sh and checks what
# only a real service manager shows:
#   - procwarpd.socket listens at /run/procwarp/procwarpd.sock (0660 root:procwarp);
#   - the CLI spawns a process through it, which socket-activates the daemon;
#   - the daemon becomes active (Type=notify READY=1) and journald has its
#     audit record (PROCWARP_AUDIT=1, PROCWARP_OP=spawn);
#   - with a short WatchdogSec= the daemon keeps pinging and is never
#     restarted (NRestarts=0);
#   - a restart does not kill processes the daemon manages (KillMode=process),
#     nor persistent agent threads (reconnected through the fd store),
#     and the new daemon serves on the socket systemd kept open;
#   - `systemctl stop procwarpd` ends it cleanly (Result=success, exit 0), and
#     the next client activates it again.
#
# The container's root file system is built once with debootstrap and cached
# in /var/cache/procwarp-test/rootfs-<hash of its package list>/ (about 2
# minutes and 225 MB, once); it is booted with --volatile=overlay so runs
# never change it and may share it. With the cache, a run takes ~10 s.
#
# Usage:
#   nspawn_test.sh [--procwarpd FILE --procwarp FILE [--agent FILE]]
#       the test (Bazel passes the binaries; by default they come from the
#       runfiles, or from bazel-bin when run from a checkout)
#   nspawn_test.sh --standin
#       checks the host can boot and drive the container with stand-in units
#       only (no procwarp binaries needed)
#   nspawn_test.sh --rootfs-only
#       builds (or finds) the cached root file system and prints its path
# Environment: PROCWARP_TEST_CACHE (default /var/cache/procwarp-test),
# PROCWARP_TEST_MIRROR (default: the host's apt source for bookworm),
# PROCWARP_TEST_KEEP=1 keeps the work directory for inspection.
# Host needs (Debian packages): systemd-container (systemd-nspawn), debootstrap,
# debian-archive-keyring, util-linux (nsenter, flock), procps (pgrep).
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

readonly SUITE=bookworm
# Bump when the way the root file system is prepared changes: the cache key
# then changes and a fresh root is built.
readonly ROOTFS_SCHEMA=1
# systemd and what the binaries link (DESIGN: Debian's gRPC 1.51, protobuf,
# abseil, libsystemd, elfutils' libelf and libdw and their dependencies),
# plus gcc's ASan and UBSan runtimes, which the test suite's builds (tools/test.sh) link.
# Libraries the built binaries need beyond these are found with ldd and
# dpkg's file lists and added (see ensure_rootfs_for_binaries) — a second
# debootstrap, minutes on a fresh machine, hence a complete list here.
readonly BASE_PACKAGES=(systemd systemd-sysv dbus libsystemd0
  libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libre2-9 libc-ares2 libssl3
  libelf1 libdw1 libasan8 libubsan1)
readonly CACHE_DIR=${PROCWARP_TEST_CACHE:-/var/cache/procwarp-test}
# Seconds; generous for a loaded 2-CPU machine, each is a ceiling not a delay.
readonly BOOT_TIMEOUT=90 STEP_TIMEOUT=30 LOCK_TIMEOUT=900
# The watchdog period the test drop-in sets, and how many periods the daemon
# must survive.
readonly WATCHDOG_SEC=1 WATCHDOG_PERIODS=5

t_start=$SECONDS
log() { printf '[nspawn_test +%3ds] %s\n' $((SECONDS - t_start)) "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- arguments
mode=test procwarpd= procwarp= agent=
while (($#)); do
  case $1 in
    --standin) mode=standin; shift ;;
    --rootfs-only) mode=rootfs; shift ;;
    --procwarpd) procwarpd=${2:?}; shift 2 ;;
    --procwarp) procwarp=${2:?}; shift 2 ;;
    --agent) agent=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

((EUID == 0)) || die "must run as root (debootstrap, systemd-nspawn, cgroups)"
for tool in debootstrap systemd-nspawn nsenter flock pgrep dpkg-query; do
  command -v "$tool" >/dev/null ||
    die "$tool not found; on the host: apt-get install systemd-container debootstrap debian-archive-keyring util-linux procps"
done

# In Bazel the working directory is the runfiles tree (deploy/, daemon/, ...);
# from a checkout, the repository holds deploy/ and bazel-bin/.
if [[ -n ${TEST_SRCDIR:-} && -f deploy/install.sh ]]; then
  src=$PWD bin=$PWD
else
  src=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd) bin=$src/bazel-bin
fi
if [[ $mode == test ]]; then
  procwarpd=${procwarpd:-$bin/daemon/procwarpd}
  procwarp=${procwarp:-$bin/client/cli/procwarp}
  [[ -n $agent || ! -f $bin/agent/procwarp-agent ]] || agent=$bin/agent/procwarp-agent
  for f in "$procwarpd" "$procwarp" ${agent:+"$agent"}; do
    [[ -f $f && -x $f ]] || die "binary $f missing (bazel build //daemon:procwarpd //client/cli:procwarp)"
  done
  procwarpd=$(readlink -f "$procwarpd") procwarp=$(readlink -f "$procwarp")
  [[ -z $agent ]] || agent=$(readlink -f "$agent")
fi

# ------------------------------------------------------- root file system
# The bookworm mirror the host uses (deb822 .sources or one-line .list).
host_mirror() {
  local f
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    awk -v suite="$SUITE" '
      function flush(  n, s, u, i) {
        if (types ~ /(^| )deb( |$)/ && enabled != "no") {
          n = split(suites, s, " ")
          for (i = 1; i <= n; i++) if (s[i] == suite) { split(uris, u, " "); print u[1]; break }
        }
        types = uris = suites = ""; enabled = "yes"
      }
      BEGIN { enabled = "yes" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"   { $1 = ""; types = $0 }
      tolower($1) == "uris:"    { $1 = ""; uris = $0 }
      tolower($1) == "suites:"  { $1 = ""; suites = $0 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
  done
  shopt -u nullglob
}

# Removes a half-built root left by a killed debootstrap. debootstrap mounts
# /proc and /sys (and may bind /dev) inside the target: unmount everything
# below it first, and never cross into another file system.
remove_tree() {
  local dir=$1 m
  [[ -d $dir ]] || return 0
  while read -r m; do umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system -- "$dir"
}

rootfs_dir_for() {  # rootfs_dir_for PACKAGE...: the cache directory for that package set
  local key
  key=$( (echo "schema=$ROOTFS_SCHEMA suite=$SUITE arch=$(dpkg --print-architecture)"
          printf '%s\n' "$@" | sort -u) | sha256sum | cut -c1-16)
  echo "$CACHE_DIR/rootfs-$key"
}

# Prints the cached root for PACKAGE..., building it first if needed. Builders
# serialise on a lock and publish with a rename, so a root that exists is
# complete and never changes: readers need no lock.
ensure_rootfs() {
  local root
  root=$(rootfs_dir_for "$@")
  if [[ -f $root/.procwarp-rootfs-complete ]]; then echo "$root"; return; fi
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/lock"
  if ! flock -n 9; then
    log "another run is building a root file system; waiting for $CACHE_DIR/lock"
    flock -w "$LOCK_TIMEOUT" 9 || die "could not lock $CACHE_DIR/lock within ${LOCK_TIMEOUT}s"
  fi
  if [[ ! -f $root/.procwarp-rootfs-complete ]]; then
    local mirror=${PROCWARP_TEST_MIRROR:-$(host_mirror | head -n1)}
    [[ -n $mirror ]] || die "no Debian $SUITE mirror in /etc/apt/sources.list{,.d}; set PROCWARP_TEST_MIRROR"
    local tmp=$root.tmp.$$ t0=$SECONDS old
    # Leftovers of builders that died: we hold the lock, so nobody builds them.
    for old in "$CACHE_DIR"/rootfs-*.tmp.*; do remove_tree "$old"; done
    local include
    include=$(IFS=,; echo "$*")
    log "building $root with debootstrap from $mirror (once; about 1-2 minutes)"
    log "  packages: $include"
    mkdir -p "$CACHE_DIR/debs"
    if ! debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE_DIR/debs" \
           "$SUITE" "$tmp" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1; then
      tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
      [[ -f $tmp/debootstrap/debootstrap.log ]] && tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2
      remove_tree "$tmp"
      die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
    fi
    remove_tree "$tmp/debootstrap"  # present only after a failure; be sure
    # Shrink and settle the image: the downloaded .debs live in --cache-dir;
    # no getty on the read-only console; a fixed hostname for the logs.
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
    ln -sf /dev/null "$tmp/etc/systemd/system/getty@tty1.service"
    echo procwarp-test >"$tmp/etc/hostname"
    printf '%s\n' "$@" >"$tmp/.procwarp-rootfs-packages"
    touch "$tmp/.procwarp-rootfs-complete"
    mv -T "$tmp" "$root"
    log "built $root in $((SECONDS - t0))s ($(du -sh "$root" | cut -f1))"
  fi
  flock -u 9
  exec 9>&-
  echo "$root"
}

# The Debian packages owning every shared library BINARY... loads.
packages_for_binaries() {
  local b out libs=() pairs owners unowned
  for b in "$@"; do
    # Static binaries (the agent) need nothing.
    out=$(ldd "$b" 2>/dev/null) || continue
    if grep -q 'not found' <<<"$out"; then
      grep 'not found' <<<"$out" >&2
      die "$b: libraries missing on the host"
    fi
    libs+=($(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$out"))
  done
  ((${#libs[@]})) || return 0
  mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
  # "name real-path" per library. Merged /usr: dpkg may know a file under
  # /lib or /usr/lib, by either name, so each has four candidate paths.
  pairs=$(paste -d' ' <(printf '%s\n' "${libs[@]}") <(readlink -f "${libs[@]}"))
  # dpkg -S would match each name as a pattern against every file of every
  # package (seconds for ~250 names); dpkg's per-package file lists answer the
  # same with one exact-match grep. Its lines: ".../libfoo1:amd64.list:/path".
  owners=$(awk '{ r = $2; sub(/^\/usr/, "", r); print $1; print $2; print r; print "/usr" r }' <<<"$pairs" |
           sort -u | grep -Fx -f - /var/lib/dpkg/info/*.list |
           sed -E 's|^.*/([^/:]+)(:[^/:]+)?\.list:|\1 |') || true
  unowned=$(awk 'NR == FNR { owned[$2] = 1; next }
                 { r = $2; sub(/^\/usr/, "", r)
                   if (!(owned[$1] || owned[$2] || owned[r] || owned["/usr" r])) print $1 }' \
            <(echo "$owners") <(echo "$pairs"))
  [[ -z $unowned ]] ||
    die "no Debian package provides $(echo $unowned), which the binaries need; the container cannot provide it"
  awk '{ print $1 }' <<<"$owners" | sort -u
}

# The root for the base packages, plus any package the binaries need that it
# lacks (then a second root keyed by the longer list is built, once).
ensure_rootfs_for_binaries() {
  local root pkg needed missing=()
  needed=$(packages_for_binaries "$@")
  root=$(ensure_rootfs "${BASE_PACKAGES[@]}")
  for pkg in $needed; do
    [[ $(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] ||
      missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "the binaries also need: ${missing[*]}"
    root=$(ensure_rootfs "${BASE_PACKAGES[@]}" "${missing[@]}")
  fi
  echo "$root"
}

if [[ $mode == rootfs ]]; then
  ensure_rootfs "${BASE_PACKAGES[@]}"
  exit 0
elif [[ $mode == standin ]]; then
  rootfs=$(ensure_rootfs "${BASE_PACKAGES[@]}")
else
  rootfs=$(ensure_rootfs_for_binaries "$procwarpd" "$procwarp" ${agent:+"$agent"})
fi
log "root file system: $rootfs"

# ---------------------------------------------------------------- teardown
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/nspawn_test.XXXXXX")
machine=procwarp-test-$$
nspawn_pid= pid1= cgroups=() cgroup_origins=()
nspawn_log=$work/nspawn.log

# cgroup hierarchies to move into: the named "systemd" v1 hierarchy and the
# unified (v2) one, wherever they are mounted. On a pure cgroup2 host
# /sys/fs/cgroup itself is the unified hierarchy.
cgroup_mounts() {
  if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
    echo "0:: /sys/fs/cgroup"
  else
    [[ -d /sys/fs/cgroup/systemd ]] && echo "name=systemd /sys/fs/cgroup/systemd"
    [[ $(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null) == cgroup2fs ]] && echo "0:: /sys/fs/cgroup/unified"
  fi
  return 0
}

# Without a host systemd, nspawn puts the container in "<our cgroup>/payload"
# and takes over our cgroup: give this shell one of its own first.
enter_own_cgroup() {
  local key mnt cur
  while read -r key mnt; do
    if [[ $key == 0:: ]]; then cur=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    else cur=$(awk -F: -v k="$key" '$2 == k { print $3 }' /proc/self/cgroup); fi
    [[ -n $cur ]] || continue
    mkdir "$mnt${cur%/}/$machine"
    cgroups+=("$mnt${cur%/}/$machine")
    cgroup_origins+=("$mnt$cur")
    echo $$ >"$mnt${cur%/}/$machine/cgroup.procs"
  done < <(cgroup_mounts)
}

leave_own_cgroup() {
  local i cg p
  for i in "${!cgroups[@]}"; do
    cg=${cgroups[$i]}
    [[ -d $cg ]] || continue
    # Whatever of the container is still there (nspawn killed hard): it is
    # all ours, started by this run.
    if [[ -d $cg/payload ]]; then
      for p in $(find "$cg/payload" -name cgroup.procs -exec cat {} + 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null || true
      done
    fi
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
      echo "$p" >"${cgroup_origins[$i]}/cgroup.procs" 2>/dev/null || true
    done
    # Killed processes leave their cgroup asynchronously: retry briefly.
    for _ in $(seq 50); do
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $cg ]] || break
      sleep 0.1
    done
    [[ ! -d $cg ]] || log "warning: could not remove cgroup $cg"
  done
}

teardown() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if ((rc != 0)) && [[ -n $pid1 ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # What the container saw, before shutdown noise: the console so far and
    # the journal of our units.
    log "container console before the failure (last 30 lines):"
    tail -n 30 "$nspawn_log" | sed 's/\x1b\[[0-9;]*m//g' >&2
    if [[ $mode == test ]]; then
      log "journalctl -u procwarpd.service -u procwarpd.socket (last 50 lines):"
      timeout 10 env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
        journalctl -u procwarpd.service -u procwarpd.socket --no-pager -n 50 >&2
    fi
  elif ((rc != 0)) && [[ -s $nspawn_log ]]; then
    log "container console (last 60 lines):"
    tail -n 60 "$nspawn_log" | sed 's/\x1b\[[0-9;]*m//g' >&2
  fi
  if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGTERM makes nspawn power the container off cleanly (~1.5 s).
    kill -TERM "$nspawn_pid"
    for _ in $(seq 200); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      log "container did not power off in 20s; killing it"
      kill -KILL "$nspawn_pid"
    fi
    wait "$nspawn_pid" 2>/dev/null
  fi
  leave_own_cgroup
  if [[ -n ${TEST_UNDECLARED_OUTPUTS_DIR:-} && -f $nspawn_log ]]; then
    cp "$nspawn_log" "$TEST_UNDECLARED_OUTPUTS_DIR/" 2>/dev/null
  fi
  if [[ ${PROCWARP_TEST_KEEP:-0} == 1 ]]; then log "kept $work"
  else rm -rf --one-file-system -- "$work"; fi
  log "finished (exit $rc) after $((SECONDS - t_start))s"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ------------------------------------------------------------ the payload
stage=$work/stage
mkdir -p "$stage"
binds=()
if [[ $mode == test ]]; then
  bash "$src/deploy/install.sh" --root "$stage" --procwarpd "$procwarpd" --procwarp "$procwarp" \
    ${agent:+--agent "$agent"} >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; die "deploy/install.sh failed"; }
  # The test's own change to the installed units: a short watchdog period.
  mkdir -p "$stage/etc/systemd/system/procwarpd.service.d"
  cat >"$stage/etc/systemd/system/procwarpd.service.d/50-test-watchdog.conf" <<EOF
# Added by nspawn_test.sh: a short period so the test sees many pings.
[Service]
WatchdogSec=${WATCHDOG_SEC}s
EOF
  binds+=(--bind-ro="$stage/etc/procwarp:/etc/procwarp"
          --bind-ro="$stage/etc/systemd/system/procwarpd.service.d:/etc/systemd/system/procwarpd.service.d")
else
  # Stand-ins that exercise the same systemd features as procwarpd's units:
  # a Type=notify service with watchdog pings, KillMode=process children,
  # logging to the journal.
  mkdir -p "$stage/usr/local/lib/systemd/system" "$stage/usr/local/bin"
  cat >"$stage/usr/local/bin/standin" <<'EOF'
#!/bin/sh
# Stand-in daemon: leaves a child behind (like procwarpd's managed processes),
# reports ready and pings the watchdog.
sleep 86400 &
echo "standin: started child $!"
systemd-notify --ready --status="standing in"
while :; do systemd-notify WATCHDOG=1; sleep 0.2; done
EOF
  chmod 0755 "$stage/usr/local/bin/standin"
  cat >"$stage/usr/local/lib/systemd/system/standin.service" <<EOF
# Stand-in for procwarpd.service (nspawn_test.sh --standin).
[Service]
Type=notify
# systemd-notify runs as a child of the shell.
NotifyAccess=all
ExecStart=/usr/local/bin/standin
WatchdogSec=${WATCHDOG_SEC}s
KillMode=process
Restart=on-failure
EOF
fi
binds+=(--bind-ro="$stage/usr/local:/usr/local")

# ------------------------------------------------------------------- boot
enter_own_cgroup
log "booting $machine"
t_boot=$SECONDS
# --register=no --keep-unit: no host systemd/machined to talk to.
# --volatile=overlay: the cached root stays untouched (writes go to tmpfs).
systemd-nspawn -q -D "$rootfs" -M "$machine" -b --register=no --keep-unit \
  --volatile=overlay --console=read-only "${binds[@]}" >"$nspawn_log" 2>&1 &
nspawn_pid=$!

# Polls CMD... every 0.1 s until it succeeds (status 0) or TIMEOUT seconds
# have passed (status 1); dies if the container goes away meanwhile.
poll() {  # poll TIMEOUT CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    kill -0 "$nspawn_pid" 2>/dev/null || die "systemd-nspawn exited unexpectedly"
    sleep 0.1
  done
}
wait_for() {  # wait_for TIMEOUT WHAT CMD...
  local timeout=$1 what=$2; shift 2
  poll "$timeout" "$@" || die "timed out after ${timeout}s waiting for: $what"
}

# The container's PID 1 is nspawn's child in a new PID namespace.
find_pid1() {
  local p
  for p in $(pgrep -P "$nspawn_pid"); do
    if [[ $(readlink "/proc/$p/ns/pid") != $(readlink /proc/self/ns/pid) ]]; then
      pid1=$p
      return 0
    fi
  done
  return 1
}
wait_for 30 "the container's PID 1" find_pid1

# Runs CMD... inside the container, in all its namespaces, with a clean
# environment (nothing of Bazel's or ours leaks in).
cx() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 \
    nsenter -t "$pid1" -a -- "$@"
}
# A property of a unit, e.g. prop procwarpd MainPID.
prop() { cx systemctl show -p "$2" --value "$1"; }

# is-system-running --wait needs the manager's bus, which comes up a moment
# after PID 1 starts; it then blocks until boot has finished.
boot_done() {
  local state
  state=$(timeout "$STEP_TIMEOUT" nsenter -t "$pid1" -a -- systemctl is-system-running --wait 2>/dev/null) || true
  [[ $state == running || $state == degraded ]]
}
wait_for "$BOOT_TIMEOUT" "the container to finish booting" boot_done
state=$(cx systemctl is-system-running) || true
log "booted in $((SECONDS - t_boot))s: system $state"
if [[ $state != running ]]; then
  # A unit of the minimal image failing is not our business, but say which.
  log "failed units: $(cx systemctl --failed --plain --no-legend | awk '{ printf "%s ", $1 }')"
fi

expect_eq() {  # expect_eq WHAT WANT GOT
  [[ $3 == "$2" ]] || die "$1: want '$2', got '$3'"
  log "ok: $1 = $3"
}

# ------------------------------------------------------------ stand-in run
if [[ $mode == standin ]]; then
  cx systemctl start standin.service
  expect_eq "standin ActiveState" active "$(prop standin ActiveState)"
  expect_eq "standin WatchdogUSec" "${WATCHDOG_SEC}s" "$(prop standin WatchdogUSec)"
  main=$(prop standin MainPID)
  wd0=$(prop standin WatchdogTimestampMonotonic)
  deadline=$((SECONDS + WATCHDOG_SEC * WATCHDOG_PERIODS))
  while ((SECONDS < deadline)); do
    [[ $(prop standin MainPID) == "$main" ]] || die "standin restarted during the watchdog check"
    sleep 0.5
  done
  expect_eq "standin NRestarts" 0 "$(prop standin NRestarts)"
  (($(prop standin WatchdogTimestampMonotonic) > wd0)) || die "no watchdog ping arrived"
  log "ok: watchdog pings arrive, no restart in $((WATCHDOG_SEC * WATCHDOG_PERIODS))s"
  child=$(cx journalctl -u standin -o cat --no-pager | sed -n 's/^standin: started child //p' | tail -n1)
  [[ -n $child ]] || die "the stand-in's journal line is missing"
  log "ok: journal has the stand-in's output (child pid $child in the container)"
  cx systemctl restart standin.service
  cx test -e "/proc/$child" || die "restart killed the child (KillMode=process not honoured)"
  log "ok: child $child survived the restart"
  cx systemctl stop standin.service
  expect_eq "standin Result after stop" success "$(prop standin Result)"
  log "PASS (stand-in)"
  exit 0
fi

# ------------------------------------------------------------- procwarpd
missing=$(cx ldd /usr/local/bin/procwarpd /usr/local/bin/procwarp | grep 'not found' || true)
[[ -z $missing ]] ||
  die "libraries missing in the container (its packages are older than the host's? remove $rootfs to rebuild it): $missing"

cx systemctl start procwarpd.socket
expect_eq "procwarpd.socket ActiveState" active "$(prop procwarpd.socket ActiveState)"
expect_eq "socket mode/owner/group" "660 root procwarp" \
  "$(cx stat -c '%a %U %G' /run/procwarp/procwarpd.sock)"
# Nothing has connected yet, so the daemon must not be running: the next step
# is what starts it.
expect_eq "procwarpd before the first client" inactive "$(prop procwarpd ActiveState)"

# The CLI spawns a process through the socket; that activates the daemon.
out=$(timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
      /usr/local/bin/procwarp run -- /bin/echo hello-from-procwarp) ||
  die "procwarp run -- /bin/echo hello-from-procwarp failed (exit $?)"
expect_eq "procwarp run -- /bin/echo output" hello-from-procwarp "$out"
expect_eq "procwarpd after the first client" active "$(cx systemctl is-active procwarpd)"
rc=0
timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
  /usr/local/bin/procwarp run -- /bin/sh -c 'exit 7' || rc=$?
expect_eq "procwarp run exit status of 'exit 7'" 7 "$rc"
timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
  /usr/local/bin/procwarp status >"$work/status.txt" 2>&1 ||
  { cat "$work/status.txt" >&2; die "procwarp status failed"; }
log "ok: procwarp status"

# The audit record: one journal entry from the daemon's unit carrying both
# fields (journalctl ANDs matches on different fields). journald may store it
# a moment after the spawn returned, hence the poll.
audit_logged() {
  cx journalctl _SYSTEMD_UNIT=procwarpd.service PROCWARP_AUDIT=1 PROCWARP_OP=spawn \
    -o verbose --no-pager >"$work/audit.txt" 2>&1 && grep -q '^ *PROCWARP_OP=spawn$' "$work/audit.txt"
}
if ! poll "$STEP_TIMEOUT" audit_logged; then
  cx journalctl -u procwarpd -o verbose --no-pager -n 20 >&2
  die "journal of procwarpd.service has no entry with PROCWARP_AUDIT=1 and PROCWARP_OP=spawn (its last entries above)"
fi
# Show the first entry's fields (verbose entries start with an unindented line).
log "ok: journal has the audit record: $(awk '/^[^ ]/ { n++ } n == 1 && /^ *PROCWARP_[A-Z_]+=/' "$work/audit.txt" |
  sed 's/^ *//' | tr '\n' ' ')"

# Watchdog: the daemon must keep pinging; a missed ping means SIGABRT and a
# restart (new MainPID, NRestarts > 0).
expect_eq "procwarpd WatchdogUSec" "${WATCHDOG_SEC}s" "$(prop procwarpd WatchdogUSec)"
main=$(prop procwarpd MainPID)
wd0=$(prop procwarpd WatchdogTimestampMonotonic)
deadline=$((SECONDS + WATCHDOG_SEC * WATCHDOG_PERIODS))
while ((SECONDS < deadline)); do
  [[ $(prop procwarpd MainPID) == "$main" ]] ||
    die "procwarpd was restarted during the watchdog check"
  sleep 0.5
done
expect_eq "procwarpd NRestarts after $WATCHDOG_PERIODS watchdog periods" 0 "$(prop procwarpd NRestarts)"
(($(prop procwarpd WatchdogTimestampMonotonic) > wd0)) || die "procwarpd sent no WATCHDOG=1 ping"
log "ok: procwarpd pings the watchdog"

# A restart must leave managed processes alive. The token makes the child
# recognisable among the host's processes.
token=$((86400 + $$))
timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
  /usr/local/bin/procwarp run -d -- /bin/sleep "$token" >"$work/run-d.txt" 2>&1 ||
  { cat "$work/run-d.txt" >&2; die "procwarp run -d failed"; }
find_child() { child=$(pgrep -f -x "/bin/sleep $token" | head -n1); [[ -n $child ]]; }
child=
wait_for "$STEP_TIMEOUT" "the detached child (sleep $token)" find_child
# ...and so must a persistent agent thread: its socket end and pidfd go to
# the fd store, and the new daemon reconnects to it.
pw() { timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- /usr/local/bin/procwarp "$@"; }
thread=$(pw thread create --persistent 2>"$work/thread.txt") ||
  { cat "$work/thread.txt" >&2; die "procwarp thread create --persistent failed"; }
thread_pid_before=$(pw thread syscall "$thread" getpid 2>&1) ||
  die "procwarp thread syscall $thread getpid failed: $thread_pid_before"
cx systemctl restart procwarpd
expect_eq "procwarpd after restart" active "$(prop procwarpd ActiveState)"
[[ $(prop procwarpd MainPID) != "$main" ]] || die "restart did not start a new daemon"
kill -0 "$child" 2>/dev/null || die "restarting procwarpd killed its managed process (sleep $token)"
log "ok: managed process survived a daemon restart"
# ...and the new daemon re-adopted it from the state file and the fd store
# (--keeper systemd): listed under the same id, and signalled through the
# pidfd systemd kept.
id=$(tr -d '\n' <"$work/run-d.txt")
timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
  /usr/local/bin/procwarp ps >"$work/ps.txt" 2>&1 || { cat "$work/ps.txt" >&2; die "procwarp ps failed after the restart"; }
grep -q "^${id:0:12} .*sleep $token" "$work/ps.txt" ||
  { cat "$work/ps.txt" >&2; cx journalctl -u procwarpd -o cat --no-pager -n 20 >&2
    die "the process spawned before the restart ($id) is not listed after it"; }
log "ok: procwarp ps lists the re-adopted process after the restart"
# With the pidfd and pipes systemd's fd store kept, not by pid and start time.
cx journalctl -u procwarpd -o cat --no-pager >"$work/journal.txt" 2>&1 || true
grep -q "running re-adopted, 0 could not be; fds from systemd's fd store" "$work/journal.txt" ||
  { tail -n 20 "$work/journal.txt" >&2; die "the new daemon did not re-adopt from systemd's fd store"; }
! grep -q "by pid and start time" "$work/journal.txt" ||
  die "the new daemon re-adopted by pid and start time: the fd store lost the pidfd"
log "ok: re-adopted with the fds from systemd's fd store"
thread_pid_after=$(pw thread syscall "$thread" getpid 2>&1) ||
  { grep "thread" "$work/journal.txt" | tail -n 5 >&2
    die "the persistent thread $thread does not answer after the restart: $thread_pid_after"; }
expect_eq "getpid in the persistent thread after the restart" "$thread_pid_before" "$thread_pid_after"
grep -q "reconnected to 1 persistent threads, 0 could not be" "$work/journal.txt" ||
  die "the new daemon did not log reconnecting to the persistent thread"
pw thread kill "$thread" >/dev/null 2>&1 || die "procwarp thread kill $thread failed after the restart"
log "ok: a persistent thread answers syscalls from a new connection after systemctl restart"
# The new daemon serves on the listening socket systemd kept open across the
# restart: the old one must have closed it, not shut it down.
cli_works() {  # cli_works WHEN
  timeout "$STEP_TIMEOUT" env -i PATH=/usr/bin:/bin nsenter -t "$pid1" -a -- \
    /usr/local/bin/procwarp status >"$work/status.txt" 2>&1 ||
    { cat "$work/status.txt" >&2
      die "procwarp status fails $1 although the socket unit still listens. If the daemon started, the previous one probably shut the inherited listening socket down (shutdown(2) acts on the socket systemd shares); it must only close its fd"; }
  log "ok: procwarp status works $1"
}
cli_works "after a daemon restart"

# A clean stop: SIGTERM, exit 0, Result=success. (systemctl warns that the
# socket can still activate the service: that is the point, keep it quiet.)
cx systemctl stop procwarpd 2>"$work/stop.txt" || { cat "$work/stop.txt" >&2; die "systemctl stop procwarpd failed"; }
expect_eq "procwarpd ActiveState after stop" inactive "$(prop procwarpd ActiveState)"
expect_eq "procwarpd Result after stop" success "$(prop procwarpd Result)"
# Code 1 is CLD_EXITED: the daemon exited by itself. systemd also counts
# death by SIGTERM as success, which would show as code 2 (CLD_KILLED), 15.
expect_eq "procwarpd exit code/status after stop" "1/0" \
  "$(prop procwarpd ExecMainCode)/$(prop procwarpd ExecMainStatus)"
# The socket stays listening: the next client starts the daemon again.
cli_works "after the daemon was stopped (socket activation again)"
expect_eq "procwarpd after re-activation" active "$(cx systemctl is-active procwarpd)"
kill -KILL "$child" 2>/dev/null || true

log "PASS"
