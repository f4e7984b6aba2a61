#!/bin/sh
# `make ci-local`: runs .gitlab-ci.yml on this machine with gitlab-ci-local (shell executor; no
# container engine needed). Each job runs in its own copy of the committed and modified tracked
# files (.gitlab-ci-local/builds/<job>, --shell-isolation) and receives only its `needs`'
# artifacts, as on GitLab's runners:
#   1. lint and build (the workspace compiled once: dist/ with the nextest archive);
#   2. the build and lint job directories are deleted and the build's target directory is
#      hidden (renamed) until the end: a test that reaches for anything of the build job but
#      its artifacts fails here;
#   3. every job of the test stage (each test:<crate> from the archive, test:sqlmesh, ...);
#   4. release:tag, as on the default branch, into a throwaway bare repository
#      (.gitlab-ci-local/release-origin.git): the tag it pushes is printed.
# Prints each phase's wall time; gitlab-ci-local prints each job's. Untracked files are not
# part of the run: commit or `git add` new files first.
#
# What a GitLab runner's caches would hold comes from this machine instead: the jobs' CARGO_HOME
# is ~/.cargo, MATERIA_CACHE the Makefile's, and the build's target directory
# CI_LOCAL_TARGET_DIR (default $MATERIA_CACHE/target-ci-local, reused by the next run; nothing
# else may use it while this runs).
#
# Environment: MATERIA_GITLAB_CI_LOCAL and MATERIA_CACHE (the Makefile's), CI_LOCAL_TARGET_DIR,
# CI_LOCAL_CONCURRENCY (default 2 jobs at a time: each test job runs tests in parallel already).
set -eu

cd "$(dirname "$0")/.."
gcl=${MATERIA_GITLAB_CI_LOCAL:?run through make ci-local, which installs gitlab-ci-local}
cache=${MATERIA_CACHE:?run through make ci-local}
target=${CI_LOCAL_TARGET_DIR:-$cache/target-ci-local}
concurrency=${CI_LOCAL_CONCURRENCY:-2}
# The longest a phase may take; the job time-outs of .gitlab-ci.yml bound each job.
phase_timeout_secs=10800
state=.gitlab-ci-local
hidden="$target.hidden-by-ci-local"

run() {
    timeout -k 30 "$phase_timeout_secs" "$gcl" --force-shell-executor --shell-isolation \
        --concurrency "$concurrency" --no-json-schema-validation \
        --variable "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" --variable "MATERIA_CACHE=$cache" \
        --variable "CARGO_TARGET_DIR=$target" "$@"
}
now() {
    date +%s
}
restore() {
    if [ -d "$hidden" ] && [ ! -e "$target" ]; then
        mv "$hidden" "$target"
    fi
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

restore
start=$(now)
timeout 120 "$gcl" --list >/dev/null
run lint build
t1=$(now)
rm -rf "$state/builds/build" "$state/builds/lint"
mv "$target" "$hidden"
run --stage test
t2=$(now)
restore

origin="$PWD/$state/release-origin.git"
rm -rf "$origin"
git init --quiet --bare "$origin"
default_branch=$(git symbolic-ref --quiet --short refs/remotes/origin/HEAD 2>/dev/null | sed 's#^origin/##') ||
    default_branch=""
default_branch=${default_branch:-main}
run release:tag --variable "RELEASE_PUSH_URL=file://$origin" \
    --variable "CI_COMMIT_BRANCH=$default_branch" --variable "CI_DEFAULT_BRANCH=$default_branch" \
    --ignore-predefined-vars CI_COMMIT_BRANCH,CI_DEFAULT_BRANCH
t3=$(now)
echo "ci-local: release:tag pushed $(git --git-dir="$origin" tag --list | tr '\n' ' ')to $origin" >&2
echo "ci-local: pipeline passed in $((t3 - start)) s: lint+build $((t1 - start)) s, test stage $((t2 - t1)) s, release:tag $((t3 - t2)) s" >&2
