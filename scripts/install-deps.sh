#!/bin/sh
# Installs the system tools that builds, tests, the demo and benchmarks need, from Debian's
# packages, only where missing. Idempotent: with everything present it changes nothing.
# Usage: scripts/install-deps.sh [build|secrets|test|bench|rehearsal|all]
#   build: what `make release` needs on a server (run as the service user, who cannot install
#          anything: there a missing tool is an error naming it, and setup_server.sh installs
#          them); secrets: sops's virtualenv and age (make secrets-*); test: build + the tools
#          the tests drive; bench: the baselines' tools;
#          rehearsal: test + a container with a real systemd (`make rehearsal`).
set -eu

profile=${1:-all}

# command -> Debian package
need_build="python3:python3 cc:gcc git:git npm:npm openssl:openssl timeout:coreutils"
need_test="$need_build shellcheck:shellcheck dash:dash curl:curl systemd-analyze:systemd git:git rclone:rclone age-keygen:age ssh-keygen:openssh-client setpriv:util-linux unshare:util-linux mount:mount useradd:passwd rsync:rsync c++:g++ systemd-socket-activate:systemd chromium:chromium promtool:prometheus"
need_secrets="python3:python3 age-keygen:age"
need_bench="pigz:pigz unzip:unzip curl:curl wrk:wrk nginx:nginx"
need_rehearsal="$need_test systemd-nspawn:systemd-container debootstrap:debootstrap zstd:zstd nsenter:util-linux"
case "$profile" in
    build) wanted=$need_build ;;
    secrets) wanted=$need_secrets ;;
    test) wanted=$need_test ;;
    bench) wanted=$need_bench ;;
    rehearsal) wanted=$need_rehearsal ;;
    all) wanted="$need_rehearsal $need_bench" ;;
    *) echo "install-deps: unknown profile '$profile' (build, secrets, test, bench, rehearsal or all)" >&2; exit 2 ;;
esac
# GNU time, for the tests' and benchmarks' peak RSS figures (a shell keyword or builtin called
# "time" does not count); a release build does not need it.
[ "$profile" = build ] || [ -x /usr/bin/time ] || wanted="$wanted /usr/bin/time:time"

missing=""
for pair in $wanted; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done
# `python3 -m venv` needs Debian's python3-venv (ensurepip) besides python3 itself.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing="$missing python3-venv"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo -n"
else
    echo "install-deps: missing:$missing; install them (apt-get install$missing) or run as root" >&2
    exit 1
fi
echo "install-deps: installing$missing" >&2
# shellcheck disable=SC2086 # word splitting of the package list is intended
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
