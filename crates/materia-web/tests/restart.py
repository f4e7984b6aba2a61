"""A restart of materia-web on a socket held by someone else (what systemd's materia-web.socket
does) refuses no connection.

Usage: restart.py BINARY SERVING STATE_DB LOAD_SECS

This process plays systemd: it binds and listens on a loopback socket and keeps it, starts
materia-web with it as fd 3 (LISTEN_FDS=1, LISTEN_PID set by the shell that execs it), and
while client threads open a new connection for every request it stops the server with SIGTERM,
waits for it to exit, and starts the next one on the same socket. Every request must get a
200; prints the counts and exits 1 on any refused connection, error or other status.
"""

import fcntl
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

BINARY, SERVING, STATE_DB, LOAD_SECS = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
CLIENTS = 4
CLIENT_TIMEOUT_SECS = 30
EXIT_TIMEOUT_SECS = 40

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
port = sock.getsockname()[1]
# A copy above the standard descriptors, so the child's dup2 onto 3 is never a no-op.
fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)


def start(log):
    # The child gets the socket as fd 3; the shell execs materia-web with its own pid (which
    # exec keeps) as LISTEN_PID, as systemd sets it.
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'
    return subprocess.Popen(
        ["/bin/sh", "-c", script, BINARY, "--serving", SERVING, "--state-db", STATE_DB],
        preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(3,),
        env={"MATERIA_LOG": "info", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)


def healthy(deadline):
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


counts = {"ok": 0, "refused": 0, "error": 0, "status": 0}
lock = threading.Lock()
stop = threading.Event()
problems = []


def client():
    while not stop.is_set():
        outcome = "ok"
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_SECS)
            c.request("GET", "/api/v1/global-balance?commodity=0711100", headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or not body:
                outcome = "status"
                problems.append(f"status {r.status}")
            c.close()
        except ConnectionRefusedError as e:
            outcome = "refused"
            problems.append(repr(e))
        except Exception as e:  # noqa: BLE001 - every failure counts
            outcome = "error"
            problems.append(repr(e))
        with lock:
            counts[outcome] += 1


log_path = os.environ.get("RESTART_LOG", "/dev/null")
with open(log_path, "ab") as log:
    first = start(log)
    if not healthy(time.monotonic() + 60):
        print("restart: the first server did not become healthy", file=sys.stderr)
        first.kill()
        sys.exit(1)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECS / 2)
    before = dict(counts)
    first.send_signal(signal.SIGTERM)
    try:
        code = first.wait(timeout=EXIT_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        first.kill()
        print("restart: the first server did not exit after SIGTERM", file=sys.stderr)
        sys.exit(1)
    second = start(log)
    time.sleep(LOAD_SECS / 2)
    stop.set()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_SECS + 5)
    healthy_after = healthy(time.monotonic() + 10)
    second.send_signal(signal.SIGTERM)
    try:
        second_code = second.wait(timeout=EXIT_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        second.kill()
        second_code = None

print(f"restart: {counts['ok']} requests answered ({before['ok']} before the restart), "
      f"{counts['refused']} refused, {counts['error']} errors, {counts['status']} other statuses; "
      f"first exit {code}, second exit {second_code}")
failed = (counts["refused"] or counts["error"] or counts["status"] or code != 0 or second_code != 0
          or not healthy_after or counts["ok"] <= before["ok"] or before["ok"] == 0)
if failed:
    print("restart: FAILED: " + "; ".join(problems[:10]), file=sys.stderr)
    sys.exit(1)
