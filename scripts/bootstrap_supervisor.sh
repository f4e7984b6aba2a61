#!/bin/sh
# First deployment on a server prepared by setup_server.sh: clones the repository through a
# read-only deploy key, checks out the newest release tag into /opt/materia/releases/<tag>,
# builds it there, decrypts its secrets, points /opt/materia/current at it, installs the systemd
# units and starts them (the supervisor, the backup and deploy timers, the web socket and app). Later releases arrive through deploy-poll (materia-deploy.timer).
# Idempotent: a second run changes nothing and says "0 changes".
#
# Usage (as root): scripts/bootstrap_supervisor.sh --repo URL [--deploy-key FILE] [--tag TAG]
#                  [--root DIR] [--no-start]
#   --repo URL        the release remote (git@gitlab.com:org/materia.git)
#   --deploy-key FILE private key of the repository's read-only deploy key (default: the one
#                     setup_server.sh generated, /opt/materia/.ssh/id_ed25519)
#   --tag TAG         release to install (default: the newest v* tag in deploy-poll's order)
#   --root DIR        apply under DIR instead of / (tests); implies --no-start
#   --no-start        install the units but do not enable or start them
# Environment: MATERIA_BUILD_CMD (default `make release`), SOPS_AGE_KEY_FILE (the server's age
# key for .env.prod.sops; default /opt/materia/.config/sops/age/keys.txt).
#
# Which tag is newest is deploy-poll's decision, never a second ordering here: without --tag,
# the first build is of git's highest version (pre-releases before their release), and then
# that release's own deploy-poll runs once, which deploys a newer tag if its order says so.
# materia-backup.timer is enabled only when the release's .env holds BACKUP_REMOTE and, for an
# r2: remote, the R2 credentials; bootstrap says which are missing.
set -eu

root=/
repo_url=""
key=""
tag=""
start=true
while [ $# -gt 0 ]; do
    case "$1" in
        --repo) repo_url=${2:?--repo needs a URL}; shift 2 ;;
        --deploy-key) key=${2:?--deploy-key needs a file}; shift 2 ;;
        --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; start=false; shift 2 ;;
        --no-start) start=false; shift ;;
        *) echo "bootstrap: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$repo_url" ] || { echo "bootstrap: --repo is required" >&2; exit 2; }
[ -z "$key" ] || [ -r "$key" ] || { echo "bootstrap: cannot read deploy key $key" >&2; exit 2; }
root=${root%/}
app=$root/opt/materia
[ -n "$key" ] || [ ! -r "$app/.ssh/id_ed25519" ] || key=$app/.ssh/id_ed25519
tag_given=$tag
repo=$app/repo
build_cmd=${MATERIA_BUILD_CMD:-make release}
[ -d "$app/releases" ] || { echo "bootstrap: $app/releases missing; run setup_server.sh first" >&2; exit 2; }
uid=$(stat -c %u "$app")
gid=$(stat -c %g "$app")

changes=0
changed() {
    changes=$((changes + 1))
    echo "bootstrap: $*" >&2
}

# Git runs as the owner of /opt/materia (git refuses repositories owned by someone else) with
# the deploy key and nothing from the caller's ssh configuration.
# The toolchain setup_server.sh installed for the service user is on its PATH.
as_owner() {
    if [ "$(id -u)" -eq 0 ] && [ "$uid" -ne 0 ]; then
        setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
            env HOME="$app" PATH="$app/.cargo/bin:$PATH" "$@"
    else
        "$@"
    fi
}
if [ -n "$key" ]; then
    # shellcheck disable=SC2089,SC2090 # git runs GIT_SSH_COMMAND through a shell: the quotes are for it
    GIT_SSH_COMMAND="ssh -i '$key' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -F /dev/null"
    # shellcheck disable=SC2090
    export GIT_SSH_COMMAND
fi

if [ ! -d "$repo/.git" ]; then
    rm -rf "$repo.new"
    as_owner git clone --quiet "$repo_url" "$repo.new"
    mv "$repo.new" "$repo"
    changed "cloned $repo_url"
else
    as_owner git -C "$repo" fetch --quiet --tags --prune origin
fi

if [ -z "$tag" ]; then
    # Only the first build's choice; deploy-poll decides below.
    tag=$(as_owner git -c versionsort.suffix=- -C "$repo" tag --list --sort=-version:refname -- 'v*' |
        grep -v '/' | head -n 1 || true)
    [ -n "$tag" ] || { echo "bootstrap: no v* tag in $repo_url" >&2; exit 1; }
fi
release=$app/releases/$tag

# A release directory is complete once .materia-built exists; anything else is a leftover.
if [ ! -f "$release/.materia-built" ]; then
    rm -rf "$release"
    # A local clone hard-links the objects: cheap, and independent of later pruning in repo/.
    as_owner git clone --quiet "$repo" "$release"
    as_owner git -C "$release" checkout --quiet --detach "refs/tags/$tag"
    (cd "$release" && as_owner sh -c "$build_cmd") || { echo "bootstrap: building $tag failed ($build_cmd)" >&2; exit 1; }
    as_owner touch "$release/.materia-built"
    changed "built $tag in $release"
fi

# Secrets: the release's .env (0600), which /opt/materia/.env points at through `current`.
if [ -f "$release/.env.prod.sops" ] && [ ! -f "$release/.env" ]; then
    export SOPS_AGE_KEY_FILE="${SOPS_AGE_KEY_FILE:-$app/.config/sops/age/keys.txt}"
    sops=$(command -v sops || echo "$release/.venv/bin/sops")
    (umask 077 && as_owner "$sops" --decrypt --input-type dotenv --output-type dotenv \
        "$release/.env.prod.sops" >"$release/.env.new") || {
        rm -f "$release/.env.new"
        echo "bootstrap: cannot decrypt $release/.env.prod.sops with $SOPS_AGE_KEY_FILE" >&2
        exit 1
    }
    mv "$release/.env.new" "$release/.env"
    changed "decrypted the secrets of $tag"
elif [ ! -f "$release/.env.prod.sops" ]; then
    echo "bootstrap: warning: $tag has no .env.prod.sops; the units need $app/.env" >&2
fi
if [ "$(readlink "$app/.env" 2>/dev/null || true)" != "current/.env" ]; then
    [ ! -e "$app/.env" ] || [ -L "$app/.env" ] || mv "$app/.env" "$app/.env.before-bootstrap"
    ln -sfn current/.env "$app/.env"
    changed "linked $app/.env to current/.env"
fi

if [ "$(readlink "$app/current" 2>/dev/null || true)" != "releases/$tag" ]; then
    ln -sfn "releases/$tag" "$app/current.new"
    mv -T "$app/current.new" "$app/current"
    changed "current is now $tag"
    first=true
else
    first=false
fi

# deploy-poll's order decides the newest tag: whenever current moved, the release's own
# deploy-poll runs once (nothing runs yet, so there is nothing to restart or check; the units
# start below). It records its run in the production state DB.
if [ "$first" = true ] && [ -z "$tag_given" ]; then
    if [ -x "$app/current/bin/deploy-poll" ]; then
        as_owner env STATE_DB="$root/data/materia/landing/.state.sqlite" \
            SOPS_AGE_KEY_FILE="${SOPS_AGE_KEY_FILE:-$app/.config/sops/age/keys.txt}" \
            "$app/current/bin/deploy-poll" --once --root "$app" \
            --build-cmd "$build_cmd" --restart-cmd true --health-cmd true >/dev/null || {
            echo "bootstrap: deploy-poll could not move on from $tag (see above); $tag stays current" >&2
        }
        now=$(basename "$(readlink "$app/current")")
        [ "$now" = "$tag" ] || { changed "deploy-poll chose $now over $tag"; tag=$now; release=$app/releases/$tag; }
    else
        echo "bootstrap: warning: $tag has no bin/deploy-poll; the newest tag was chosen by git alone" >&2
    fi
fi

units_changed=false
mkdir -p "$root/etc/systemd/system"
for unit in "$release"/systemd/*.service "$release"/systemd/*.timer "$release"/systemd/*.socket; do
    [ -f "$unit" ] || continue
    target=$root/etc/systemd/system/$(basename "$unit")
    if ! cmp -s "$unit" "$target"; then
        install -m 0644 "$unit" "$target"
        units_changed=true
        changed "installed $target"
    fi
done

# Backups need somewhere to go: BACKUP_REMOTE, and for an r2: remote the R2 credentials.
backup=materia-backup.timer
env_file=$release/.env
value_of() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$env_file" 2>/dev/null | tail -n 1; }
lacking=""
remote=$(value_of BACKUP_REMOTE)
[ -n "$remote" ] || lacking=" BACKUP_REMOTE"
case "$remote" in
    r2:*)
        for k in R2_ACCESS_KEY_ID R2_SECRET_ACCESS_KEY R2_ENDPOINT; do
            [ -n "$(value_of "$k")" ] || lacking="$lacking $k"
        done
        ;;
esac
if [ -n "$lacking" ]; then
    echo "bootstrap: $backup stays disabled: $app/.env lacks$lacking (add them to .env.prod.sops, release, run bootstrap again)" >&2
    backup=""
else
    echo "bootstrap: backups go to $remote" >&2
fi

if [ "$start" = true ]; then
    [ "$units_changed" = false ] || systemctl daemon-reload
    # The web socket before its service: systemd holds the socket, the service is started on
    # it (and now, so that it reads the serving file before the first request).
    for u in materia-supervisor.service $backup materia-deploy.timer \
        materia-web.socket materia-web.service; do
        if ! systemctl is-enabled --quiet "$u" || ! systemctl is-active --quiet "$u"; then
            systemctl enable --now --quiet "$u"
            changed "enabled and started $u"
        fi
    done
fi

echo "bootstrap: $tag is current; $changes changes" >&2
