#!/bin/sh
# Fetches one npm registry package pinned by a lock file (third-party/*.lock) into a cache
# directory outside the clone, verified before anything is unpacked.
#
# Usage: scripts/fetch-npm.sh LOCKFILE DEST
#
# The lock file holds `package=`, `version=`, `integrity=` (npm's sha512 SRI of the tarball) and
# one `file=NAME SHA256` line per file the build uses. The tarball comes from `npm pack` of the
# exact version (npm's registry and cache settings apply). Its sha512 is compared with the lock
# before it is unpacked; the unpacked files are compared with their sha256 lines, and only then
# is DEST put in place, by one rename. A DEST that already matches the lock is reused without any
# network access; one that does not is fetched again. Exit 0 when DEST is verified, 1 when the
# package cannot be fetched or does not match, 2 on a usage error. Nothing is installed unless
# everything matches.
set -eu

fail() {
    echo "fetch-npm: $*" >&2
    exit 1
}

[ $# -eq 2 ] || { echo "usage: scripts/fetch-npm.sh LOCKFILE DEST" >&2; exit 2; }
lock=$1
dest=$2
[ -f "$lock" ] || { echo "fetch-npm: no lock file $lock" >&2; exit 2; }

# Bounds: npm's own fetch time-out and retries, and the whole `npm pack`.
fetch_timeout_ms=60000
fetch_retries=2
pack_timeout_secs=600

value() {
    sed -n "s/^$1=//p" "$lock" | head -n 1
}
package=$(value package)
version=$(value version)
integrity=$(value integrity)
if [ -z "$package" ] || [ -z "$version" ] || [ -z "$integrity" ]; then
    echo "fetch-npm: $lock needs package=, version= and integrity= lines" >&2
    exit 2
fi
case "$integrity" in
    sha512-*) ;;
    *) echo "fetch-npm: $lock: integrity must be a sha512- value (npm's dist.integrity)" >&2; exit 2 ;;
esac
files=$(sed -n 's/^file=//p' "$lock")
[ -n "$files" ] || { echo "fetch-npm: $lock lists no file= lines" >&2; exit 2; }
spec="$package@$version"

# True when directory $1 holds every file= of the lock with its sha256.
files_match() {
    echo "$files" | while read -r name sum; do
        [ -f "$1/$name" ] || { echo "missing $name"; break; }
        got=$(sha256sum "$1/$name" | cut -d ' ' -f 1)
        [ "$got" = "$sum" ] || { echo "$name has sha256 $got, the lock says $sum"; break; }
    done
}

if [ -f "$dest/.materia-verified" ] && [ "$(cat "$dest/.materia-verified")" = "$integrity" ]; then
    why=$(files_match "$dest")
    [ -z "$why" ] && exit 0
    echo "fetch-npm: cached $spec in $dest does not match $lock ($why): fetching it again" >&2
fi

parent=$(dirname "$dest")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.fetch-npm.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "fetch-npm: fetching $spec with npm pack" >&2
registry=$(npm config get registry 2>/dev/null || echo "the npm registry")
if ! timeout "$pack_timeout_secs" npm pack "$spec" --pack-destination "$work" --silent \
        --fetch-timeout="$fetch_timeout_ms" --fetch-retries="$fetch_retries" \
        --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=5000 \
        --no-audit --no-fund --ignore-scripts >"$work/pack.out" 2>"$work/pack.err"; then
    tail -n 5 "$work/pack.err" >&2
    fail "cannot fetch $spec from $registry (see npm's message above); nothing was installed"
fi
set -- "$work"/*.tgz
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    fail "npm pack of $spec produced no single tarball; nothing was installed"
fi
tarball=$1

# The check that matters: the tarball's sha512 against the lock, before anything is unpacked.
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w 0)"
if [ "$got" != "$integrity" ]; then
    fail "integrity mismatch for $spec: $lock says $integrity, the tarball is $got; nothing was installed"
fi

mkdir "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked" --no-same-owner --no-same-permissions ||
    fail "cannot unpack the tarball of $spec; nothing was installed"
root="$work/unpacked/package"
[ -f "$root/package.json" ] || fail "the tarball of $spec has no package/package.json; nothing was installed"
# The registry's ordinary client resolved the exact version; the package must say the same.
packed_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$root/package.json" | head -n 1)
[ "$packed_version" = "$version" ] ||
    fail "the tarball of $spec is version '$packed_version'; nothing was installed"
why=$(files_match "$root")
[ -z "$why" ] || fail "the tarball of $spec does not match $lock: $why; nothing was installed"
printf '%s\n' "$integrity" >"$root/.materia-verified"

# Put it in place by renames: a concurrent or killed run never leaves a half-written DEST.
if [ -e "$dest" ]; then
    mv "$dest" "$work/old"
fi
mv "$root" "$dest"
echo "fetch-npm: $spec verified and installed in $dest" >&2
