#!/bin/sh
# Benchmark of backup-sync: a push with nothing new over 10,000 landing files, against
# `rclone copy --checksum` of the same tree run directly (like for like: nothing to copy, and
# the decision made on content, as backup-sync makes it), and `rclone lsjson -R --hash` of the
# remote alone (MD5s only, without modification times or MIME types, which on S3 cost a HEAD per
# object), the floor: one listing with hashes is the least any content check must do; all
# against moto's S3 server on loopback. Runs alternate; medians; backup-sync's peak RSS.
# Usage: BIN_DIR=... TOOLS_VENV=... scripts/bench-backup.sh
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
tools=${TOOLS_VENV:?TOOLS_VENV must name the tools virtualenv (moto)}
runs=${BENCH_RUNS:-5}
files=${BENCH_FILES:-10000}
work=$(mktemp -d)
moto_pid=""
cleanup() {
    [ -z "$moto_pid" ] || kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tools/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
i=0
until python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$port" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || { echo "bench: moto did not start" >&2; exit 1; }
    sleep 0.1
done

export LANDING_DIR="$work/landing" BACKUP_REMOTE=r2:bucket/materia
export R2_ACCESS_KEY_ID=bench R2_SECRET_ACCESS_KEY=bench-secret R2_ENDPOINT="http://127.0.0.1:$port"
rclone_env() {
    env -i PATH=/usr/bin:/bin RCLONE_CONFIG=/dev/null RCLONE_CONFIG_R2_TYPE=s3 \
        RCLONE_CONFIG_R2_PROVIDER=Cloudflare RCLONE_CONFIG_R2_ACCESS_KEY_ID="$R2_ACCESS_KEY_ID" \
        RCLONE_CONFIG_R2_SECRET_ACCESS_KEY="$R2_SECRET_ACCESS_KEY" RCLONE_CONFIG_R2_ENDPOINT="$R2_ENDPOINT" \
        RCLONE_CONFIG_R2_REGION=auto "$@"
}
rclone_env rclone mkdir r2:bucket

echo "writing $files landing files" >&2
python3 - "$LANDING_DIR" "$files" <<'PY'
import gzip, hashlib, os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    csv = f"header\nrow {i}\n".encode() * 20
    sha = hashlib.sha256(csv).hexdigest()
    d = os.path.join(root, "psd", str(2000 + i // 1200), f"{1 + i % 12:02d}")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{sha}.csv.gzip")
    with open(path, "wb") as f:
        f.write(gzip.compress(csv, mtime=0))
    os.chmod(path, 0o444)
PY
echo "first push (uploads everything)" >&2
"$bin/backup-sync" push >/dev/null 2>"$work/first.err" || { cat "$work/first.err" >&2; exit 1; }

timed() { # LABEL CMD...: milliseconds (GNU time counts in 10 ms steps, too coarse here)
    label=$1
    shift
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$work/stderr.out" || { echo "bench: $label failed:" >&2; tail -n 20 "$work/stderr.out" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$(((t1 - t0) / 1000000))" >>"$work/$label"
}
median() {
    sort -n "$1" | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    echo "run $i/$runs" >&2
    timed push /usr/bin/time -f '%M' -a -o "$work/push.rss" "$bin/backup-sync" push
    timed rclone rclone_env rclone copy --checksum "$LANDING_DIR/psd" r2:bucket/materia/psd
    timed lsjson rclone_env rclone lsjson -R --hash --hash-type md5 --no-modtime --no-mimetype --files-only r2:bucket/materia/psd
done
# What was timed was a no-op: one more push uploads no landing file.
"$bin/backup-sync" push --json 2>/dev/null >"$work/last.json" || true
grep -q '"uploaded":0,' "$work/last.json" || { echo "bench: a push with nothing new uploaded something:" >&2; cat "$work/last.json" >&2; exit 1; }
p=$(median "$work/push")
r=$(median "$work/rclone")
l=$(median "$work/lsjson")
printf '\nbackup-sync benchmark: push with nothing new, %s landing files, moto S3 on loopback, %s runs, medians (%s cores)\n' "$files" "$runs" "$(nproc)"
printf '  %-52s %8s ms\n' "backup-sync push (list, compare, state snapshot)" "$p" "rclone copy --checksum of the same tree" "$r" "rclone lsjson -R --hash of the remote (floor)" "$l"
awk -v p="$p" -v r="$r" -v l="$l" 'BEGIN {printf "  backup-sync %.2fx rclone copy --checksum (goal <= 1.2x), %.2fx the listing alone\n", p/r, p/l}'
printf '  peak RSS backup-sync push: median %s KiB\n' "$(median "$work/push.rss")"
