#!/bin/sh
# Installs gitlab-ci-local, the program that runs .gitlab-ci.yml's jobs on this machine, from
# the npm registry: exactly the versions and sha512 integrities of tools/gitlab-ci-local/
# package-lock.json (`npm ci`), into a directory outside the clone. An installation that
# matches the lock is reused without the network. Prints nothing on success but npm's errors.
#
# Usage: scripts/ci-tools.sh DEST
# Exit 0 when DEST/node_modules/.bin/gitlab-ci-local is the pinned version, 1 when it cannot be
# installed (nothing half-installed is left in DEST), 2 on a usage error.
set -eu

# Bounds: npm's own fetch time-out and retries, and the whole `npm ci`.
fetch_timeout_ms=60000
fetch_retries=2
install_timeout_secs=600
# gitlab-ci-local 4.66.1 is the last release that runs on Node 20 (later ones need Node 22).
version=4.66.1

[ $# -eq 1 ] || { echo "usage: scripts/ci-tools.sh DEST" >&2; exit 2; }
dest=$1
src="$(cd "$(dirname "$0")/.." && pwd)/tools/gitlab-ci-local"
bin="$dest/node_modules/.bin/gitlab-ci-local"

if [ -x "$bin" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
    exit 0
fi
command -v npm >/dev/null 2>&1 || sh "$(dirname "$0")/install-deps.sh" build
command -v rsync >/dev/null 2>&1 || sh "$(dirname "$0")/install-deps.sh" test
# Its dependencies (yargs 18) need Node 20.19 or later: Debian 13 has it, Debian 12 has 18.
node=$(node --version 2>/dev/null) || node=""
case "$node" in
    v20.19.* | v20.2[0-9].* | v2[1-9].* | v[3-9][0-9].*) ;;
    *)
        echo "ci-tools: gitlab-ci-local $version needs Node 20.19 or later, not '${node:-no node}'" >&2
        exit 1
        ;;
esac

parent=$(dirname "$dest")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.ci-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp "$src/package.json" "$src/package-lock.json" "$work/"
echo "ci-tools: installing gitlab-ci-local $version (npm ci, tools/gitlab-ci-local/package-lock.json)" >&2
if ! (cd "$work" && timeout "$install_timeout_secs" npm ci --ignore-scripts --no-audit --no-fund \
        --fetch-timeout="$fetch_timeout_ms" --fetch-retries="$fetch_retries" \
        --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=5000 >npm.out 2>npm.err); then
    tail -n 5 "$work/npm.err" >&2
    echo "ci-tools: cannot install gitlab-ci-local $version from the npm registry (see npm's message above); nothing was installed" >&2
    exit 1
fi
got=$(cd "$work" && timeout 60 node node_modules/.bin/gitlab-ci-local --version 2>/dev/null) || got=""
if [ "$got" != "$version" ]; then
    echo "ci-tools: the installed gitlab-ci-local says '$got', not $version; nothing was installed" >&2
    exit 1
fi
rm -f "$work/npm.out" "$work/npm.err"
# Put it in place by renames: a concurrent or killed run never leaves a half-installed DEST.
if [ -e "$dest" ]; then
    mv "$dest" "$work/old"
fi
mv "$work" "$dest.new.$$"
mv "$dest.new.$$" "$dest"
trap - EXIT
rm -rf "$dest/old"
