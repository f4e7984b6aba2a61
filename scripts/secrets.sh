#!/bin/sh
# Secrets: sops-encrypted dotenv files, age keys (README "Secrets").
#
# Usage:
#   scripts/secrets.sh decrypt ENCRYPTED OUTPUT
#       Decrypts a dotenv file into a plain one, mode 0600, replacing OUTPUT only once decryption
#       succeeded (a wrong key leaves the previous file as it was). Never prints a value.
#   scripts/secrets.sh init [SERVER_RECIPIENT]      (make secrets-init [SERVER=age1...])
#       A new owner's start: creates the operator's age key at SOPS_AGE_KEY_FILE (refuses to
#       overwrite an existing one: exit 1, nothing changed), makes the operator (and the server,
#       when its public key is given) the recipients of .env.prod.sops in .sops.yaml, and
#       encrypts .env.prod.example to them as a new .env.prod.sops (the old one was encrypted to
#       keys the new owner does not hold; git keeps it). Then: make secrets-edit-prod.
#   scripts/secrets.sh add-recipient RECIPIENT      (make secrets-add-recipient RECIPIENT=age1...)
#       Adds a recipient (the server's key once it exists, another operator's) to the
#       .env.prod.sops rule of .sops.yaml and re-encrypts the file to every recipient (sops
#       updatekeys, with a key in SOPS_AGE_KEY_FILE that decrypts it). On failure .sops.yaml is
#       put back as it was.
#
# Environment: SOPS (default .venv-sops/bin/sops, else .venv-tools/bin/sops, else sops on PATH),
#   SOPS_AGE_KEY_FILE (init's default: ~/.config/sops/age/keys.txt), AGE_KEYGEN (age-keygen).
# Run from the repository root (it reads and writes .sops.yaml, .env.prod.sops, .env.prod.example).
# Exit codes: 0 done; 1 refused or failed (nothing changed); 2 usage.
set -eu

usage() {
    echo "usage: scripts/secrets.sh decrypt ENCRYPTED OUTPUT | init [SERVER_RECIPIENT] | add-recipient RECIPIENT" >&2
    exit 2
}

if [ -z "${SOPS:-}" ]; then
    if [ -x .venv-sops/bin/sops ]; then
        SOPS=.venv-sops/bin/sops
    elif [ -x .venv-tools/bin/sops ]; then
        SOPS=.venv-tools/bin/sops
    else
        SOPS=sops
    fi
fi
AGE_KEYGEN=${AGE_KEYGEN:-age-keygen}
prod=.env.prod.sops
rules=.sops.yaml

# An age public key: age1 and 58 bech32 characters.
check_recipient() {
    case "$1" in
        age1*) ;;
        *) echo "secrets: '$1' is not an age recipient (age1...)" >&2; exit 2 ;;
    esac
    rest=${1#age1}
    case "$rest" in *[!023456789acdefghjklmnpqrstuvwxyz]*) echo "secrets: '$1' is not an age recipient (bech32 after age1)" >&2; exit 2 ;; esac
    [ ${#rest} -eq 58 ] || { echo "secrets: '$1' is not an age recipient (58 characters after age1)" >&2; exit 2; }
}

# The comma-separated recipients of the .env.prod.sops rule of .sops.yaml.
prod_recipients() {
    awk '/path_regex: .*env\\\.prod\\\.sops/ { inrule = 1; next }
         inrule && /^[ \t]*age:/ { sub(/^[ \t]*age:[ \t]*/, ""); print; exit }
         /^[ \t]*-[ \t]/ { inrule = 0 }' "$rules"
}

# Rewrites .sops.yaml with $1 as the recipients of the .env.prod.sops rule (by rename).
set_prod_recipients() {
    awk -v r="$1" '/path_regex: .*env\\\.prod\\\.sops/ { inrule = 1; print; next }
         inrule && /^[ \t]*age:/ { match($0, /^[ \t]*/); print substr($0, 1, RLENGTH) "age: " r; inrule = 0; next }
         { print }' "$rules" >"$rules.new"
    mv -f "$rules.new" "$rules"
}

case "${1:-}" in
decrypt)
    [ $# -eq 3 ] || usage
    in=$2
    out=$3
    [ -r "$in" ] || { echo "secrets: cannot read $in" >&2; exit 2; }
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
    ;;
init)
    [ $# -le 2 ] || usage
    server=${2:-}
    [ -z "$server" ] || check_recipient "$server"
    key=${SOPS_AGE_KEY_FILE:-$HOME/.config/sops/age/keys.txt}
    if [ -e "$key" ] || [ -L "$key" ]; then
        echo "secrets: $key exists; not overwritten (nothing changed). To add this key to .env.prod.sops use make secrets-add-recipient" >&2
        exit 1
    fi
    { [ -r "$rules" ] && [ -r .env.prod.example ]; } || { echo "secrets: run from the repository root ($rules and .env.prod.example)" >&2; exit 2; }
    [ -n "$(prod_recipients)" ] || { echo "secrets: $rules has no age: line in its .env.prod.sops rule" >&2; exit 1; }
    umask 077
    mkdir -p "$(dirname "$key")"
    new="$key.new.$$"
    trap 'rm -f "$new" "$prod.new"' EXIT INT TERM
    "$AGE_KEYGEN" -o "$new" 2>/dev/null || { echo "secrets: $AGE_KEYGEN failed" >&2; exit 1; }
    # A hard link never replaces a name: a key created meanwhile is never overwritten.
    ln "$new" "$key" 2>/dev/null || { echo "secrets: $key appeared meanwhile; not overwritten" >&2; exit 1; }
    rm -f "$new"
    operator=$("$AGE_KEYGEN" -y "$key")
    recipients=$operator${server:+,$server}
    cp -p "$rules" "$rules.orig"
    trap 'rm -f "$new" "$prod.new" "$prod.plain" "$rules.orig"' EXIT INT TERM
    set_prod_recipients "$recipients"
    # sops picks the recipients from the rule that matches the name the file will have.
    # The example's comments stay in the example; its values are the starting point.
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' .env.prod.example >"$prod.plain"
    if ! "$SOPS" --encrypt --filename-override "$prod" --input-type dotenv --output-type dotenv \
        "$prod.plain" >"$prod.new"; then
        mv -f "$rules.orig" "$rules"
        rm -f "$key"
        echo "secrets: sops could not encrypt .env.prod.example; nothing changed (the new key was removed)" >&2
        exit 1
    fi
    mv -f "$prod.new" "$prod"
    echo "secrets: created your age key $key (keep it: it is the only way into $prod)" >&2
    echo "secrets: recipients of $prod: $recipients" >&2
    echo "secrets: next: SOPS_AGE_KEY_FILE=$key make secrets-edit-prod, fill in the values, commit" >&2
    [ -n "$server" ] || echo "secrets: once the server has its key: make secrets-add-recipient RECIPIENT=<its public key>" >&2
    ;;
add-recipient)
    [ $# -eq 2 ] || usage
    check_recipient "$2"
    [ -n "${SOPS_AGE_KEY_FILE:-}" ] || { echo "secrets: set SOPS_AGE_KEY_FILE to a key that decrypts $prod" >&2; exit 2; }
    current=$(prod_recipients)
    [ -n "$current" ] || { echo "secrets: $rules has no age: line in its .env.prod.sops rule" >&2; exit 1; }
    case ",$current," in *",$2,"*) echo "secrets: $2 is already a recipient of $prod" >&2; exit 0 ;; esac
    cp -p "$rules" "$rules.orig"
    trap 'rm -f "$rules.orig"' EXIT INT TERM
    set_prod_recipients "$current,$2"
    if ! "$SOPS" updatekeys --yes --input-type dotenv "$prod" >/dev/null 2>"$rules.err"; then
        reason=$(grep -v '^\s*$' "$rules.err" | head -n 3 | tr '\n' ' ')
        rm -f "$rules.err"
        mv -f "$rules.orig" "$rules"
        echo "secrets: cannot re-encrypt $prod with $SOPS_AGE_KEY_FILE: $reason; $rules put back" >&2
        exit 1
    fi
    rm -f "$rules.err"
    echo "secrets: $prod is now encrypted to $current,$2" >&2
    ;;
*) usage ;;
esac
