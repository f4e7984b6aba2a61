#!/bin/sh
# Serves a directory over HTTP on loopback in the background (Python's http.server, which
# answers If-Modified-Since with 304) and prints "PID PORT" once it accepts connections.
# Usage: scripts/serve-dir.sh DIR
set -eu

dir=$1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
pid=$!
tries=0
until curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
        kill "$pid" 2>/dev/null || true
        echo "serve-dir: server on port $port did not start" >&2
        exit 1
    fi
    sleep 0.1
done
echo "$pid $port"
