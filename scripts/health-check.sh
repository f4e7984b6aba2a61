#!/bin/sh
# deploy-poll's default health check, run from the new release directory right after the
# restart. `systemctl is-active` proves nothing (a supervisor whose steps all fail stays active),
# so this passes only once the new release has done its job:
#   - transform, export-serving and every extractor of workflows.toml that was due when the
#     check began (`bin/materia-status --due`; one that is not due has nothing to prove) have a
#     run that started after materia-supervisor.service (re)started and ended `success` or
#     `unchanged`, and no extractor of the registry (`--extractors`) failed since.
#     An extractor's run that failed upstream (connection refused, DNS, time-out, HTTP 5xx:
#     materia-status shows `error (upstream):` under its row) is excused: an outage of USDA or
#     FRED is not the release's fault, and the release then stands or falls on transform and
#     export-serving over the landing data already there (the supervisor runs them after a
#     failed extractor) and on the web app;
#   - when materia-web.socket is enabled, GET /healthz of the web app answers 200.
# It fails at once when a step fails after the restart for any other reason (docs/INTERFACES.md,
# "Exit classes") or the supervisor stops, and when MATERIA_HEALTH_WAIT_SECS pass first.
#
# Environment: STATE_DB / LANDING_DIR as for every step (deploy-poll passes them on);
#   MATERIA_HEALTH_WAIT_SECS  bound on the whole check (default 3000, under deploy-poll's 3600)
#   MATERIA_HEALTH_POLL_SECS  pause between two looks (default 2)
#   MATERIA_WEB_LISTEN        the web app's address (default 127.0.0.1:8080)
set -eu

wait_secs=${MATERIA_HEALTH_WAIT_SECS:-3000}
poll_secs=${MATERIA_HEALTH_POLL_SECS:-2}
web=${MATERIA_WEB_LISTEN:-127.0.0.1:8080}
curl_timeout_secs=5
unit=materia-supervisor.service
for n in "$wait_secs" "$poll_secs"; do
    case "$n" in '' | *[!0-9]*) echo "health: '$n' is not a number of seconds" >&2; exit 2 ;; esac
done

fail() {
    echo "health: $*" >&2
    exit 1
}

[ -x bin/materia-status ] || fail "no bin/materia-status in $(pwd)"
extractors=$(bin/materia-status --extractors) || fail "the workflow registry is unusable (materia-status --extractors)"
due=$(bin/materia-status --due) || fail "cannot tell which extractors are due (materia-status --due)"
words() { printf '%s\n' "$@" | tr -s '\n' ' ' | sed 's/ $//'; }
pipeline=$(words "$due" transform export-serving)
watched=$(words "$extractors" transform export-serving)
started=$(systemctl show --timestamp=us+utc -P ExecMainStartTimestamp "$unit")
[ -n "$started" ] || fail "$unit has not started"
# The ledger's times are ISO-8601 UTC with milliseconds, which compare as text.
since=$(date -u -d "$started" +%Y-%m-%dT%H:%M:%S.%3NZ)
deadline=$(($(date +%s) + wait_secs))

# Prints `ok`, `ok-upstream` (extract-psd failed upstream, the rest succeeded), `failed STEP` or
# `waiting` from materia-status's table: rows `STEP STATUS LAST-RUN ...`, and under a failed
# row its error line, `error (upstream): ...` when the source was at fault.
verdict() {
    bin/materia-status 2>/dev/null | awk -v since="$since" -v pipeline="$pipeline" -v watched="$watched" '
        BEGIN {
            n = split(pipeline, names, " "); for (i = 1; i <= n; i++) want[names[i]] = 1
            m = split(watched, names, " "); for (i = 1; i <= m; i++) watch[names[i]] = 1
        }
        ($1 in watch) {
            row = $1
            if ($3 >= since && ($2 == "success" || $2 == "unchanged")) good[row] = 1
            else if ($3 >= since && $2 == "failed") failed[row] = 1
            next
        }
        $1 == "error" && $2 == "(upstream):" && row != "" { upstream[row] = 1 }
        { row = "" }
        END {
            bad = ""; missing = 0; excused = ""
            # `in`, never a bare reference: awk creates the elements it reads.
            for (s in want) if (!(s in good) && !(s in failed)) missing = 1
            for (s in failed) {
                if ((s in upstream) && s ~ /^extract-/) excused = excused " " s
                else bad = s
            }
            if (bad != "") print "failed " bad
            else if (missing) print "waiting"
            else if (excused != "") print "ok-upstream" excused
            else print "ok"
        }'
}

while :; do
    systemctl is-active --quiet "$unit" || fail "$unit is not active"
    v=$(verdict)
    case "$v" in
        ok | ok-upstream*) break ;;
        failed*)
            bin/materia-status >&2 || true
            fail "${v#failed } failed after the restart at $since"
            ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || {
        bin/materia-status >&2 || true
        fail "no complete pipeline cycle since the restart at $since within ${wait_secs}s"
    }
    sleep "$poll_secs"
done
if [ "$v" = ok ]; then
    echo "health: $pipeline succeeded since $since" >&2
else
    echo "health: transform and export-serving succeeded since $since; ${v#ok-upstream } failed upstream (not the release's fault: the release is judged without it)" >&2
fi

if systemctl is-enabled --quiet materia-web.socket 2>/dev/null; then
    until curl -fsS --max-time "$curl_timeout_secs" -o /dev/null "http://$web/healthz"; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "materia-web's /healthz did not answer 200 within ${wait_secs}s"
        sleep "$poll_secs"
    done
    echo "health: materia-web answers /healthz with 200" >&2
fi
