#!/bin/sh
# Benchmark of materia-web on the serving file of the full-size generated dataset, with wrk
# (Debian) on loopback: /api/v1/global-balance?commodity=0711100 and / against nginx (Debian)
# serving the same JSON bytes as a static file, in the same run; then the API's p99 latency while
# export-serving publishes a new generation every 2 s; then /healthz and the cached page while 8
# clients ask for uncached heavy answers; then materia-web's peak RSS.
# Goals (2 cores): API >= 0.25x nginx's requests per second; p99 < 25 ms while publishing;
# /healthz p99 < 50 ms and the cached page p99 < 20 ms under heavy uncached load; RSS < 150 MiB.
# Usage: BIN_DIR=... VENV=... scripts/bench-web.sh
set -eu

bin=${BIN_DIR:?BIN_DIR must name the directory of the built binaries}
venv=${VENV:?VENV must name the SQLMesh virtualenv}
rows=${BENCH_ROWS:-2100000}
secs=${BENCH_WEB_SECS:-10}
connections=${BENCH_WEB_CONNECTIONS:-16}
publish_every_secs=2
heavy_clients=${BENCH_WEB_HEAVY_CLIENTS:-8}
cache=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/materia/bench}
repo=$(pwd)
work=$(mktemp -d)
web_pid=""
nginx_pid=""
publisher_pid=""
heavy_pid=""
cleanup() {
    for p in $heavy_pid $publisher_pid $web_pid $nginx_pid; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in wrk nginx; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "bench-web: $tool is needed (make deps-bench)" >&2
        exit 1
    }
done
nginx=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

mkdir -p "$cache/upstream"
zip="$cache/upstream/psd-$rows.zip"
[ -f "$zip" ] || "$bin/psd-gen" --rows "$rows" --out "$zip"
export LANDING_DIR="$work/landing" STATE_DB="$work/state.sqlite" DUCKDB_PATH="$work/lakehouse.duckdb"
export SERVING_DUCKDB_PATH="$work/analytics.duckdb"
export MATERIA_TRANSFORM_DIR="$repo/transform" MATERIA_SQLMESH="$venv/bin/sqlmesh"
echo "building the serving file ($rows rows)" >&2
"$bin/extract-psd" --url "$zip" 2>/dev/null
"$bin/transform" 2>/dev/null
"$bin/export-serving" --keep 0 2>/dev/null

"$bin/materia-web" --listen 127.0.0.1:0 >/dev/null 2>"$work/web.log" &
web_pid=$!
tries=0
until grep -q "listening on" "$work/web.log" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$web_pid" 2>/dev/null; then
        cat "$work/web.log" >&2
        echo "bench-web: materia-web did not start" >&2
        exit 1
    fi
    sleep 0.1
done
web=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\),.*/\1/p' "$work/web.log" | head -n 1)
api="/api/v1/global-balance?commodity=0711100"

# nginx serves the very bytes of the API's answer, with the same content type.
mkdir -p "$work/www" "$work/nginx/logs"
curl -fsS --max-time 30 -o "$work/www/api.json" "http://$web$api"
nginx_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port;
        location = /api.json { root $work/www; default_type application/json; }
    }
}
EOF
mkdir -p "$work/nginx/tmp"
# nginx's workers (another user when started as root) read the file.
chmod 755 "$work" "$work/www"
chmod 644 "$work/www/api.json"
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
tries=0
until curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$nginx_port/api.json" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -le 100 ] || { cat "$work/nginx/logs/error.log" >&2; echo "bench-web: nginx did not start" >&2; exit 1; }
    sleep 0.1
done
curl -fsS --max-time 30 -o "$work/api-from-nginx.json" "http://127.0.0.1:$nginx_port/api.json"
cmp -s "$work/www/api.json" "$work/api-from-nginx.json" || { echo "bench-web: nginx serves other bytes" >&2; exit 1; }

# load LABEL URL SECS: wrk's requests per second and p99 (ms) into $work/LABEL.
load() {
    timeout $(($3 + 30)) wrk -t 2 -c "$connections" -d "${3}s" --latency "$2" >"$work/$1.wrk" 2>&1 || {
        cat "$work/$1.wrk" >&2
        echo "bench-web: wrk $2 failed" >&2
        exit 1
    }
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/$1.wrk")
    p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; print v}' "$work/$1.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$1.wrk")
    errors=$(awk '/Socket errors/ {print}' "$work/$1.wrk")
    echo "$rps ${p99:-?} ${non2xx:-0}" >"$work/$1"
    [ -z "$errors" ] || echo "bench-web: $1: $errors" >&2
}

echo "wrk: nginx static file, materia-web API, materia-web page ($secs s each, $connections connections)" >&2
load static "http://127.0.0.1:$nginx_port/api.json" "$secs"
load api "http://$web$api" "$secs"
load page "http://$web/" "$secs"

# The API while export-serving publishes a new generation every 2 s. export-serving keeps the
# published file when the content is unchanged, so the publisher alternates between the
# lakehouse and a copy of it in another directory: the source path is part of the content
# (`_materia_export.source_path`), so every export is a new generation, as after a transform.
mkdir -p "$work/copy"
cp "$DUCKDB_PATH" "$work/copy/lakehouse.duckdb"
(
    n=0
    while :; do
        started=$(date +%s)
        # The copy first: the published file came from the lakehouse itself.
        source=$work/copy/lakehouse.duckdb
        [ $((n % 2)) -eq 0 ] || source=$DUCKDB_PATH
        n=$((n + 1))
        if out=$(DUCKDB_PATH=$source "$bin/export-serving" --keep 0 --json 2>/dev/null); then
            case $out in
                *'"status":"exported"'*) echo x >>"$work/published" ;;
                *) echo "bench-web: export-serving did not publish: $out" >&2 ;;
            esac
        else
            echo "bench-web: export-serving failed" >&2
        fi
        elapsed=$(($(date +%s) - started))
        [ "$elapsed" -ge "$publish_every_secs" ] || sleep $((publish_every_secs - elapsed))
    done
) &
publisher_pid=$!
load publishing "http://$web$api" $((secs * 2))
kill "$publisher_pid" 2>/dev/null || true
wait "$publisher_pid" 2>/dev/null || true
publisher_pid=""

# Heavy uncached answers: $heavy_clients clients ask for revisions pages and API answers with
# a random limit (up to 10,000 rows: a 3.6 MB page), so nearly every answer is rendered anew,
# while /healthz and the cached coffee page are measured beside them. Renders run on a bounded
# blocking pool, so the async workers stay free for these.
cat >"$work/heavy.lua" <<'LUA'
local paths = {
  "/revisions?limit=%d",
  "/api/v1/revisions?commodity=0711100&limit=%d",
  "/api/v1/revisions?commodity=0711100&limit=%d&format=csv",
  "/revisions?commodity=0711100&limit=%d",
}
math.randomseed(os.time())
request = function()
  local p = string.format(paths[math.random(#paths)], math.random(5000, 10000))
  return wrk.format("GET", p)
end
LUA
timeout $((secs + 60)) wrk -t 2 -c "$heavy_clients" -d "$((secs + 4))s" --latency -s "$work/heavy.lua" "http://$web" >"$work/heavy.wrk" 2>&1 &
heavy_pid=$!
sleep 2
connections_before=$connections
connections=2
load healthz_heavy "http://$web/healthz" "$secs"
connections=$connections_before
wait "$heavy_pid" || true
timeout $((secs + 60)) wrk -t 2 -c "$heavy_clients" -d "$((secs + 4))s" --latency -s "$work/heavy.lua" "http://$web" >"$work/heavy2.wrk" 2>&1 &
heavy_pid=$!
sleep 2
connections=2
load cached_heavy "http://$web/" "$secs"
connections=$connections_before
wait "$heavy_pid" || true
heavy_rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/heavy.wrk")
published=$(wc -l <"$work/published" 2>/dev/null || echo 0)
swaps=$(grep -c "serving the generation" "$work/web.log" || true)
rss_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$web_pid/status")

read -r n_rps n_p99 _ <"$work/static"
read -r a_rps a_p99 a_bad <"$work/api"
read -r g_rps g_p99 g_bad <"$work/page"
read -r p_rps p_p99 p_bad <"$work/publishing"
read -r _ h_p99 h_bad <"$work/healthz_heavy"
read -r _ c_p99 c_bad <"$work/cached_heavy"
printf '\nmateria-web benchmark: serving file of %s rows, wrk -t2 -c%s, %s s per run (%s cores)\n' "$rows" "$connections" "$secs" "$(nproc)"
printf '  %-58s %10.0f req/s, p99 %6.2f ms\n' "nginx, the same JSON as a static file (baseline)" "$n_rps" "$n_p99"
printf '  %-58s %10.0f req/s, p99 %6.2f ms, non-2xx %s\n' "materia-web $api" "$a_rps" "$a_p99" "$a_bad"
printf '  %-58s %10.0f req/s, p99 %6.2f ms, non-2xx %s\n' "materia-web / (the coffee page)" "$g_rps" "$g_p99" "$g_bad"
printf '  %-58s %10.0f req/s, p99 %6.2f ms, non-2xx %s\n' "materia-web API while publishing every ${publish_every_secs} s" "$p_rps" "$p_p99" "$p_bad"
printf '  %-58s %s published, %s generations read\n' "generations during that run" "$published" "$((swaps - 1))"
printf '  %-58s %10s req/s of heavy answers\n' "$heavy_clients clients asking for uncached heavy answers" "${heavy_rps:-?}"
printf '  %-58s p99 %6.2f ms, non-2xx %s\n' "  /healthz beside them (2 connections)" "$h_p99" "$h_bad"
printf '  %-58s p99 %6.2f ms, non-2xx %s\n' "  / (cached) beside them (2 connections)" "$c_p99" "$c_bad"
awk -v a="$a_rps" -v n="$n_rps" -v g="$g_rps" -v p="$p_p99" -v r="$rss_kib" -v h="$h_p99" -v c="$c_p99" 'BEGIN {
    printf "  API %.2fx nginx (goal >= 0.25x); page %.2fx nginx\n", a / n, g / n
    printf "  p99 while publishing %.2f ms (goal < 25 ms)\n", p
    printf "  under heavy uncached load: /healthz p99 %.2f ms (goal < 50 ms), cached page p99 %.2f ms (goal < 20 ms)\n", h, c
    printf "  peak RSS %.1f MiB (goal < 150 MiB)\n", r / 1024
}'
