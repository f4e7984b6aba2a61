#!/bin/sh
# Hash-locks a frozen requirements file for `pip install --require-hashes`: every NAME==VERSION
# line of FROZEN gets the sha256 of each file pip installs for it here (downloaded once with
# pip download --no-deps, the same index and platform as `make venv`/`make tools`).
#
#   scripts/lock-python.sh transform/requirements.txt     (rewrites it in place)
#   scripts/lock-python.sh tools/requirements.txt
#
# To change a version: edit the .in file, create a fresh venv, pip install -r the .in file, pip
# freeze into the .txt (keeping its first comment line), then run this. Offline of extra tools:
# only python3 -m pip. Exit 1 when a download fails (nothing rewritten), 2 usage.
set -eu

{ [ $# -eq 1 ] && [ -f "$1" ]; } || { echo "usage: scripts/lock-python.sh REQUIREMENTS.txt" >&2; exit 2; }
req=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
# The bare pins, without any hashes of an earlier lock.
grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^]]*\])?==[^ \\]+' "$req" | sed 's/[[:space:]\\].*$//' >"$work/pins.txt"
python3 -m pip download --quiet --disable-pip-version-check --no-deps -r "$work/pins.txt" -d "$work/dl" ||
    { echo "lock-python: pip download failed; $req unchanged" >&2; exit 1; }
python3 - "$req" "$work/pins.txt" "$work/dl" >"$work/locked.txt" <<'PY'
import hashlib, os, re, sys
req, pins, dl = sys.argv[1:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
files = {}
for f in sorted(os.listdir(dl)):
    base = f[:-len(".tar.gz")] if f.endswith(".tar.gz") else f.rsplit(".", 1)[0]
    name, version = base.split("-")[:2]
    files.setdefault((norm(name), version), []).append(os.path.join(dl, f))
header = [l for l in open(req) if l.startswith("#")]
sys.stdout.write("".join(header))
if not any("require-hashes" in l for l in header):
    sys.stdout.write("# Hash-locked (scripts/lock-python.sh): install with pip install --require-hashes -r.\n")
for line in open(pins):
    pin = line.strip()
    name, version = pin.split("==")
    found = files.get((norm(name.split("[")[0]), version))
    if not found:
        sys.exit(f"lock-python: no downloaded file for {pin}")
    hashes = sorted(hashlib.sha256(open(p, "rb").read()).hexdigest() for p in found)
    sys.stdout.write(pin + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes) + "\n")
PY
mv -f "$work/locked.txt" "$req"
echo "lock-python: $req locked ($(grep -c -- '--hash=' "$req") hashes)" >&2
