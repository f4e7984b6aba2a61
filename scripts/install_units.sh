#!/bin/sh
# Installs the systemd units and the per-unit environment files of one release, as root, from
# its tag's git objects, never from a release directory (which the service user can write).
#
# The tag is exported from the service user's clone by the service user (`git bundle`, its
# output is data), fetched into a root-owned repository in a private temporary directory (git
# checks every object against its name), and verified there with root's own settings: an SSH
# signature by a key of the root-owned allowed_signers file, and a signed tag object that
# names the tag. Each unit is then checked before anything is installed: only materia-* names,
# every service runs as the service user (User=materia), no PermissionsStartOnly=, no
# privileged (+ !) Exec prefixes, no ambient capabilities, no aliases, no socket commands,
# timers and sockets start only materia-* units. One refusal installs nothing.
#
# The release's decrypted dotenv (written 0600 by deploy-poll or bootstrap) is read as the
# service user, split per unit into root-owned 0600 files under /etc/materia/env/<tag>/
# (R2_* and BACKUP_* only for materia-backup.service; other variables for every unit), and
# /etc/materia/env/current is pointed at that directory. The plaintext is then removed from
# the release.
#
# Usage (as root): scripts/install_units.sh [--root DIR] [--verify-only] [--no-reload]
#                  (--current | --tag TAG) [--env-from FILE]
#   --current        the tag DIR/opt/materia/current points to (what materia-units.service runs)
#   --tag TAG        this tag
#   --env-from FILE  the release's decrypted dotenv (default: <release>/.env)
#   --verify-only    verify the tag and stop
#   --no-reload      no systemctl daemon-reload (implied by --root)
# Unsigned tags are accepted only when root created DIR/etc/materia/allow-unsigned
# (bootstrap_supervisor.sh --allow-unsigned, development servers).
# Exit codes: 0 installed (or nothing to change), 1 refused or failed (nothing changed), 2 usage.
set -eu

root=/
mode=""
tag=""
env_from=""
verify_only=false
reload=true
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; reload=false; shift 2 ;;
        --current) mode=current; shift ;;
        --tag) mode=tag; tag=${2:?--tag needs a tag}; shift 2 ;;
        --env-from) env_from=${2:?--env-from needs a file}; shift 2 ;;
        --verify-only) verify_only=true; shift ;;
        --no-reload) reload=false; shift ;;
        *) echo "install_units: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$mode" ] || { echo "install_units: --current or --tag TAG is required" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install_units: run as root" >&2; exit 2; }
root=${root%/}
app=$root/opt/materia
etc=$root/etc/materia
user=materia
uid=$(awk -F: -v u="$user" '$1 == u {print $3}' "$root/etc/passwd")
gid=$(awk -F: -v u="$user" '$1 == u {print $4}' "$root/etc/passwd")
[ -n "$uid" ] || { echo "install_units: no user $user in $root/etc/passwd; run setup_server.sh first" >&2; exit 2; }

refuse() {
    echo "install_units: refused: $*; nothing installed" >&2
    exit 1
}

if [ "$mode" = current ]; then
    # Only the link's last component is used, and only as a tag name that must verify.
    tag=$(basename "$(readlink "$app/current" 2>/dev/null || true)")
    if [ -z "$tag" ] || [ "$tag" = . ]; then refuse "$app/current does not point at a release"; fi
fi
case "$tag" in
    '' | .* | -* | */* | *[!A-Za-z0-9._+-]*) refuse "tag '$tag' is not one plain release name" ;;
esac
[ -n "$env_from" ] || env_from=$app/releases/$tag/.env

# as_user CMD...: the service user's rights and nothing of root's.
as_user() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
        env -i HOME=/nonexistent PATH=/usr/bin:/bin GIT_CONFIG_NOSYSTEM=1 "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Root's git: its own repository, no system or global configuration.
rgit() {
    env -i HOME="$work" PATH=/usr/bin:/bin GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
        git -C "$work/verify.git" "$@"
}
as_user git -C "$app/repo" bundle create - "refs/tags/$tag" >"$work/tag.bundle" 2>"$work/bundle.err" ||
    refuse "tag $tag is not in $app/repo ($(tail -n 1 "$work/bundle.err"))"
git init --quiet --bare "$work/verify.git"
rgit -c transfer.fsckObjects=true fetch --quiet "$work/tag.bundle" "refs/tags/$tag:refs/tags/$tag" 2>"$work/fetch.err" ||
    refuse "tag $tag: its objects do not verify ($(tail -n 1 "$work/fetch.err"))"

if [ -e "$etc/allow-unsigned" ]; then
    echo "install_units: warning: $etc/allow-unsigned exists: tag $tag is installed without a signature check" >&2
else
    signers=$etc/allowed_signers
    if [ ! -f "$signers" ] || [ -L "$signers" ] || [ "$(stat -c %u "$signers")" != 0 ]; then
        refuse "tag $tag cannot be verified: $signers is not a root-owned file (setup_server.sh --allowed-signers FILE)"
    fi
    object=$(rgit cat-file tag "refs/tags/$tag" 2>/dev/null) || refuse "tag $tag is not an annotated, signed tag"
    case "$object" in
        *"-----BEGIN SSH SIGNATURE-----"*) ;;
        *) refuse "tag $tag has no SSH signature (only SSH signatures by a key of $signers are trusted)" ;;
    esac
    rgit -c gpg.format=ssh -c "gpg.ssh.allowedSignersFile=$signers" -c gpg.ssh.program=ssh-keygen \
        -c gpg.program=false verify-tag "refs/tags/$tag" >/dev/null 2>"$work/verify.err" ||
        refuse "tag $tag has no signature by a key of $signers ($(tail -n 1 "$work/verify.err"))"
    named=$(printf '%s\n' "$object" | sed -n '/^$/q; s/^tag //p')
    [ "$named" = "$tag" ] || refuse "tag $tag is a signed tag object named '$named': a signed tag published under another name"
fi
if [ "$verify_only" = true ]; then
    echo "install_units: tag $tag verified" >&2
    exit 0
fi

# The units, from the verified tree: regular files of systemd/ only.
mkdir "$work/units"
rgit ls-tree "refs/tags/$tag" systemd/ >"$work/tree"
while IFS= read -r line; do
    meta=${line%%"	"*}
    name=${line#*"	"systemd/}
    # shellcheck disable=SC2086 # mode, type and object of ls-tree, split on spaces
    set -- $meta
    case "$name" in
        materia-units.service) refuse "$tag's systemd/$name: the name of root's own installer unit" ;;
        materia-*.service | materia-*.timer | materia-*.socket) ;;
        *) refuse "$tag's systemd/$name: only materia-*.service, .timer and .socket units are installed" ;;
    esac
    case "$name" in *[!A-Za-z0-9@._-]*) refuse "$tag's systemd/$name: not a plain unit name" ;; esac
    [ "$1 $2" = "100644 blob" ] || refuse "$tag's systemd/$name is not a regular file ($1 $2)"
    rgit cat-file blob "$3" >"$work/units/$name"
done <"$work/tree"

# check_unit FILE: the rules above, on the unit with continuation lines joined and the
# spaces around '=' removed (as systemd reads it). Prints the first rule broken.
check_unit() {
    awk -v name="$(basename "$1")" '
        function bad(why) { print why; broken = 1; exit }
        /^[ \t]*[#;]/ { next }
        {
            line = (pending != "") ? pending $0 : $0
            if (line ~ /\\$/) { pending = substr(line, 1, length(line) - 1) " "; next }
            pending = ""
            sub(/^[ \t]+/, "", line); sub(/[ \t]+$/, "", line)
            if (line ~ /^\[/) { section = line; next }
            eq = index(line, "=")
            if (eq == 0) next
            key = substr(line, 1, eq - 1); value = substr(line, eq + 1)
            sub(/[ \t]+$/, "", key); sub(/^[ \t]+/, "", value)
            if (key == "PermissionsStartOnly") bad("PermissionsStartOnly= is not allowed")
            if (key == "User") { if (value != "materia") bad("User=" value " (services run as materia)"); user = 1 }
            if (key == "Group" && value != "materia") bad("Group=" value " (only materia)")
            if (key == "SupplementaryGroups" && value != "" && value != "materia") bad("SupplementaryGroups=" value)
            if (key == "DynamicUser") bad("DynamicUser= (services run as materia)")
            if (key == "AmbientCapabilities" && value != "") bad("AmbientCapabilities=" value)
            if (key == "Alias") bad("Alias= installs a unit under another name")
            if (key ~ /^Exec/) {
                if (name !~ /\.service$/) bad(key "= in a " name " (only services run commands)")
                prefix = value; sub(/[^-@:+!].*$/, "", prefix)
                if (prefix ~ /[+!]/) bad(key "=" value " (a + or ! prefix runs with privileges)")
            }
            if ((key == "Unit" || key == "Service") && value !~ /^materia-[A-Za-z0-9@._-]+$/) bad(key "=" value " (only materia-* units)")
        }
        END {
            if (broken) exit 1
            if (name ~ /\.service$/ && !user) { print "no User=materia (a service without User= runs as root)"; exit 1 }
        }' "$1"
}
found=0
for unit in "$work/units"/*; do
    [ -f "$unit" ] || continue
    found=$((found + 1))
    why=$(check_unit "$unit") || refuse "$tag's systemd/$(basename "$unit"): ${why:-unreadable}"
done
[ "$found" -gt 0 ] || refuse "tag $tag has no units in systemd/"

changes=0
changed() {
    changes=$((changes + 1))
    echo "install_units: $*" >&2
}
mkdir -p "$root/etc/systemd/system"
for unit in "$work/units"/*; do
    target=$root/etc/systemd/system/$(basename "$unit")
    if ! cmp -s "$unit" "$target"; then
        cp "$unit" "$target.new"
        chmod 0644 "$target.new"
        mv -f "$target.new" "$target"
        changed "installed $target from tag $tag"
    fi
done
units_changed=$changes

# Per-unit environment files. The backup's variables (R2_*, BACKUP_*) go only to
# materia-backup.service; MATERIA_ALERT_* to the units that alert (not the web app); other
# variables whose names say they are secret go to none; the rest
# (paths, URLs, bounds) to every unit.
env_dir=$etc/env/$tag
if as_user cat "$env_from" >"$work/env" 2>/dev/null; then
    mkdir -p "$work/env.d"
    for u in supervisor backup deploy web alert; do : >"$work/env.d/$u.env"; done
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'* | ';'*) continue ;; esac
        k=${line%%=*}
        k=$(printf '%s' "$k" | tr -d ' \t')
        case "$k" in
            R2_* | BACKUP_*) targets=backup ;;
            # A webhook URL may carry its token: the units that alert, never the web app.
            MATERIA_ALERT_*) targets="supervisor backup deploy alert" ;;
            *SECRET* | *TOKEN* | *PASSWORD* | *PASSPHRASE* | *PRIVATE* | *ACCESS_KEY*)
                echo "install_units: warning: $k looks secret and no unit is known to need it; given to none" >&2
                targets="" ;;
            *) targets="supervisor backup deploy web alert" ;;
        esac
        for u in $targets; do printf '%s\n' "$line" >>"$work/env.d/$u.env"; done
    done <"$work/env"
    same=true
    for u in supervisor backup deploy web alert; do
        cmp -s "$work/env.d/$u.env" "$env_dir/$u.env" || same=false
    done
    if [ "$same" = false ]; then
        mkdir -p "$etc/env"
        chmod 0700 "$etc/env"
        rm -rf "$env_dir.new"
        (umask 077 && mkdir "$env_dir.new")
        for u in supervisor backup deploy web alert; do
            (umask 077 && cp "$work/env.d/$u.env" "$env_dir.new/$u.env")
        done
        rm -rf "$env_dir"
        mv "$env_dir.new" "$env_dir"
        changed "wrote the environment files of $tag ($env_dir, root 0600)"
    fi
    # The plaintext leaves the service user's tree (removed with the user's rights).
    as_user rm -f "$env_from"
elif [ ! -d "$env_dir" ]; then
    echo "install_units: warning: no environment for $tag: cannot read $env_from as $user, and $env_dir does not exist" >&2
fi
if [ -d "$env_dir" ] && [ "$(readlink "$etc/env/current" 2>/dev/null || true)" != "$tag" ]; then
    ln -sfn "$tag" "$etc/env/current.new"
    mv -T "$etc/env/current.new" "$etc/env/current"
    changed "$etc/env/current is now $tag"
fi

if [ "$reload" = true ] && [ "$units_changed" -gt 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "install_units: $tag: $changes changes" >&2
