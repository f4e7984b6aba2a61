#!/bin/sh
# Decrypts a sops-encrypted dotenv file into a plain one, mode 0600, replacing the target only
# once decryption succeeded (a wrong key leaves the previous file as it was). Never prints a
# value. The age key comes from SOPS_AGE_KEY_FILE.
#
# Usage: scripts/secrets.sh decrypt ENCRYPTED OUTPUT
#   SOPS  the sops executable (default: .venv-tools/bin/sops, else sops on PATH)
set -eu

if [ "${1:-}" != decrypt ] || [ $# -ne 3 ]; then
    echo "usage: scripts/secrets.sh decrypt ENCRYPTED OUTPUT" >&2
    exit 2
fi
in=$2
out=$3
[ -r "$in" ] || { echo "secrets: cannot read $in" >&2; exit 2; }
if [ -z "${SOPS:-}" ]; then
    if [ -x .venv-tools/bin/sops ]; then SOPS=.venv-tools/bin/sops; else SOPS=sops; fi
fi
[ -n "${SOPS_AGE_KEY_FILE:-}" ] || { echo "secrets: set SOPS_AGE_KEY_FILE to your age key" >&2; exit 2; }

tmp="$out.decrypting.$$"
trap 'rm -f "$tmp"' EXIT INT TERM
umask 077
if ! "$SOPS" --decrypt --input-type dotenv --output-type dotenv "$in" >"$tmp" 2>"$tmp.err"; then
    reason=$(grep -v '^\s*$' "$tmp.err" | head -n 3 | tr '\n' ' ')
    rm -f "$tmp.err"
    echo "secrets: cannot decrypt $in with $SOPS_AGE_KEY_FILE: $reason" >&2
    echo "secrets: $out was left as it was" >&2
    exit 1
fi
rm -f "$tmp.err"
chmod 600 "$tmp"
mv -f "$tmp" "$out"
echo "secrets: decrypted $in into $out (mode 0600, $(wc -l <"$out") lines)" >&2
