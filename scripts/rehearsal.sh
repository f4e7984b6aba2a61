#!/bin/sh
# The production rehearsal (`make rehearsal`): a Debian root booted with a real systemd in a
# container (systemd-nspawn) on this machine, set up as a server from a clean root with the
# repository's own scripts, then driven the way production is: the hardened units as the
# service user, releases pulled from a git origin by materia-deploy.timer and built there by
# `make release`, a PSD upstream and an S3 server (moto, standing in for R2) on loopback.
# Each check prints "ok: ..." or "FAILED: ..."; the run ends with "N passed, N failed" and
# exits 1 at the first failure, after cleaning up.
#
# Usage (as root, from the repository root): BIN_DIR=... TOOLS_VENV=... scripts/rehearsal.sh
#   BIN_DIR        host binaries (psd-gen makes the upstream zip); make rehearsal sets it
#   TOOLS_VENV     moto_server and sops; make rehearsal sets it
#   REHEARSAL_CACHE  where the root tarball is kept (default ~/.cache/materia/rehearsal)
#   REHEARSAL_MIRROR the Debian mirror (default: the one apt uses here)
#   REHEARSAL_KEEP=1 keep the work directory (container root, logs) after the run
#   REHEARSAL_BUILD_CACHE=1 seed the service user's build caches (cargo target and registry,
#                    npm, pip) from the last such rehearsal, and keep them for the next: the
#                    releases are still built by make release as materia, incrementally
#
# What is rehearsed is the working tree as `git stash create` sees it (committed and staged
# or modified tracked files), published to the origin as tags v1, v2 and v3.
#
# The root is what a provider's fresh Debian 12 cloud image holds, and nothing Materia needs
# (debootstrap --variant=minbase of bookworm plus the packages listed at `include=` below, each
# with why); everything else, polkitd included, comes from setup_server.sh inside the
# container. It is cached as a zstd tarball keyed by everything that built it, and rebuilt when
# the key changes; the .deb files setup_server.sh downloads are kept between runs
# ($REHEARSAL_CACHE/apt-archives, bound as the container's /var/cache/apt/archives).
# The container shares the host's network (loopback servers are reachable) and gets the
# host's Rust toolchain read-only, which setup_server.sh copies in (--rustup, --toolchain-dir)
# instead of downloading it. MemoryMax=/TasksMax= are not enforced here (no cgroup
# controllers are delegated); IPAddressDeny=/DeviceAllow= are.
set -eu

# dash reads a script while it runs it, so an edit of this file during a run (which takes many
# minutes) would be read half-way, as a syntax error or worse. The run reads a private copy,
# open before it is removed.
if [ -z "${REHEARSAL_COPY:-}" ]; then
    copy=$(mktemp /tmp/materia-rehearsal-sh.XXXXXX)
    cp "$0" "$copy"
    REHEARSAL_REPO=$(cd "$(dirname "$0")/.." && pwd) REHEARSAL_COPY=$copy exec sh "$copy" "$@"
fi
rm -f "$REHEARSAL_COPY"
repo=${REHEARSAL_REPO:?}
bin=${BIN_DIR:?BIN_DIR must name the host binaries (make rehearsal)}
tools=${TOOLS_VENV:?TOOLS_VENV must name the tools virtualenv (make rehearsal)}
cache=${REHEARSAL_CACHE:-${MATERIA_CACHE:-$HOME/.cache/materia}/rehearsal}
suite=bookworm

# Limits, in one place.
debootstrap_timeout_secs=1200   # building the root tarball (once per key)
boot_timeout_secs=90            # container start to `running`
poweroff_timeout_secs=90        # `systemctl poweroff` to the container's end
inside_timeout_secs=600         # one command run inside the container
bootstrap_timeout_secs=3600     # setup + bootstrap: a cold build of the first release
cycle_timeout_secs=900          # a supervisor cycle to complete
deploy_timeout_secs=3600        # a tag pushed to deployed (or rolled back): build + health
backup_timeout_secs=300         # the backup timer to fire and the push to finish
server_start_timeout_secs=30    # loopback servers to accept connections
psd_rows=20000                  # the upstream file's rows (small: the rehearsal is not a benchmark)

[ "$(id -u)" -eq 0 ] || { echo "rehearsal: run as root (systemd-nspawn, debootstrap)" >&2; exit 2; }
for c in systemd-nspawn debootstrap zstd nsenter setpriv git python3 curl timeout; do
    command -v "$c" >/dev/null 2>&1 || { echo "rehearsal: $c is missing (make rehearsal installs it)" >&2; exit 2; }
done
[ -x "$bin/psd-gen" ] || { echo "rehearsal: no $bin/psd-gen (make build)" >&2; exit 2; }
for f in "$tools/bin/moto_server" "$tools/bin/sops"; do
    [ -x "$f" ] || { echo "rehearsal: no $f (make tools)" >&2; exit 2; }
done
for d in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    [ -d "$d" ] || { echo "rehearsal: needs the hybrid cgroup layout ($d)" >&2; exit 2; }
done

mirror=${REHEARSAL_MIRROR:-}
[ -n "$mirror" ] || mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
# What a provider's Debian 12 cloud image has, beyond minbase (and nothing else):
#   systemd, systemd-sysv  the init system every image boots
#   dbus                   the system bus (systemctl, logind, hostnamectl; and polkit's)
#   ca-certificates        TLS roots (apt over https, cloud-init's metadata fetches)
#   openssh-server         how the operator reaches the server (masked here: the container
#                          shares this machine's network and port 22)
#   procps                 ps, free, top (the rehearsal's checks use ps)
# Left out though some images have it: sudo (nothing of Materia needs it, checked below),
# cloud-init (no metadata service here). Git, the C toolchain, Python, npm, rclone, age,
# sqlite3, curl and polkitd come from setup_server.sh.
include=systemd,systemd-sysv,dbus,ca-certificates,openssh-server,procps
key=$(printf '%s\n' "root v2" "$suite" "$mirror" "$include" | sha256sum | cut -c1-16)
tarball=$cache/root-$key.tar.zst

started_at=$(date +%s)
name=materia-rehearsal-$$
cg_unified=/sys/fs/cgroup/unified/$name
cg_systemd=/sys/fs/cgroup/systemd/$name
work=$(mktemp -d /var/tmp/materia-rehearsal.XXXXXX)
chmod 0755 "$work"
root=$work/root
nspawn_pid=""
leader=""
child=""
psd_pid=""
moto_pid=""
chroot_proc=""
passed=0
failed=0

log() { echo "rehearsal: $*" >&2; }
ok() {
    passed=$((passed + 1))
    echo "ok: [$(($(date +%s) - started_at))s] $*"
}
# fail MESSAGE: report, show the journal's last lines, end the run.
fail() {
    failed=$((failed + 1))
    echo "FAILED: $*"
    if [ -n "$leader" ]; then
        echo "--- journal (last 80 lines)"
        timeout 20 nsenter -t "$leader" -a journalctl --no-pager -n 80 2>/dev/null || true
    fi
    exit 1
}

# Every process of a cgroup tree, killed, then the directories removed (deepest first).
remove_cgroup() {
    [ -d "$1" ] || return 0
    tries=0
    while [ -n "$(find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; do
        find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
            kill -KILL "$p" 2>/dev/null || true
        done
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || { echo "rehearsal: processes left in $1" >&2; break; }
        sleep 0.1
    done
    find "$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

stop_container() {
    [ -n "$nspawn_pid" ] || return 0
    if kill -0 "$nspawn_pid" 2>/dev/null && [ -n "$leader" ]; then
        timeout 10 nsenter -t "$leader" -a systemctl poweroff --no-block >/dev/null 2>&1 || true
    fi
    waited=0
    while kill -0 "$nspawn_pid" 2>/dev/null; do
        waited=$((waited + 1))
        if [ "$waited" -eq $((poweroff_timeout_secs * 10)) ]; then
            kill -TERM "$nspawn_pid" 2>/dev/null || true
        elif [ "$waited" -gt $((poweroff_timeout_secs * 10 + 100)) ]; then
            kill -KILL "$nspawn_pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$nspawn_pid" 2>/dev/null || true
    nspawn_pid=""
    leader=""
}

cleanup() {
    status=$?
    trap - EXIT INT TERM
    [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true
    stop_container
    remove_cgroup "$cg_unified"
    remove_cgroup "$cg_systemd"
    [ -z "$chroot_proc" ] || umount "$chroot_proc" 2>/dev/null || true
    [ -z "$psd_pid" ] || kill "$psd_pid" 2>/dev/null || true
    [ -z "$moto_pid" ] || kill "$moto_pid" 2>/dev/null || true
    if [ "${REHEARSAL_BUILD_CACHE:-}" = 1 ] && [ -d "$root/opt/materia/.cache/materia/target" ]; then
        rm -rf "$cache/build.new"
        mkdir -p "$cache/build.new"
        for d in .cache/materia/target .cargo/registry .cache/materia/npm .cache/pip; do
            [ ! -d "$root/opt/materia/$d" ] || mv "$root/opt/materia/$d" "$cache/build.new/$(basename "$d")"
        done
        rm -rf "$cache/build"
        mv "$cache/build.new" "$cache/build"
    fi
    if [ "${REHEARSAL_KEEP:-}" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
    echo "rehearsal: $(($(date +%s) - started_at))s"
    echo "$passed passed, $failed failed"
    [ "$status" -ne 0 ] || [ "$failed" -eq 0 ] || status=1
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# inside [--timeout SECS] CMD...: runs CMD in the container as root, with a clean environment.
inside() {
    limit=$inside_timeout_secs
    if [ "$1" = --timeout ]; then
        limit=$2
        shift 2
    fi
    # `cmd & wait`: a signal to this script is handled at once, not after the command.
    timeout "$limit" nsenter -t "$leader" -a env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@" &
    child=$!
    rc=0
    wait "$child" || rc=$?
    child=""
    return "$rc"
}
# The state DB, queried as root inside (sqlite3 is installed by setup_server.sh).
ledger() { inside sqlite3 -readonly /data/materia/landing/.state.sqlite "$1"; }
# until_true SECS WHAT CMD...: waits for CMD to succeed, at most SECS.
until_true() {
    deadline=$(($(date +%s) + $1))
    what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 1
    done
}

# --- the root: cached tarball, or built once -------------------------------------------------
build_root() {
    log "building the $suite root ($include) from $mirror; cached as $tarball"
    b=$work/build
    rm -rf "$b"
    mkdir -p "$b" "$cache"
    timeout "$debootstrap_timeout_secs" debootstrap --variant=minbase --include="$include" \
        "$suite" "$b" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        fail "debootstrap of $suite from $mirror"
    }
    chroot "$b" apt-get clean
    ln -sfn /dev/null "$b/etc/systemd/system/ssh.service"
    rm -rf "$b/var/lib/apt/lists/"* "$b/var/cache/apt/"*.bin
    : >"$b/etc/machine-id"
    echo rehearsal >"$b/etc/hostname"
    tar --zstd -C "$b" -cf "$tarball.new" . && mv -f "$tarball.new" "$tarball"
    rm -rf "$b"
}
[ -f "$tarball" ] || build_root
mkdir "$root"
tar --zstd -C "$root" -xf "$tarball" || fail "unpacking $tarball"
# This machine reaches the registries through a TLS-inspecting proxy whose CA is installed
# locally; the server in the container gets the same local CAs, as a server behind such a
# proxy would.
extra_cas=""
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] || continue
    cp "$crt" "$root/usr/local/share/ca-certificates/"
    extra_cas="$extra_cas $(basename "$crt")"
done
[ -z "$extra_cas" ] || chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates in the root"
ok "root $tarball ($(du -h "$tarball" | cut -f1)) unpacked${extra_cas:+; local CAs:$extra_cas}"

# --- loopback servers: the PSD upstream and moto (R2) ---------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$work/upstream"
"$bin/psd-gen" --rows "$psd_rows" --out "$work/upstream/psd_alldata_csv.zip" 2>/dev/null
# The prices upstream (extract-prices, the registry's second extractor): a FRED-shaped CSV.
printf 'observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n2024-10-01,250.5,180\n2024-11-01,.,185.25\n' \
    >"$work/upstream/fredgraph.csv"
served=$(sh "$repo/scripts/serve-dir.sh" "$work/upstream")
psd_pid=${served% *}
psd_port=${served#* }
moto_port=$(free_port)
# The container shares this machine's network: the web socket gets a free port (a drop-in)
# rather than the unit's 8080, which something else here may hold.
web_port=$(free_port)
env -i PATH=/usr/bin:/bin "$tools/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
until_true "$server_start_timeout_secs" "moto" curl -fsS -o /dev/null "http://127.0.0.1:$moto_port/"
r2() {
    timeout 120 env -i PATH=/usr/bin:/bin RCLONE_CONFIG=/dev/null RCLONE_CONFIG_R2_TYPE=s3 \
        RCLONE_CONFIG_R2_PROVIDER=Cloudflare RCLONE_CONFIG_R2_ACCESS_KEY_ID=rehearsal \
        RCLONE_CONFIG_R2_SECRET_ACCESS_KEY=rehearsal-secret \
        RCLONE_CONFIG_R2_ENDPOINT="http://127.0.0.1:$moto_port" RCLONE_CONFIG_R2_REGION=auto \
        rclone "$@"
}
r2 mkdir r2:materia
ok "PSD upstream on 127.0.0.1:$psd_port ($psd_rows rows), moto on 127.0.0.1:$moto_port"

# --- the release repository: the working tree, and a bare origin ----------------------------
src=$work/src
mkdir -p "$src" "$work/githome"
printf '[safe]\n\tdirectory = *\n[user]\n\tname = Rehearsal\n\temail = rehearsal@example.com\n' >"$work/githome/.gitconfig"
hgit() { env -i PATH=/usr/bin:/bin HOME="$work/githome" GIT_CONFIG_NOSYSTEM=1 git "$@"; }
rev=$(hgit -C "$repo" stash create 2>/dev/null || true)
[ -n "$rev" ] || rev=HEAD
hgit -C "$repo" archive --format=tar "$rev" | tar -x -C "$src"
hgit -C "$src" init -q -b main
hgit -C "$src" add -A
hgit -C "$src" commit -q -m "rehearsal: the working tree at $(hgit -C "$repo" rev-parse --short HEAD)"
hgit init -q --bare "$work/origin.git"
hgit -C "$src" remote add origin "$work/origin.git"

# --- boot ----------------------------------------------------------------------------------
rustup_bin=$(readlink -f "$(command -v rustup || echo /root/.cargo/bin/rustup)")
channel=$(sed -n 's/^channel *= *"\(.*\)".*/\1/p' "$repo/rust-toolchain.toml")
toolchain=$(readlink -f "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$channel-x86_64-unknown-linux-gnu")
[ -x "$rustup_bin" ] || fail "no rustup on this machine ($rustup_bin)"
[ -x "$toolchain/bin/rustc" ] || fail "no toolchain $channel on this machine ($toolchain)"

boot() {
    mkdir -p "$cg_unified" "$cg_systemd" "$cache/apt-archives/partial"
    (
        echo 0 >"$cg_unified/cgroup.procs"
        echo 0 >"$cg_systemd/cgroup.procs"
        exec env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$root" --boot \
            --register=no --keep-unit --quiet --console=read-only --machine=rehearsal \
            --capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN --system-call-filter=bpf \
            --resolv-conf=copy-host --timezone=off \
            --bind-ro="$src:/srv/materia-src" --bind="$work/origin.git:/srv/origin.git" \
            --bind="$cache/apt-archives:/var/cache/apt/archives" \
            --bind-ro="$rustup_bin:/srv/rust/rustup" --bind-ro="$toolchain:/srv/rust/toolchain"
    ) >>"$work/nspawn.log" 2>&1 &
    nspawn_pid=$!
    deadline=$(($(date +%s) + boot_timeout_secs))
    leader=""
    while [ -z "$leader" ]; do
        kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/nspawn.log" >&2; fail "systemd-nspawn exited"; }
        # shellcheck disable=SC2013 # pids, separated by spaces
        for p in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
            [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && leader=$p
        done
        [ "$(date +%s)" -lt "$deadline" ] || fail "the container's systemd did not start"
        [ -n "$leader" ] || sleep 0.1
    done
    # systemctl answers once PID 1 has its private socket; then wait for start-up to finish.
    state=""
    while [ -z "$state" ]; do
        state=$(inside --timeout 5 systemctl is-system-running 2>/dev/null || true)
        [ "$(date +%s)" -lt "$deadline" ] || fail "the container's systemd does not answer"
        [ -n "$state" ] || sleep 0.2
    done
    state=$(inside --timeout "$boot_timeout_secs" systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in
        running) ;;
        *) inside systemctl --failed --no-pager >&2 || true; fail "the container's systemd is '$state', not running" ;;
    esac
}
boot
ok "booted systemd $(inside systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p') to running (container PID 1 is $leader)"

# --- the system-call filters (items 0 and 1): the old one kills, the committed one does not ----
# probe NAME UNIT-OR-"old" COMMAND-LINE: the command line (systemd's quoting) as a oneshot unit
# with the system-call filter of UNIT, or the filter every unit had before ("old"); prints the
# unit's result and exit status.
probe() {
    pname=$1
    from=$2
    {
        echo "[Service]"
        echo "Type=oneshot"
        echo "ExecStart=$3"
        echo "SystemCallArchitectures=native"
        if [ "$from" = old ]; then
            echo "SystemCallFilter=@system-service"
            echo "SystemCallFilter=~@privileged @resources"
        else
            grep '^SystemCallFilter=\|^SystemCallErrorNumber=' "$src/systemd/$from"
        fi
    } >"$root/etc/systemd/system/rehearsal-$pname.service"
    inside systemctl daemon-reload
    inside systemctl start "rehearsal-$pname.service" >/dev/null 2>&1 || true
    echo "$(inside systemctl show -P Result "rehearsal-$pname.service") $(inside systemctl show -P ExecMainStatus "rehearsal-$pname.service")"
}
# --- set-up from a clean root ----------------------------------------------------------------
# Who signs releases: an SSH key of this run (the release key), and a stranger's key that the
# server does not trust. allowed_signers reaches the server as an operator's file would.
for k in sign stranger; do
    ssh-keygen -q -t ed25519 -N "" -C "rehearsal-$k" -f "$work/$k" || fail "ssh-keygen $k"
done
printf 'release@rehearsal namespaces="git" %s\n' "$(cat "$work/sign.pub")" >"$root/srv/allowed_signers"
setup_args="--rustup /srv/rust/rustup --toolchain-dir /srv/rust/toolchain --allowed-signers /srv/allowed_signers"
log "setup_server.sh (packages, polkitd included, sops, the toolchain from this machine, keys, allowed signers)"
# shellcheck disable=SC2086 # $setup_args is a list of arguments
inside --timeout "$bootstrap_timeout_secs" sh /srv/materia-src/scripts/setup_server.sh \
    $setup_args >"$work/setup.log" 2>&1 || {
    tail -n 30 "$work/setup.log" >&2
    fail "setup_server.sh"
}
grep -q "installed.* pigz\|installed.*sqlite3" "$work/setup.log" || fail "setup_server.sh installed no missing package: $(cat "$work/setup.log")"
grep -q "installed.* polkitd" "$work/setup.log" || fail "issue 23.1: setup_server.sh did not install polkitd on the bare root: $(grep installed "$work/setup.log")"
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
inside dpkg-query -W -f='${Status}' polkitd | grep -q "install ok installed" || fail "issue 23.1: polkitd is not installed"
ok "issue 23.1: on the bare root ($include), setup_server.sh installed everything Materia needs, polkitd included"
r=$(probe rclone-old old "/usr/bin/rclone version")
[ "$r" = "signal 31" ] || fail "regression (item 1): rclone under the old filter ended '$r', not killed by SIGSYS (31)"
ok "regression (item 1): the old filter kills rclone version with SIGSYS ($r)"
r=$(probe rclone-backup materia-backup.service "/usr/bin/rclone version")
[ "$r" = "success 0" ] || fail "item 1: rclone under materia-backup.service's filter ended '$r'"
ok "item 1: rclone version runs under materia-backup.service's filter ($r)"


grep -q "installed Rust $channel" "$work/setup.log" || fail "setup_server.sh installed no toolchain"
ok "setup_server.sh: $(grep -c '^setup_server: ' "$work/setup.log") lines, packages and Rust $channel installed"
for f in /opt/materia/.ssh/id_ed25519 /opt/materia/.config/sops/age/keys.txt; do
    [ "$(inside stat -c '%U %a' "$f")" = "materia 600" ] || fail "item 12: $f is $(inside stat -c '%U %a' "$f"), not materia 600"
done
for want in "ssh-ed25519 " "age1" "sops updatekeys"; do
    grep -q "$want" "$work/setup.log" || fail "item 12: setup_server.sh did not print '$want' (public keys, next steps)"
done
ok "item 12: deploy key and age key generated as materia, mode 0600, public keys and next steps printed"
# shellcheck disable=SC2086 # $setup_args is a list of arguments
again=$(inside sh /srv/materia-src/scripts/setup_server.sh $setup_args 2>&1)
case "$again" in *"setup_server: 0 changes"*) ok "setup_server.sh again: 0 changes" ;; *) fail "setup_server.sh is not idempotent: $again" ;; esac
materia_uid=$(inside id -u materia)
chown -R "$materia_uid:$materia_uid" "$work/origin.git"
if [ "${REHEARSAL_BUILD_CACHE:-}" = 1 ] && [ -d "$cache/build" ]; then
    for d in target:.cache/materia/target registry:.cargo/registry npm:.cache/materia/npm pip:.cache/pip; do
        [ -d "$cache/build/${d%%:*}" ] || continue
        mkdir -p "$root/opt/materia/$(dirname "${d#*:}")"
        cp -a "$cache/build/${d%%:*}" "$root/opt/materia/${d#*:}"
    done
    chown -R "$materia_uid:$materia_uid" "$root/opt/materia/.cache" "$root/opt/materia/.cargo"
    ok "build caches of the last rehearsal seeded (REHEARSAL_BUILD_CACHE=1)"
fi

# --- the releases: the server's settings encrypted to the server's age key ------------------
age_recipient=$(inside age-keygen -y /opt/materia/.config/sops/age/keys.txt)
cat >"$work/plain.env" <<EOF
LANDING_DIR=/data/materia/landing
STATE_DB=/data/materia/landing/.state.sqlite
DUCKDB_PATH=/data/materia/lakehouse.duckdb
SERVING_DUCKDB_PATH=/data/materia/analytics.duckdb
METRICS_DIR=/var/lib/node_exporter/textfile_collector
PSD_URL=http://127.0.0.1:$psd_port/psd_alldata_csv.zip
PRICES_URL=http://127.0.0.1:$psd_port/fredgraph.csv
BACKUP_REMOTE=r2:materia/rehearsal
R2_ACCESS_KEY_ID=rehearsal
R2_SECRET_ACCESS_KEY=rehearsal-secret
R2_ENDPOINT=http://127.0.0.1:$moto_port
MATERIA_HEALTH_WAIT_SECS=900
MATERIA_HEALTH_POLL_SECS=5
MATERIA_WEB_LISTEN=127.0.0.1:$web_port
EOF
(cd "$work" && env -i PATH=/usr/bin:/bin "$tools/bin/sops" --encrypt --age "$age_recipient" \
    --input-type dotenv --output-type dotenv plain.env >"$src/.env.prod.sops")
# release TAG MESSAGE [KEY]: commits what changed in $src, tags it, pushes. The tag is signed
# with KEY (an SSH key; default the release key), or not signed at all when KEY is "-".
release() {
    hgit -C "$src" add -A
    hgit -C "$src" commit -q --allow-empty -m "$2"
    if [ "${3:-$work/sign}" = - ]; then
        hgit -C "$src" tag -a -m "$2" "$1"
    else
        hgit -C "$src" -c gpg.format=ssh -c user.signingkey="${3:-$work/sign}" tag -s -m "$2" "$1"
    fi
    hgit -C "$src" push -q origin main "refs/tags/$1"
    chown -R "$materia_uid:$materia_uid" "$work/origin.git"
}
release v1 "rehearsal v1: the working tree, with the server's secrets"

# The rehearsal's schedule: the timers fire within seconds instead of hours (drop-ins; the
# units themselves are the committed ones).
mkdir -p "$root/etc/systemd/system/materia-backup.timer.d" "$root/etc/systemd/system/materia-deploy.timer.d"
printf '[Timer]\nOnCalendar=\nOnCalendar=*:*:0/30\nRandomizedDelaySec=0\nAccuracySec=1s\n' \
    >"$root/etc/systemd/system/materia-backup.timer.d/rehearsal.conf"
# One empty assignment resets all of a timer's triggers (OnActiveSec= and OnUnitInactiveSec=
# alike, systemd.timer(5)): a second one would drop the OnActiveSec= before it, and the timer,
# never having run its unit, would never fire.
printf '[Timer]\nOnActiveSec=\nOnActiveSec=15s\nOnUnitInactiveSec=10s\nAccuracySec=1s\n' \
    >"$root/etc/systemd/system/materia-deploy.timer.d/rehearsal.conf"
mkdir -p "$root/etc/systemd/system/materia-web.socket.d"
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$web_port" \
    >"$root/etc/systemd/system/materia-web.socket.d/rehearsal.conf"

log "bootstrap_supervisor.sh (clone, make release of v1 as materia: a cold build, then the units)"
t0=$(date +%s)
inside --timeout "$bootstrap_timeout_secs" sh /srv/materia-src/scripts/bootstrap_supervisor.sh \
    --repo file:///srv/origin.git >"$work/bootstrap.log" 2>&1 || {
    tail -n 40 "$work/bootstrap.log" >&2
    fail "bootstrap_supervisor.sh"
}
grep -q "backups go to r2:materia/rehearsal" "$work/bootstrap.log" || fail "item 12: bootstrap did not enable backups: $(tail -n 5 "$work/bootstrap.log")"
ok "bootstrap_supervisor.sh: v1 built and current in $(($(date +%s) - t0))s; backups enabled (R2 credentials present)"
[ "$(readlink "$root/opt/materia/current")" = releases/v1 ] || fail "current is $(readlink "$root/opt/materia/current")"
for u in materia-supervisor.service materia-backup.timer materia-deploy.timer materia-web.socket; do
    inside systemctl is-enabled --quiet "$u" || fail "$u is not enabled"
done
triggers=$(inside systemctl show -P TimersMonotonic materia-deploy.timer)
for t in OnActiveUSec=15s OnUnitInactiveUSec=10s; do
    case "$triggers" in *"$t"*) ;; *) fail "materia-deploy.timer lacks $t: its triggers are $triggers" ;; esac
done

r=$(probe numpy-old old "/opt/materia/current/.venv/bin/python -c 'import numpy'")
[ "$r" = "signal 31" ] || fail "regression (item 0): SQLMesh's Python (numpy) under the old filter ended '$r', not killed by SIGSYS"
ok "regression (item 0): the old filter kills SQLMesh's Python at 'import numpy' (OpenBLAS calls mbind): $r"
r=$(probe numpy-supervisor materia-supervisor.service "/opt/materia/current/.venv/bin/python -c 'import numpy'")
[ "$r" = "success 0" ] || fail "item 0: SQLMesh's Python under materia-supervisor.service's filter ended '$r'"
ok "item 0: SQLMesh's Python runs under materia-supervisor.service's filter ($r)"

# --- a supervisor cycle under the hardened unit, as materia ----------------------------------
# first_cycle_since ISO: both extractors of workflows.toml, transform and export-serving all
# ended well after ISO. cycle_since ISO: transform and export-serving did (a later cycle runs
# only the extractors that are due, and after a restart within the day none is).
first_cycle_since() {
    [ "$(ledger "SELECT count(DISTINCT step) FROM runs WHERE step IN ('extract-psd','extract-prices','transform','export-serving') AND status IN ('success','unchanged') AND started_at >= '$1'")" = 4 ]
}
cycle_since() {
    [ "$(ledger "SELECT count(DISTINCT step) FROM runs WHERE step IN ('transform','export-serving') AND status IN ('success','unchanged') AND started_at >= '$1'")" = 2 ]
}
until_true "$cycle_timeout_secs" "a supervisor cycle" first_cycle_since 2000
[ "$(inside systemctl show -P User materia-supervisor.service)" = materia ] || fail "the supervisor does not run as materia"
journal_sup=$(inside journalctl -u materia-supervisor.service --no-pager)
case "$journal_sup" in *"status=31/SYS"* | *"Bad system call"* | *"Read-only file system"*) fail "item 0: $journal_sup" ;; esac
ok "item 0: a cycle (extract-psd, extract-prices, transform, export-serving) succeeded under materia-supervisor.service as materia"
landed=$(find "$root/data/materia/landing/psd" -name '*.csv.gzip' | wc -l)
[ "$landed" -eq 1 ] || fail "$landed landing files, expected 1"

# --- the web app under its hardened unit, as materia, on the socket systemd holds ------------
# web_pid: materia-web.service's main process (0 when it does not run).
web_pid() { inside systemctl show -P MainPID materia-web.service; }
# get PATH: the web app's answer to GET PATH, asked from inside the container.
get() { inside curl -fsS --max-time 10 "http://127.0.0.1:$web_port$1"; }
# web_answers WHAT: /healthz says ok and / is the coffee dashboard, served by materia's
# materia-web.service from the release current points to.
web_answers() {
    h=$(get /healthz) || fail "$1: GET /healthz failed ($(inside systemctl is-active materia-web.service))"
    case "$h" in '{"status":"ok",'*) ;; *) fail "$1: /healthz answered $h" ;; esac
    get / | grep -q 'Coffee' || fail "$1: / is not the dashboard"
    p=$(web_pid)
    [ "$p" -gt 0 ] || fail "$1: materia-web.service has no main process"
    [ "$(inside ps -o user= -p "$p")" = materia ] || fail "$1: materia-web runs as $(inside ps -o user= -p "$p")"
    exe=$(inside readlink "/proc/$p/exe")
    [ "$exe" = "/opt/materia/$(current)/bin/materia-web" ] || fail "$1: materia-web runs $exe, not $(current)'s"
    case "$(inside journalctl -u materia-web.service --no-pager)" in
        *"status=31/SYS"* | *"Bad system call"*) fail "$1: materia-web was killed by its system-call filter" ;;
    esac
    [ "$(inside systemctl show -P User materia-web.service)" = materia ] || fail "$1: materia-web.service is not materia's"
}
current() { readlink "$root/opt/materia/current"; }
web_healthy() { get /healthz | grep -q '^{"status":"ok",'; }
# The app started before the first export; it takes up the serving file once there is one.
until_true 120 "materia-web's /healthz to answer ok after the first cycle" web_healthy
web_answers "web"
web_pid_v1=$(web_pid)
ok "web: materia-web.service (pid $web_pid_v1, as materia, $(current)'s binary) answers /healthz ok and / on materia-web.socket"

# --- metrics readable by another user (item 4) ----------------------------------------------
for m in extract_psd transform export_serving; do
    f=/var/lib/node_exporter/textfile_collector/materia_$m.prom
    inside setpriv --reuid=65534 --regid=65534 --clear-groups cat "$f" >/dev/null ||
        fail "item 4: $f is not readable by nobody ($(inside stat -c '%U %a' "$f"))"
done
ok "item 4: every metrics file is readable by another user (nobody)"

# --- backups: the timer fires, rclone runs under the unit, objects arrive (item 1) ----------
backup_done() { [ "$(ledger "SELECT count(*) FROM step_runs WHERE step = 'backup-sync' AND status = 'success'")" -ge 1 ]; }
until_true "$backup_timeout_secs" "materia-backup.timer to fire and a push to succeed" backup_done
objects=$(r2 lsf -R r2:materia/rehearsal)
echo "$objects" | grep -q '^psd/.*\.csv\.gzip$' || fail "item 1: no landing file in the S3 server: $objects"
echo "$objects" | grep -q '^state/.*\.sqlite$' || fail "item 1: no state snapshot in the S3 server: $objects"
ok "item 1: materia-backup.timer fired, backup-sync pushed through rclone: $(echo "$objects" | grep -c .) objects in S3"

# --- v2 through materia-deploy.timer, killed with -9 right after the switch (items 2, 5, 6) --
echo "rehearsal v2" >"$src/REHEARSAL"
release v2 "rehearsal v2: a new release"
log "v2 pushed; waiting for materia-deploy.timer to build it (make release as materia) and switch"
# The timer fires 15 s after bootstrap started it: a poll has begun by now, or is about to.
polled() { [ "$(inside systemctl show -P LastTriggerUSecMonotonic materia-deploy.timer)" != 0 ]; }
until_true 60 "materia-deploy.timer to fire" polled
t0=$(date +%s)
deadline=$(($(date +%s) + deploy_timeout_secs))
until [ "$(current)" = releases/v2 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for the switch to v2"
    sleep 0.1
done
switch_at=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
main_pid=$(inside systemctl show -P MainPID materia-deploy.service)
[ "$main_pid" -gt 0 ] || fail "item 6: deploy-poll was not running after the switch"
inside kill -KILL "$main_pid"
ok "item 6: deploy-poll (pid $main_pid in the container) killed with SIGKILL right after the switch to v2, $(($(date +%s) - t0))s after the push"
deployed() { [ "$(ledger "SELECT count(*) FROM step_runs WHERE step = 'deploy-poll' AND status = 'success' AND detail LIKE 'deployed $1 %'")" -ge 1 ]; }
until_true "$deploy_timeout_secs" "the next poll to settle v2" deployed v2
[ "$(current)" = releases/v2 ] || fail "item 6: current is $(current) after settling v2"
inside journalctl -u materia-deploy.service --no-pager | grep -q "interrupted after the switch" ||
    fail "item 6: the next poll did not settle the interrupted deploy"
ok "item 6: the next poll restarted v2, ran its health check and recorded it deployed"
[ "$(inside stat -c %U /opt/materia/releases/v2/bin/deploy-poll)" = materia ] || fail "item 2: v2's binaries are not materia's"
deployed_at=$(ledger "SELECT min(finished_at) FROM step_runs WHERE step = 'deploy-poll' AND detail LIKE 'deployed v2 %'")
exported_at=$(ledger "SELECT min(finished_at) FROM step_runs WHERE step = 'export-serving' AND status IN ('success', 'unchanged') AND started_at >= '$switch_at'")
[ -n "$exported_at" ] || fail "item 5: v2 was recorded deployed without a cycle after the switch"
[ "$(printf '%s\n%s\n' "$exported_at" "$deployed_at" | sort | head -n 1)" = "$exported_at" ] ||
    fail "item 5: v2 was recorded deployed ($deployed_at) before its first cycle ended ($exported_at)"
command -v "$root/usr/bin/sudo" >/dev/null 2>&1 && fail "item 2: sudo is installed in the container"
ok "item 2: v2 built by make release as materia under materia-deploy.service (NoNewPrivileges, no sudo on the server)"
ok "item 5: the default health check passed only once every step had succeeded since the restart"
until_true 120 "materia-web's /healthz to answer ok after the deploy of v2" web_healthy
web_answers "web after the deploy of v2"
[ "$(web_pid)" != "$web_pid_v1" ] || fail "web: the deploy of v2 did not restart materia-web.service (pid $web_pid_v1)"
ok "web: the deploy of v2 restarted materia-web.service (pid $web_pid_v1 -> $(web_pid)), which runs v2's binary"

# --- v3, whose steps fail: rolled back by the health check, recorded, never retried (item 5) --
printf '\nSELECT this is not sql (\n' >>"$src/transform/models/serving/estimate_revisions.sql"
release v3 "rehearsal v3: a model that does not parse"
log "v3 pushed: its transform fails"
rolled_back() { [ "$(ledger "SELECT count(*) FROM deploy_bad_tags WHERE tag = 'v3'")" = 1 ]; }
until_true "$deploy_timeout_secs" "v3 to be rolled back" rolled_back
[ "$(current)" = releases/v2 ] || fail "item 5: current is $(current) after v3 failed"
reason=$(ledger "SELECT reason FROM deploy_bad_tags WHERE tag = 'v3'")
case "$reason" in *"transform failed"*) ;; *) fail "item 5: v3 is bad for another reason: $reason" ;; esac
ok "item 5: v3 rolled back to v2 by the health check: $(echo "$reason" | head -n 1)"
polls=$(ledger "SELECT count(*) FROM step_runs WHERE step = 'deploy-poll'")
more_polls() { [ "$(ledger "SELECT count(*) FROM step_runs WHERE step = 'deploy-poll'")" -ge $((polls + 3)) ]; }
until_true 120 "three more polls" more_polls
[ "$(ledger "SELECT count(*) FROM step_runs WHERE step = 'deploy-poll' AND detail LIKE '% v3 %'")" = 1 ] ||
    fail "item 5: v3 was tried again: $(ledger "SELECT detail FROM step_runs WHERE step = 'deploy-poll'")"
until_true "$cycle_timeout_secs" "v2's supervisor to complete a cycle after the rollback" cycle_since "$(ledger "SELECT max(started_at) FROM step_runs WHERE step = 'deploy-poll' AND detail LIKE 'rolled-back v3 %'")"
ok "item 5: v3 never retried in three more polls, and v2's supervisor completes cycles again"

# --- trust boundaries (issue 22): what the service user plants never reaches root ------------
# as_materia CMD...: CMD as the service user inside, as a compromised step would run it.
as_materia() {
    inside setpriv --reuid="$materia_uid" --regid="$materia_uid" --clear-groups \
        env HOME=/opt/materia PATH=/usr/local/bin:/usr/bin:/bin "$@"
}
# The web process: no secret in its environment, and the keys and secrets are out of its reach.
p=$(web_pid)
web_env=$(inside cat "/proc/$p/environ" | tr '\0' '\n')
case "$web_env" in *R2_*) fail "item 22.4: materia-web's environment holds an R2 variable" ;; esac
case "$web_env" in *rehearsal-secret*) fail "item 22.4: materia-web's environment holds the R2 secret" ;; esac
for f in /opt/materia/.config/sops/age/keys.txt /opt/materia/.ssh/id_ed25519 \
    /etc/materia/env/current/backup.env /opt/materia/current/.env.prod.sops; do
    if inside nsenter -t "$p" -m setpriv --reuid="$materia_uid" --regid="$materia_uid" --clear-groups cat "$f" >/dev/null 2>&1; then
        case "$f" in
            *.env.prod.sops) ;; # encrypted, readable by design
            *) fail "item 22.4: materia-web's sandbox can read $f" ;;
        esac
    else
        case "$f" in *.env.prod.sops) fail "item 22.4: the probe cannot even read the encrypted $f (the probe is broken)" ;; esac
    fi
done
plaintext=$(find "$root/opt/materia/releases" -maxdepth 2 -name .env)
[ -z "$plaintext" ] || fail "item 22.4: decrypted secrets left in the releases: $plaintext"
sup_env=$(inside cat "/proc/$(inside systemctl show -P MainPID materia-supervisor.service)/environ" | tr '\0' '\n')
case "$sup_env" in *R2_SECRET*) fail "item 22.4: the supervisor's environment holds the R2 secret" ;; esac
grep -q '^R2_SECRET_ACCESS_KEY=' "$root/etc/materia/env/current/backup.env" || fail "item 22.4: backup.env lacks the R2 key"
for u in supervisor deploy web; do
    grep -q '^R2_SECRET_ACCESS_KEY=\|^R2_ACCESS_KEY_ID=' "$root/etc/materia/env/current/$u.env" && fail "item 22.4: $u.env holds R2 credentials"
    [ "$(stat -c '%u %a' "$root/etc/materia/env/current/$u.env")" = "0 600" ] || fail "item 22.4: $u.env is not root 0600"
done
ok "item 22.4: materia-web (pid $p) holds no secret in its environment and cannot read the age key, the deploy key or backup.env; only backup.env has the R2 keys (root 0600); no plaintext left in a release"

# The polkit rule: materia may do exactly what a deploy does.
as_materia systemctl start materia-units.service || fail "item 22.2: materia cannot start materia-units.service"
as_materia systemctl restart materia-web.service || fail "issue 23.1: materia cannot restart materia-web.service (polkitd from setup_server.sh)"
if as_materia systemctl restart materia-backup.timer 2>/dev/null; then fail "item 22.2: materia may restart materia-backup.timer"; fi
if as_materia systemctl stop materia-supervisor.service 2>/dev/null; then fail "item 22.2: materia may stop the supervisor"; fi
ok "issue 23.1 / item 22.2: as materia, restarting materia-web.service and starting materia-units.service work; restarting materia-backup.timer or stopping the supervisor is refused"

# Bootstrap after the rollback of v3 (issue 23.4): v3 stays bad, nothing moves, it says so.
inside sh /srv/materia-src/scripts/bootstrap_supervisor.sh --repo file:///srv/origin.git >"$work/rerun.log" 2>&1 ||
    fail "issue 23.4: bootstrap re-run: $(tail -n 5 "$work/rerun.log")"
[ "$(current)" = releases/v2 ] || fail "issue 23.4: bootstrap moved current to $(current)"
grep -q "v2 is current" "$work/rerun.log" || fail "issue 23.4: $(cat "$work/rerun.log")"
if inside sh /srv/materia-src/scripts/bootstrap_supervisor.sh --repo file:///srv/origin.git --tag v3 >"$work/rerun.log" 2>&1; then
    fail "issue 23.4: bootstrap --tag v3 (recorded bad) succeeded"
fi
grep -q "v3 is recorded bad" "$work/rerun.log" || fail "issue 23.4: $(cat "$work/rerun.log")"
ok "issue 23.4: bootstrap re-run after the rollback keeps v2 and refuses the bad v3 ($(tail -n 1 "$work/rerun.log"))"

# The plants. Nothing runs meanwhile that would trip over them.
inside systemctl stop materia-deploy.timer materia-supervisor.service
deploy_idle() { [ "$(inside systemctl show -P ActiveState materia-deploy.service)" != activating ]; }
until_true 600 "the running poll to end" deploy_idle
# fp: what root owns and must not change.
fp() {
    inside sh -c 'stat -c "%n %u:%g %a" /etc /etc/shadow /etc/passwd /root /etc/systemd/system; sha256sum /etc/shadow /etc/passwd; ls -la /root /etc/systemd/system | sha256sum'
}
before=$(fp)
bootstrap_again() {
    inside sh /srv/materia-src/scripts/bootstrap_supervisor.sh --repo file:///srv/origin.git "$@" >"$work/hostile.log" 2>&1
}
setup_again() {
    # shellcheck disable=SC2086 # $setup_args is a list of arguments
    inside sh /srv/materia-src/scripts/setup_server.sh $setup_args >"$work/hostile.log" 2>&1
}
for plant in "/data/materia/landing:/etc" "/opt/materia/.ssh/id_ed25519:/etc/shadow"; do
    path=${plant%%:*}
    as_materia sh -c "mv '$path' '$path.aside' && ln -s '${plant#*:}' '$path'" || fail "planting $plant"
    if setup_again; then fail "item 22.1: setup_server.sh followed $path -> ${plant#*:}: $(cat "$work/hostile.log")"; fi
    grep -q "refused: $path is a symbolic link" "$work/hostile.log" || fail "item 22.1: $(tail -n 3 "$work/hostile.log")"
    # Bootstrap refuses a link where its lock lives, and does not care about the deploy key's.
    case "$path" in
        /data/*)
            if bootstrap_again --no-start; then fail "item 22.1: bootstrap went on with $path -> ${plant#*:}"; fi
            grep -q "refused: $path is a symbolic link" "$work/hostile.log" || fail "item 22.1: bootstrap: $(tail -n 3 "$work/hostile.log")"
            ;;
        *) bootstrap_again --no-start || fail "item 22.1: bootstrap with $path -> ${plant#*:}: $(tail -n 5 "$work/hostile.log")" ;;
    esac
    [ "$(fp)" = "$before" ] || fail "item 22.1: root's files changed with $path -> ${plant#*:}: $(fp)"
    as_materia sh -c "rm '$path' && mv '$path.aside' '$path'"
    ok "item 22.1: $path -> ${plant#*:} planted by materia: setup_server.sh refuses it by name, and so does bootstrap where it matters; ${plant#*:} unchanged"
done
# .env.new as a link, a local tag v999999, a built marker for it, units with User=root in the
# current release's tree (a new one and a changed shipped one), a replaced tools/ and sops.
rm -rf "$root/etc/materia/env/v2"
as_materia sh -c '
    set -e
    ln -s /etc/materia-pwned /opt/materia/releases/v2/.env.new
    git -C /opt/materia/repo tag v999999 refs/tags/v2
    mkdir -p /opt/materia/releases/v999999 && echo planted >/opt/materia/releases/v999999/.materia-built
    printf "[Service]\nUser=root\nExecStart=/bin/touch /etc/pwned-by-unit\n" >/opt/materia/current/systemd/materia-evil.service
    printf "User=root\n" >>/opt/materia/current/systemd/materia-backup.service
    mkdir -p /opt/materia/tools/bin /opt/materia/.cargo/bin
    printf "#!/bin/sh\ntouch /etc/pwned-by-tools\n" >/opt/materia/tools/bin/sops
    cp /opt/materia/tools/bin/sops /opt/materia/.cargo/bin/sops
    chmod 0755 /opt/materia/tools/bin/sops /opt/materia/.cargo/bin/sops' || fail "planting as materia"
if bootstrap_again --no-start; then fail "item 22.1: bootstrap decrypted through the planted .env.new link: $(cat "$work/hostile.log")"; fi
[ ! -e "$root/etc/materia-pwned" ] || fail "item 22.1: the secrets were written through .env.new into /etc/materia-pwned"
grep -q "cannot decrypt" "$work/hostile.log" || fail "item 22.1: $(tail -n 3 "$work/hostile.log")"
# bootstrap's own clean-up (as materia) already removed the link itself, never its target.
as_materia rm -f /opt/materia/releases/v2/.env.new
setup_again || fail "item 22.1: setup_server.sh with the plants: $(tail -n 5 "$work/hostile.log")"
bootstrap_again --no-start || fail "item 22.1: bootstrap with the plants: $(tail -n 5 "$work/hostile.log")"
as_materia systemctl start materia-units.service || fail "item 22.3: materia-units.service"
[ "$(fp)" = "$before" ] || fail "item 22.1: root's files changed: $(fp)"
for f in /etc/materia-pwned /etc/pwned-by-unit /etc/pwned-by-tools /etc/systemd/system/materia-evil.service; do
    [ ! -e "$root$f" ] || fail "items 22.1-3: $f exists"
done
cmp -s "$root/etc/systemd/system/materia-backup.service" "$src/systemd/materia-backup.service" ||
    fail "item 22.3: the installed materia-backup.service is not the tag's"
[ -z "$(as_materia git -C /opt/materia/repo tag --list v999999)" ] || fail "item 22.3: the local tag v999999 survived"
[ "$(current)" = releases/v2 ] || fail "item 22.3: current is $(current)"
[ "$(readlink "$root/usr/local/bin/sops")" = /usr/local/lib/materia/sops/bin/sops ] || fail "item 22.1: /usr/local/bin/sops is $(readlink "$root/usr/local/bin/sops")"
[ "$(stat -c %u "$root/etc/materia/env/v2/backup.env")" = 0 ] || fail "item 22.4: the secrets of v2 are not back, root-owned"
ok "items 22.1-3: a symlinked .env.new, local tag v999999, a built marker, User=root units in the release, a replaced tools/ and sops: setup_server.sh, bootstrap and materia-units.service wrote nothing through them, installed none of them, ran none of them"
as_materia sh -c 'cd /opt/materia/current && git checkout -q -- systemd && rm -f systemd/materia-evil.service && rm -rf /opt/materia/tools /opt/materia/.cargo/bin/sops /opt/materia/releases/v999999'
bootstrap_again || fail "bootstrap after the plants: $(tail -n 5 "$work/hostile.log")"
inside systemctl is-active --quiet materia-supervisor.service || fail "bootstrap did not start the supervisor again"

# Tags that are not signed by an allowed signer are never deployed by the shipped units.
echo "rehearsal v4" >"$src/REHEARSAL"
release v4 "rehearsal v4: not signed" -
refused_tag() { [ "$(ledger "SELECT count(*) FROM deploy_bad_tags WHERE tag = '$1'")" = 1 ]; }
until_true "$deploy_timeout_secs" "materia-deploy.service to refuse the unsigned v4" refused_tag v4
echo "rehearsal v5" >"$src/REHEARSAL"
release v5 "rehearsal v5: signed by a key outside allowed_signers" "$work/stranger"
until_true "$deploy_timeout_secs" "materia-deploy.service to refuse v5 (a stranger's signature)" refused_tag v5
[ "$(current)" = releases/v2 ] || fail "item 22.3: current is $(current) after v4 and v5"
for t in v4 v5; do
    [ ! -e "$root/opt/materia/releases/$t/.materia-built" ] || fail "item 22.3: $t was built"
done
ok "item 22.3: the unsigned v4 ($(ledger "SELECT reason FROM deploy_bad_tags WHERE tag = 'v4'" | head -n 1 | cut -c1-80)) and v5 signed by a stranger were refused unbuilt by materia-deploy.service; v2 (signed) stays"

# --- EnvironmentFile= against the supervisor's reading of the same file (item 11) ------------
mkdir -p "$root/srv/fake-bin"
cat >"$root/srv/fake-bin/extract-psd" <<'EOF'
#!/bin/sh
for k in DOLLAR BACKTICK AMPERSAND SPACES DOUBLE SINGLE SEMI ESCAPED EMPTY; do
    eval "printf '%s=[%s]\n' $k \"\${$k-UNSET}\""
done
EOF
printf '#!/bin/sh\nexit 0\n' >"$root/srv/fake-bin/transform"
cp "$root/srv/fake-bin/transform" "$root/srv/fake-bin/export-serving"
cp "$root/srv/fake-bin/transform" "$root/srv/fake-bin/extract-prices"
chmod 0755 "$root/srv/fake-bin/"*
# The supervisor asks the real materia-status which extractors are due (none has run here).
ln -sf /opt/materia/current/bin/materia-status "$root/srv/fake-bin/materia-status"
fixture=/srv/materia-src/crates/operations/tests/fixtures/tricky.env
by_systemd=$(inside systemd-run --wait --pipe --quiet --collect -p "EnvironmentFile=$fixture" /bin/sh /srv/fake-bin/extract-psd)
by_supervisor=$(inside env MATERIA_ENV_FILE="$fixture" MATERIA_BIN_DIR=/srv/fake-bin MATERIA_WORKFLOWS=/srv/materia-src/workflows.toml sh /srv/materia-src/scripts/supervisor.sh --once 2>/dev/null)
[ "$by_systemd" = "$by_supervisor" ] || fail "item 11: systemd read
$by_systemd
the supervisor read
$by_supervisor"
ok "item 11: the supervisor reads MATERIA_ENV_FILE exactly as systemd's EnvironmentFile= does ($(echo "$by_systemd" | wc -l) values)"

# --- systemd-analyze security of the installed units ----------------------------------------
for u in materia-supervisor.service materia-backup.service materia-deploy.service materia-web.service; do
    score=$(inside systemd-analyze security --no-pager "$u" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    [ -n "$score" ] || fail "no exposure level for $u"
    awk -v s="$score" 'BEGIN { exit !(s <= 1.4) }' || fail "$u exposure $score is worse than 1.4"
    ok "systemd-analyze security $u: $score (no worse than 1.4)"
done

# --- reboot: timers persistent, nothing lost, the supervisor resumes ------------------------
last_backup=$(inside systemctl show -P LastTriggerUSec materia-backup.timer)
landing_before=$(find "$root/data/materia/landing/psd" -type f | sort | sha256sum)
runs_before=$(ledger "SELECT count(*) FROM runs")
boot_at=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
log "rebooting the container (poweroff, boot again)"
stop_container
remove_cgroup "$cg_unified"
remove_cgroup "$cg_systemd"
boot
[ -n "$last_backup" ] || fail "materia-backup.timer had never fired before the reboot"
after=$(inside systemctl show -P LastTriggerUSec materia-backup.timer)
case "$after" in "" | n/a) false ;; esac ||
    fail "materia-backup.timer lost its last trigger ($last_backup) across the reboot"
[ -f "$root/var/lib/systemd/timers/stamp-materia-backup.timer" ] || fail "materia-backup.timer has no persistent stamp"
for u in materia-backup.timer materia-deploy.timer materia-supervisor.service; do
    inside systemctl is-active --quiet "$u" || fail "$u is not active after the reboot"
done
until_true "$cycle_timeout_secs" "a cycle after the reboot" cycle_since "$boot_at"
[ "$(find "$root/data/materia/landing/psd" -type f | sort | sha256sum)" = "$landing_before" ] || fail "landing files changed across the reboot"
[ "$(ledger "SELECT count(*) FROM runs")" -gt "$runs_before" ] || fail "no new runs after the reboot"
[ "$(current)" = releases/v2 ] || fail "current is $(current) after the reboot"
[ "$(ledger "SELECT group_concat(tag, ' ') FROM (SELECT tag FROM deploy_bad_tags ORDER BY tag)")" = "v3 v4 v5" ] || fail "the bad tags changed across the reboot"
inside systemctl is-active --quiet materia-web.socket || fail "materia-web.socket is not active after the reboot"
until_true 120 "materia-web's /healthz to answer ok after the reboot" web_healthy
web_answers "web after the reboot"
ok "reboot: timers persistent (last backup $last_backup), landing and ledger kept, current v2, the supervisor resumed"
