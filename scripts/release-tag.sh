#!/bin/sh
# The pipeline's release:tag job: creates the annotated tag v$CI_PIPELINE_IID on the commit the
# pipeline tested and pushes it to the release remote, where deploy-poll on each server picks
# it up. It never moves, replaces or deletes a tag: a v<IID> that exists already fails the job.
#
# Environment (GitLab sets the CI_* and GITLAB_* ones):
#   CI_PIPELINE_IID       the project's pipeline number; the tag is v$CI_PIPELINE_IID
#   CI_COMMIT_BRANCH      must equal CI_DEFAULT_BRANCH: releases come from the default branch only
#   CI_DEFAULT_BRANCH
#   CI_COMMIT_SHA         the commit to tag (default: HEAD)
#   RELEASE_PUSH_URL      where to push; default CI_REPOSITORY_URL, the project's job-token URL
#   RELEASE_SIGNING_KEY   optional: path of an SSH private key (a GitLab variable of type File);
#                         the tag is then SSH-signed, for deploy-poll --require-signed
#   GITLAB_USER_NAME, GITLAB_USER_EMAIL   the tagger (default: Materia CI)
#
# Exit codes: 0 the tag was pushed and read back; 1 the tag exists already, or git failed
# (nothing was moved); 2 a missing or invalid setting, or not the default branch (nothing done).
# The push URL may carry the job token: it reaches git through its environment only
# (GIT_CONFIG_*), never a command line, and git's messages are shown with credentials removed.
set -eu

# Bounds on every call to the remote: the whole call, and a transfer that stalls.
remote_timeout_secs=120
kill_after_secs=10
low_speed_limit_bytes=1000
low_speed_time_secs=30
ssh_connect_timeout_secs=15

usage() {
    echo "release-tag: $*" >&2
    exit 2
}
fail() {
    echo "release-tag: $*" >&2
    exit 1
}

iid=${CI_PIPELINE_IID:-}
case "$iid" in
    '') usage "CI_PIPELINE_IID is not set (GitLab sets it in a pipeline)" ;;
    *[!0-9]* | 0?*) usage "CI_PIPELINE_IID must be a number without leading zeros, not '$iid'" ;;
esac
tag="v$iid"

branch=${CI_COMMIT_BRANCH:-}
default_branch=${CI_DEFAULT_BRANCH:-}
[ -n "$default_branch" ] || usage "CI_DEFAULT_BRANCH is not set"
if [ "$branch" != "$default_branch" ]; then
    usage "releases are tagged on the default branch '$default_branch' only, not on '${branch:-(no branch)}': no tag created"
fi

url=${RELEASE_PUSH_URL:-${CI_REPOSITORY_URL:-}}
[ -n "$url" ] || usage "neither RELEASE_PUSH_URL nor CI_REPOSITORY_URL is set: nowhere to push"
# The URL without its user:password part, for messages.
shown_url=$(printf '%s\n' "$url" | sed 's#^\([a-z0-9+.-]*://\)[^/@]*@#\1#')

signing_key=${RELEASE_SIGNING_KEY:-}
if [ -n "$signing_key" ] && [ ! -f "$signing_key" ]; then
    usage "RELEASE_SIGNING_KEY names no file"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/release-tag.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# git with a chosen environment: the release remote defined through GIT_CONFIG_* (so the URL
# and its token stay out of every command line), no prompts, and no system or user
# configuration that could rewrite the URL. `$bound` (set by `remote`) prefixes a time-out.
bound=""
git_env() {
    # shellcheck disable=SC2086 # $bound is a command prefix, split on purpose
    $bound env -i PATH="${PATH:-/usr/bin:/bin}" HOME="$work" LC_ALL=C \
        GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 \
        GIT_HTTP_LOW_SPEED_LIMIT="$low_speed_limit_bytes" GIT_HTTP_LOW_SPEED_TIME="$low_speed_time_secs" \
        GIT_SSH_COMMAND="ssh -o BatchMode=yes -o ConnectTimeout=$ssh_connect_timeout_secs" \
        ${SSH_AUTH_SOCK:+SSH_AUTH_SOCK="$SSH_AUTH_SOCK"} \
        GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=remote.release.url GIT_CONFIG_VALUE_0="$url" \
        GIT_CONFIG_KEY_1=safe.directory GIT_CONFIG_VALUE_1='*' \
        git "$@"
}

# A call to the remote, bounded in time, output in $work/out; its messages are shown with
# credentials removed.
remote() {
    bound="timeout -k $kill_after_secs $remote_timeout_secs"
    status=0
    git_env "$@" >"$work/out" 2>"$work/err" || status=$?
    bound=""
    [ "$status" -eq 0 ] && return 0
    sed 's#\([a-z0-9+.-]*://\)[^/@ ]*@#\1#g' "$work/err" >&2
    [ "$status" -eq 124 ] && echo "release-tag: git $1 took longer than ${remote_timeout_secs}s" >&2
    return "$status"
}

sha=${CI_COMMIT_SHA:-HEAD}
commit=$(git_env rev-parse --verify --quiet "$sha^{commit}") ||
    usage "CI_COMMIT_SHA '$sha' is not a commit of this clone"

if existing=$(git_env rev-parse --verify --quiet "refs/tags/$tag"); then
    fail "tag $tag exists already in this clone ($existing): a release tag is never moved; nothing pushed"
fi
remote ls-remote --tags release "refs/tags/$tag" ||
    fail "cannot read the tags of $shown_url (see git's message above); nothing created"
if [ -s "$work/out" ]; then
    fail "tag $tag exists already on $shown_url ($(cut -f 1 "$work/out")): a release tag is never moved; nothing pushed"
fi

name=${GITLAB_USER_NAME:-Materia CI}
email=${GITLAB_USER_EMAIL:-ci@materia.invalid}
message="Materia release $tag

Pipeline $iid${CI_PIPELINE_URL:+ ($CI_PIPELINE_URL)} on $branch, commit $commit."
if [ -n "$signing_key" ]; then
    # ssh-keygen refuses a private key that others can read; GitLab's file variables may be.
    (umask 077 && cp "$signing_key" "$work/signing-key")
    git_env -c user.name="$name" -c user.email="$email" -c gpg.format=ssh \
        -c user.signingkey="$work/signing-key" tag -s -m "$message" "$tag" "$commit" ||
        fail "cannot sign tag $tag with RELEASE_SIGNING_KEY (see git's message above); nothing pushed"
else
    git_env -c user.name="$name" -c user.email="$email" tag -a -m "$message" "$tag" "$commit"
fi
object=$(git_env rev-parse --verify "refs/tags/$tag")

# Never --force: a tag that appeared on the remote since the check is refused by git itself.
if ! remote push --porcelain release "refs/tags/$tag:refs/tags/$tag"; then
    git_env tag -d "$tag" >/dev/null
    fail "pushing $tag to $shown_url failed (see git's message above); no tag was moved"
fi
remote ls-remote --tags release "refs/tags/$tag" ||
    fail "pushed $tag but cannot read it back from $shown_url"
pushed=$(cut -f 1 "$work/out")
[ "$pushed" = "$object" ] ||
    fail "$shown_url has $tag as '$pushed', not the tag object $object just pushed"
echo "release-tag: pushed $tag ($object, commit $commit) to $shown_url" >&2
