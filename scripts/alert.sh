#!/bin/sh
# Tells a person that a Materia unit or step failed, or recovered: one JSON POST to
# MATERIA_ALERT_URL (a webhook: ntfy, a chat service's incoming webhook, ...).
#
#   scripts/alert.sh NAME failed      NAME failed (a unit: materia-backup.service; a step: transform)
#   scripts/alert.sh NAME recovered   NAME succeeded: a recovery message if a failure was reported
#
# Run by materia-alert@.service (OnFailure= of every unit), by ExecStartPost= of the oneshot
# units, and by the supervisor after each step. It never fails and never waits long: it always
# exits 0, every call is bounded (MATERIA_ALERT_TIMEOUT_SECS), and a malformed URL or a webhook
# that does not answer is logged and retried at the next event. At most one failure message per
# NAME per MATERIA_ALERT_INTERVAL_SECS; one recovery message once it succeeds again. The message
# holds the name, the event, the host and the time, nothing else (never a secret, never a log
# line); the URL itself is treated as a secret (never in argv or logs: curl reads it from stdin).
#
# Environment:
#   MATERIA_ALERT_URL            http(s) URL receiving the POST; unset or empty: nothing is sent
#   MATERIA_ALERT_STATE_DIR      what was reported per NAME (default: `alerts` beside LANDING_DIR,
#                                /data/materia/alerts on the server)
#   MATERIA_ALERT_INTERVAL_SECS  least time between two failure messages of one NAME (3600)
#   MATERIA_ALERT_TIMEOUT_SECS   bound on the POST, connection included (10)
set -u

log() { echo "alert: $*" >&2; }

name=${1:-}
event=${2:-}
case "$event" in
    failed | recovered) ;;
    *) log "usage: alert.sh NAME failed|recovered (got '$event'); nothing sent"; exit 0 ;;
esac
case "$name" in
    '' | *[!A-Za-z0-9@._:-]*) log "'$name' is not a unit or step name; nothing sent"; exit 0 ;;
esac

url=${MATERIA_ALERT_URL:-}
state_dir=${MATERIA_ALERT_STATE_DIR:-$(dirname "${LANDING_DIR:-data/landing}")/alerts}
interval=${MATERIA_ALERT_INTERVAL_SECS:-3600}
timeout=${MATERIA_ALERT_TIMEOUT_SECS:-10}
for n in "$interval" "$timeout"; do
    case "$n" in '' | *[!0-9]*) log "'$n' is not a number of seconds; nothing sent"; exit 0 ;; esac
done
[ "$timeout" -ge 1 ] || timeout=1
state="$state_dir/$name.failing"
now=$(date +%s)

# The state file of a NAME whose failure is open: the Unix time the last failure message was
# delivered (0: none delivered yet).
if [ "$event" = recovered ] && [ ! -f "$state" ]; then
    exit 0 # nothing was reported: nothing to recover from (the common case: no network)
fi
[ -n "$url" ] || exit 0 # no webhook configured: the journal and the metrics are the record
case "$url" in
    http://?* | https://?*) ;;
    *) log "MATERIA_ALERT_URL is not an http(s) URL; $name $event not sent"; exit 0 ;;
esac
case "$url" in
    *[[:space:]\"\\]*) log "MATERIA_ALERT_URL holds a space, quote or backslash; $name $event not sent"; exit 0 ;;
esac
mkdir -p "$state_dir" 2>/dev/null || { log "cannot create $state_dir; $name $event not sent"; exit 0; }

if [ "$event" = failed ]; then
    last=0
    [ -f "$state" ] && last=$(head -n 1 "$state" 2>/dev/null)
    case "$last" in '' | *[!0-9]*) last=0 ;; esac
    if [ "$last" -gt 0 ] && [ $((now - last)) -lt "$interval" ]; then
        log "$name failed again; a message went out $((now - last))s ago, next one after ${interval}s"
        exit 0
    fi
    [ -f "$state" ] || echo 0 >"$state" 2>/dev/null
    title="$name failed"
else
    delivered=$(head -n 1 "$state" 2>/dev/null)
    if [ "${delivered:-0}" = 0 ]; then
        rm -f "$state" # its failure never reached anyone: no recovery to announce
        exit 0
    fi
    title="$name recovered"
fi

host=$(hostname 2>/dev/null || echo unknown)
at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
body=$(printf '{"name":"%s","event":"%s","host":"%s","at":"%s","message":"%s on %s at %s; see journalctl and materia-status on the server"}' \
    "$name" "$event" "$host" "$at" "$title" "$host" "$at")

# curl reads the URL from its config on stdin (never argv: a webhook URL is a credential).
if printf 'url = "%s"\n' "$url" | curl --config - --silent --show-error --fail \
    --max-time "$timeout" --connect-timeout "$timeout" --max-redirs 0 --proto =http,https \
    --header 'Content-Type: application/json' --data-binary "$body" --output /dev/null 2>/dev/null; then
    if [ "$event" = failed ]; then
        echo "$now" >"$state.new" && mv -f "$state.new" "$state"
    else
        rm -f "$state"
    fi
    log "$title: message sent"
else
    log "$title: the webhook did not take the message (curl exit $?); retried at the next event"
fi
exit 0
