#!/bin/sh
# The Materia supervisor: runs the pipeline's steps in order, one cycle after another, in the
# manner of TigerBeetle's CFO supervisor: set -eu, children run as `cmd & wait`, a trap that
# takes the running step (and its whole process group) down with the supervisor, a time bound
# on every step, a sleep between cycles and a doubling back-off after a failed one.
#
#   scripts/supervisor.sh          loop forever (systemd: materia-supervisor.service)
#   scripts/supervisor.sh --once   run one cycle and exit with its status
#
# A cycle runs the extractors of workflows.toml that are due (`materia-status --due` reads the
# registry and the state DB; this script never parses TOML), each on its own: one that fails is
# logged, recorded by itself and tried again when due, and never stops the others. Then
# transform and export-serving, which do work only when their inputs changed (what landed, the
# quarantine, the project), on whatever landed. The first of those two that fails ends the
# cycle with its exit code and the next cycle backs off; when both succeed, the cycle's status
# is that of the first required extractor that failed (0 when none did; `required = false` in
# the registry marks a source whose failure is logged and alerted but not the cycle's). A
# registry error stops the supervisor with exit 2 before it runs anything.
#
# Environment: the variables of docs/INTERFACES.md section 1 (LANDING_DIR, STATE_DB, DUCKDB_PATH,
# SERVING_DUCKDB_PATH, METRICS_DIR), PSD_URL and the other step variables pass through. Also:
#   MATERIA_ENV_FILE           dotenv file read first, as data (systemd units load /etc/materia/env/current/<unit>.env themselves)
#   MATERIA_BIN_DIR            the step binaries (default ./bin, else the cargo target directory)
#   MATERIA_WORKFLOWS          the workflow registry (default workflows.toml, in this directory)
#   SUPERVISOR_INTERVAL_SECS   sleep between good cycles (default 3600)
#   SUPERVISOR_BACKOFF_SECS    first sleep after a failed cycle, doubled each time (default 60)
#   SUPERVISOR_BACKOFF_MAX_SECS  cap of that sleep (default 21600)
#   SUPERVISOR_STEP_TIMEOUT_SECS bound on each step (default 7200); SIGKILL 30 s after SIGTERM
#   MATERIA_ALERT_URL          a failed step, and its recovery, are reported there (scripts/alert.sh)
set -eu

# After the due extractors, in order: the steps of the cycle declared in
# crates/step-runtime/src/binaries.rs that are not extractors (crates/operations/tests/
# binaries.rs checks that the two agree).
steps="transform export-serving"

once=false
case "${1:-}" in
    --once) once=true ;;
    "") ;;
    -h | --help)
        sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "supervisor: unknown argument '$1' (--once or nothing)" >&2
        exit 2
        ;;
esac

# MATERIA_ENV_FILE is data, never shell code: it is read the way systemd's EnvironmentFile=
# reads it (KEY=VALUE lines; `#`/`;` comments; single quotes literal; in double quotes and
# unquoted text a backslash keeps the next character; no expansion of `$`, backticks or
# anything else). What systemd would ignore (no `=`, an invalid name) is ignored with a warning;
# the multi-line forms (a quote or a backslash continued on the next line) are refused, exit 2.
load_env_file() {
    parsed=$(awk '
        function refuse(why) {
            printf "supervisor: %s line %d: %s\n", FILENAME, FNR, why > "/dev/stderr"
            exit 2
        }
        function warn(why) {
            printf "supervisor: %s line %d: ignored: %s\n", FILENAME, FNR, why > "/dev/stderr"
        }
        {
            line = $0
            sub(/^[ \t\r]+/, "", line)
            if (line == "" || line ~ /^[#;]/) next
            eq = index(line, "=")
            if (eq == 0) { warn("no \"=\""); next }
            key = substr(line, 1, eq - 1)
            sub(/[ \t]+$/, "", key)
            if (key !~ /^[A-Za-z_][A-Za-z0-9_]*$/) { warn("invalid name"); next }
            v = substr(line, eq + 1)
            sub(/^[ \t]+/, "", v)
            sub(/[ \t\r]+$/, "", v)
            n = length(v)
            out = ""
            if (substr(v, 1, 1) == "\047") {
                rest = substr(v, 2)
                end = index(rest, "\047")
                if (end == 0) refuse("a quoted value must end on its own line")
                if (end != length(rest)) refuse("text after the closing quote")
                out = substr(rest, 1, end - 1)
            } else if (substr(v, 1, 1) == "\"") {
                end = 0
                for (i = 2; i <= n; i++) {
                    c = substr(v, i, 1)
                    if (c == "\\") {
                        if (i == n) refuse("a quoted value must end on its own line")
                        d = substr(v, i + 1, 1)
                        out = out (index("\"\\`$", d) ? d : c d)
                        i++
                    } else if (c == "\"") {
                        end = i
                        break
                    } else {
                        out = out c
                    }
                }
                if (end == 0) refuse("a quoted value must end on its own line")
                if (end != n) refuse("text after the closing quote")
            } else {
                for (i = 1; i <= n; i++) {
                    c = substr(v, i, 1)
                    if (c == "\\") {
                        if (i == n) refuse("a line continued with a backslash is not supported")
                        out = out substr(v, i + 1, 1)
                        i++
                    } else {
                        out = out c
                    }
                }
            }
            print key "=" out
        }' "$1") || exit 2
    # Each line is KEY=VALUE; `export "$kv"` assigns it as it is and expands nothing in it.
    while IFS= read -r kv; do
        [ -z "$kv" ] || export "${kv?}"
    done <<EOF
$parsed
EOF
}

if [ -n "${MATERIA_ENV_FILE:-}" ]; then
    [ -r "$MATERIA_ENV_FILE" ] || { echo "supervisor: cannot read MATERIA_ENV_FILE=$MATERIA_ENV_FILE" >&2; exit 2; }
    load_env_file "$MATERIA_ENV_FILE"
fi

if [ -n "${MATERIA_BIN_DIR:-}" ]; then
    bin=$MATERIA_BIN_DIR
elif [ -x bin/materia-status ]; then
    bin=bin
else
    bin=${CARGO_TARGET_DIR:-$HOME/.cache/materia/target}/release
fi
[ -x "$bin/materia-status" ] || { echo "supervisor: no materia-status in $bin (make release, or set MATERIA_BIN_DIR)" >&2; exit 2; }
# The registry is checked once at start: an error stops here (exit 2), never half a registry.
code=0
extractors=$("$bin/materia-status" --extractors) || code=$?
if [ "$code" -ne 0 ]; then
    echo "supervisor: the workflow registry is unusable (materia-status --extractors: exit $code; its message is above)" >&2
    exit 2
fi
# Extractors marked `required = false`, space-separated and padded for a `case` match.
optional=" $("$bin/materia-status" --extractors --optional | tr '\n' ' ') "
for step in $extractors $steps; do
    [ -x "$bin/$step" ] || { echo "supervisor: no $step in $bin (make release, or set MATERIA_BIN_DIR)" >&2; exit 2; }
done

interval=${SUPERVISOR_INTERVAL_SECS:-3600}
backoff_first=${SUPERVISOR_BACKOFF_SECS:-60}
backoff_max=${SUPERVISOR_BACKOFF_MAX_SECS:-21600}
step_timeout=${SUPERVISOR_STEP_TIMEOUT_SECS:-7200}
for n in "$interval" "$backoff_first" "$backoff_max" "$step_timeout"; do
    case "$n" in '' | *[!0-9]*) echo "supervisor: '$n' is not a number of seconds" >&2; exit 2 ;; esac
done

log() { echo "supervisor: $*" >&2; }

child=""
# On SIGTERM/SIGINT: stop the running step (timeout(1) passes the signal to the step's whole
# process group, SQLMesh included), wait for it, and exit.
stop() {
    trap - INT TERM
    if [ -n "$child" ]; then
        log "stopping (pid $child)"
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit 143
}
trap stop INT TERM

# Runs one step under the time bound; returns its exit code (124: it ran out of time).
run_step() {
    name=$1
    log "$name: starting"
    timeout --kill-after=30 "$step_timeout" "$bin/$name" &
    child=$!
    code=0
    wait "$child" || code=$?
    child=""
    case "$code" in
        0) log "$name: ok" ;;
        124 | 137) log "$name: killed after ${step_timeout}s (SUPERVISOR_STEP_TIMEOUT_SECS)" ;;
        75) log "$name: busy (exit 75), another run holds its lock" ;;
        126 | 127) log "$name: could not start (exit $code; see the loader's message above): $bin/$name and the DuckDB library it loads from $bin/../lib/libduckdb.so must both be there (make release)" ;;
        *) log "$name: failed (exit $code)" ;;
    esac
    notify "$name" "$code"
    return "$code"
}

# A failed step (any exit but 0 and 75) and its next success are reported by scripts/alert.sh,
# which is bounded, always exits 0 and sends nothing without MATERIA_ALERT_URL.
alert_script=$(dirname "$0")/alert.sh
notify() {
    case "$2" in
        0) event=recovered ;;
        75) return 0 ;;
        *) event=failed ;;
    esac
    [ ! -f "$alert_script" ] || sh "$alert_script" "$1" "$event" </dev/null || true
}

# Sets extract_status (the first extractor failure, 0 if none) and returns the status of
# transform and export-serving.
cycle() {
    extract_status=0
    due_code=0
    due=$("$bin/materia-status" --due) || due_code=$?
    case "$due_code" in
        0) ;;
        2)
            log "the workflow registry became unusable (materia-status --due: exit 2); stopping"
            exit 2
            ;;
        *)
            log "cannot tell which extractors are due (materia-status --due: exit $due_code)"
            extract_status=$due_code
            due=""
            ;;
    esac
    [ -n "$due" ] || log "no extractor is due"
    for step in $due; do
        code=0
        run_step "$step" || code=$?
        [ "$code" -ne 0 ] || continue
        case "$optional" in
            *" $step "*) log "$step is optional (required = false): its failure does not fail the cycle" ;;
            *) [ "$extract_status" -ne 0 ] || extract_status=$code ;;
        esac
    done
    for step in $steps; do
        run_step "$step" || return "$?"
    done
}

backoff=$backoff_first
while :; do
    status=0
    cycle || status=$?
    if [ "$once" = true ]; then
        [ "$status" -ne 0 ] || status=$extract_status
        exit "$status"
    fi
    [ "$extract_status" -eq 0 ] || log "an extractor failed (first: exit $extract_status); each is tried again when due"

    if [ "$status" -eq 0 ]; then
        backoff=$backoff_first
        pause=$interval
    else
        pause=$backoff
        backoff=$((backoff * 2))
        [ "$backoff" -le "$backoff_max" ] || backoff=$backoff_max
        log "cycle failed (exit $status); next one in ${pause}s"
    fi
    sleep "$pause" &
    child=$!
    wait "$child" || true
    child=""
done
