#!/bin/sh
# First deployment on a server prepared by setup_server.sh: clones the repository through a
# read-only deploy key, verifies the newest release tag (an SSH signature by a key of the
# root-owned /etc/materia/allowed_signers, the name it was signed with), checks it out into
# /opt/materia/releases/<tag>, builds it there, decrypts its secrets, points /opt/materia/current
# at it, installs the systemd units and the per-unit environment files from the verified tag
# (scripts/install_units.sh) and starts them (the supervisor, the backup and deploy timers, the
# web socket and app). Later releases arrive through deploy-poll (materia-deploy.timer).
# Idempotent: a second run changes nothing and says "0 changes".
#
# Once a release is current, a re-run never moves `current` itself: a newer tag is deployed
# only by deploy-poll (its lock, its bad tags, restart, health check, rollback), which a
# re-run starts (materia-deploy.service) when the units run; otherwise it says so and changes
# nothing but the units and environment files of the current tag.
#
# Everything in the service user's directories is done with the service user's rights
# (setpriv): git, the build, the decryption of the secrets (written by that user), the
# removal of a half-built release. Root runs only its own tools and reads no file there.
#
# Usage (as root): scripts/bootstrap_supervisor.sh --repo URL [--deploy-key FILE] [--tag TAG]
#                  [--root DIR] [--no-start] [--allow-unsigned]
#   --repo URL        the release remote (git@gitlab.com:org/materia.git)
#   --deploy-key FILE private key of the repository's read-only deploy key (default: the one
#                     setup_server.sh generated, /opt/materia/.ssh/id_ed25519)
#   --tag TAG         release to install (default: the newest v* tag in deploy-poll's order)
#   --root DIR        apply under DIR instead of / (tests); implies --no-start
#   --no-start        install the units but do not enable or start them
#   --allow-unsigned  development servers only: deploy unsigned tags (records the choice in
#                     root-owned /etc/materia/allow-unsigned and a drop-in of
#                     materia-deploy.service with MATERIA_REQUIRE_SIGNED=false); a run without it
#                     removes both again
# Environment: MATERIA_BUILD_CMD (default `make release`), SOPS_AGE_KEY_FILE (the server's age
# key for .env.prod.sops; default /opt/materia/.config/sops/age/keys.txt),
# MATERIA_DEPLOY_LOCK_WAIT_SECS (default 600: how long to wait for a running deploy-poll
# before giving up with exit 75).
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
unsigned=false
while [ $# -gt 0 ]; do
    case "$1" in
        --repo) repo_url=${2:?--repo needs a URL}; shift 2 ;;
        --deploy-key) key=${2:?--deploy-key needs a file}; shift 2 ;;
        --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; start=false; shift 2 ;;
        --no-start) start=false; shift ;;
        --allow-unsigned) unsigned=true; shift ;;
        *) echo "bootstrap: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$repo_url" ] || { echo "bootstrap: --repo is required" >&2; exit 2; }
[ -z "$key" ] || [ -r "$key" ] || { echo "bootstrap: cannot read deploy key $key" >&2; exit 2; }
root=${root%/}
checkout=$(cd "$(dirname "$0")/.." && pwd)
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

# deploy-poll's lock (the step lock beside the state DB), held for the whole run by a process
# of the service user (which opens the lock file: root opens nothing there), so that bootstrap
# and deploy-poll never work on the same server at once. The holder waits on a pipe that only
# this shell keeps open; it ends, releasing the lock, when this shell exits or calls unlock.
lock_dir=$root/data/materia/landing/.locks
lock_wait_secs=${MATERIA_DEPLOY_LOCK_WAIT_SECS:-600}
case "$lock_wait_secs" in '' | *[!0-9]*) echo "bootstrap: MATERIA_DEPLOY_LOCK_WAIT_SECS='$lock_wait_secs' is not a number of seconds" >&2; exit 2 ;; esac
for d in "$root/data/materia" "$root/data/materia/landing" "$lock_dir"; do
    if [ -L "$d" ]; then
        echo "bootstrap: refused: $d is a symbolic link (to $(readlink "$d")); root does not follow links in directories another user can write; nothing changed" >&2
        exit 1
    fi
done
private=$(mktemp -d)
holder=""
unlock() {
    if [ -n "$holder" ]; then
        exec 8>&-
        wait "$holder" 2>/dev/null || true
        holder=""
    fi
}
trap 'unlock; rm -rf "$private"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -d "$root/data/materia/landing" ]; then
    as_owner mkdir -p "$lock_dir"
    mkfifo "$private/release"
    exec 8<>"$private/release"
    # A subshell that closes its copy of the pipe and execs: nothing but this shell keeps the
    # pipe open (a function call would keep a saved copy of fd 8 in the background job).
    (
        exec 8>&-
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- env HOME="$app" PATH=/usr/bin:/bin \
            flock -w "$lock_wait_secs" -E 75 "$lock_dir/deploy-poll.lock" sh -c 'echo held; read -r _ || true'
    ) <"$private/release" >"$private/held" &
    holder=$!
    waited=0
    until grep -q held "$private/held" 2>/dev/null; do
        if ! kill -0 "$holder" 2>/dev/null; then
            rc=0
            wait "$holder" || rc=$?
            holder=""
            if [ "$rc" -eq 75 ]; then
                echo "bootstrap: deploy-poll is running (lock $lock_dir/deploy-poll.lock held for more than ${lock_wait_secs}s: $(as_owner cat "$lock_dir/deploy-poll.lock" 2>/dev/null || true)); nothing changed, run again when it is done" >&2
                exit 75
            fi
            echo "bootstrap: cannot take deploy-poll's lock $lock_dir/deploy-poll.lock (exit $rc)" >&2
            exit 1
        fi
        waited=$((waited + 1))
        [ "$waited" -lt $(((lock_wait_secs + 30) * 10)) ] || { echo "bootstrap: timed out taking deploy-poll's lock" >&2; exit 1; }
        sleep 0.1
    done
fi

if [ -n "$key" ]; then
    # shellcheck disable=SC2089,SC2090 # git runs GIT_SSH_COMMAND through a shell: the quotes are for it
    GIT_SSH_COMMAND="ssh -i '$key' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -F /dev/null"
    # shellcheck disable=SC2090
    export GIT_SSH_COMMAND
fi

# The development opt-out of signatures, recorded root-owned for install_units.sh and as a
# drop-in for deploy-poll; a run without --allow-unsigned removes both.
dropin=$root/etc/systemd/system/materia-deploy.service.d/allow-unsigned.conf
units_changed=false
if [ "$unsigned" = true ]; then
    if [ ! -f "$root/etc/materia/allow-unsigned" ] || [ ! -f "$dropin" ]; then
        mkdir -p "$root/etc/materia" "$(dirname "$dropin")"
        echo "bootstrap_supervisor.sh --allow-unsigned: release tags are deployed without a signature check" >"$root/etc/materia/allow-unsigned"
        printf '[Service]\nEnvironment=MATERIA_REQUIRE_SIGNED=false\n' >"$dropin"
        units_changed=true
        changed "unsigned tags are allowed (development): $root/etc/materia/allow-unsigned, $dropin"
    fi
elif [ -e "$root/etc/materia/allow-unsigned" ] || [ -e "$dropin" ]; then
    rm -f "$root/etc/materia/allow-unsigned" "$dropin"
    units_changed=true
    changed "unsigned tags are no longer allowed"
fi
verify() { sh "$checkout/scripts/install_units.sh" --root "$root/" --tag "$1" --verify-only; }

if [ ! -d "$repo/.git" ]; then
    as_owner rm -rf "$repo.new"
    as_owner git clone --quiet "$repo_url" "$repo.new"
    as_owner mv -T "$repo.new" "$repo"
    changed "cloned $repo_url"
else
    # As deploy-poll fetches: tags that origin no longer has (or never had) are dropped.
    as_owner git -C "$repo" fetch --quiet --force --tags --prune --prune-tags origin
fi

# deploy-poll's bad tags (its state DB, read as the service user) are never chosen again.
db=$root/data/materia/landing/.state.sqlite
bad=""
if [ -f "$db" ] && command -v sqlite3 >/dev/null 2>&1; then
    bad=$(as_owner sqlite3 -readonly "$db" "SELECT tag FROM deploy_bad_tags" 2>/dev/null || true)
fi
is_bad() { printf '%s\n' "$bad" | grep -qxF -- "$1"; }
[ -z "$tag" ] || ! is_bad "$tag" || { echo "bootstrap: refused: $tag is recorded bad in $db (deploy_bad_tags); nothing changed" >&2; exit 1; }

current=$(basename "$(readlink "$app/current" 2>/dev/null || true)")
if [ -n "$current" ] && [ "$current" != . ]; then
    # A server in service: current moves only through deploy-poll.
    if [ -n "$tag" ] && [ "$tag" != "$current" ]; then
        echo "bootstrap: refused: $current is current; a server in service moves to $tag only through deploy-poll (systemctl start materia-deploy.service: its lock, bad tags, restart, health check and rollback); nothing changed" >&2
        exit 1
    fi
    tag=$current
    release=$app/releases/$tag
    first=false
else
    if [ -z "$tag" ]; then
        # Only the first build's choice; deploy-poll decides below.
        tag=$(as_owner git -c versionsort.suffix=- -C "$repo" tag --list --sort=-version:refname -- 'v*' |
            grep -v '/' | while IFS= read -r t; do is_bad "$t" || { echo "$t"; break; }; done)
        [ -n "$tag" ] || { echo "bootstrap: no v* tag in $repo_url that is not recorded bad" >&2; exit 1; }
    fi
    case "$tag" in
        .* | -* | */* | *[!A-Za-z0-9._+-]*) echo "bootstrap: refused: tag '$tag' is not one plain release name" >&2; exit 1 ;;
    esac
    release=$app/releases/$tag
    first=true
fi

# The first tag is verified as deploy-poll verifies every later one, before anything is built.
verify "$tag" || { echo "bootstrap: refused: tag $tag does not verify (see above); nothing built" >&2; exit 1; }
commit=$(as_owner git -C "$repo" rev-parse --verify --quiet "refs/tags/$tag^{commit}")

# A release directory is complete once .materia-built names the tag's commit and its checkout
# is at that commit (as deploy-poll checks); anything else is a leftover, or planted.
built() {
    [ "$(as_owner cat "$release/.materia-built" 2>/dev/null || true)" = "$commit" ] &&
        [ "$(as_owner git -C "$release" rev-parse --verify --quiet HEAD 2>/dev/null || true)" = "$commit" ]
}
if ! built; then
    as_owner rm -rf "$release"
    # A local clone hard-links the objects: cheap, and independent of later pruning in repo/.
    as_owner git clone --quiet "$repo" "$release"
    as_owner git -C "$release" checkout --quiet --detach "refs/tags/$tag"
    (cd "$release" && as_owner sh -c "$build_cmd") || { echo "bootstrap: building $tag failed ($build_cmd)" >&2; exit 1; }
    # shellcheck disable=SC2016 # expanded by the inner shell
    as_owner sh -c 'printf "%s\n" "$1" >"$2"' sh "$commit" "$release/.materia-built"
    changed "built $tag in $release"
fi

# Secrets: decrypted by the service user (its age key) into the release's .env (0600), which
# install_units.sh splits into root-owned per-unit files and removes. Not again once those
# files exist.
export SOPS_AGE_KEY_FILE="${SOPS_AGE_KEY_FILE:-$app/.config/sops/age/keys.txt}"
if [ ! -d "$root/etc/materia/env/$tag" ]; then
    if [ -f "$release/.env.prod.sops" ]; then
        sops=$(command -v sops || echo "$release/.venv/bin/sops")
        # shellcheck disable=SC2016 # expanded by the inner shell
        as_owner sh -c 'umask 077 && cd "$2" && "$1" --decrypt --input-type dotenv --output-type dotenv .env.prod.sops >.env.new && mv -f .env.new .env' \
            sh "$sops" "$release" || {
            as_owner rm -f "$release/.env.new"
            echo "bootstrap: cannot decrypt $release/.env.prod.sops with $SOPS_AGE_KEY_FILE" >&2
            exit 1
        }
        changed "decrypted the secrets of $tag"
    else
        echo "bootstrap: warning: $tag has no .env.prod.sops; the units need /etc/materia/env/$tag" >&2
    fi
fi

if [ "$first" = true ]; then
    as_owner ln -sfn "releases/$tag" "$app/current.new"
    as_owner mv -T "$app/current.new" "$app/current"
    changed "current is now $tag"
fi

# deploy-poll's order decides the newest tag: whenever current moved, the release's own
# deploy-poll runs once (nothing runs yet, so there is nothing to restart or check; the units
# start below). It records its run in the production state DB.
if [ "$first" = true ] && [ -z "$tag_given" ]; then
    if [ -x "$app/current/bin/deploy-poll" ]; then
        unlock # deploy-poll takes its own lock
        require=true
        [ "$unsigned" = false ] || require=false
        as_owner env STATE_DB="$root/data/materia/landing/.state.sqlite" \
            MATERIA_REQUIRE_SIGNED="$require" MATERIA_ALLOWED_SIGNERS="$root/etc/materia/allowed_signers" \
            MATERIA_SOPS="$(command -v sops || echo sops)" \
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

# The units and environment files of the current tag, from its verified objects.
installed=$(sh "$checkout/scripts/install_units.sh" --root "$root/" --tag "$tag" 2>&1) || {
    echo "$installed" >&2
    echo "bootstrap: the units of $tag were refused (see above)" >&2
    exit 1
}
printf '%s\n' "$installed" | grep -v ': 0 changes$' >&2 || true
case "$installed" in *"install_units: installed "*) units_changed=true; changes=$((changes + 1)) ;; esac
case "$installed" in *"install_units: wrote the environment"*) changes=$((changes + 1)) ;; esac

# Backups need somewhere to go: BACKUP_REMOTE, and for an r2: remote the R2 credentials.
backup=materia-backup.timer
env_file=$root/etc/materia/env/$tag/backup.env
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
    echo "bootstrap: $backup stays disabled: $env_file lacks$lacking (add them to .env.prod.sops, release, run bootstrap again)" >&2
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

# A server in service is moved on by deploy-poll only; this run says whether there is more.
if [ "$first" = false ]; then
    newest=$(as_owner git -c versionsort.suffix=- -C "$repo" tag --list --sort=-version:refname -- 'v*' |
        grep -v '/' | while IFS= read -r t; do is_bad "$t" || { echo "$t"; break; }; done)
    if [ -n "$newest" ] && [ "$newest" != "$tag" ]; then
        if [ "$start" = true ]; then
            unlock
            systemctl start --no-block materia-deploy.service
            echo "bootstrap: $tag stays current; git lists $newest: started materia-deploy.service, whose deploy-poll decides (lock, bad tags, restart, health check, rollback)" >&2
        else
            echo "bootstrap: $tag stays current; git lists $newest: only deploy-poll moves a server in service (materia-deploy.timer, or systemctl start materia-deploy.service)" >&2
        fi
    fi
fi
echo "bootstrap: $tag is current; $changes changes" >&2
