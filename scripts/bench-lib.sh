# Helpers the benchmark scripts share; sourced, never run. The caller sets $work (a temp dir).
# shellcheck shell=sh disable=SC2154 # $work is the caller's

# timed LABEL CMD...: runs CMD under GNU time, its output discarded; appends "seconds peak-KiB"
# to $work/LABEL; on failure shows the end of its stderr and exits.
timed() {
    label=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/stderr.out" || {
        echo "bench: $label failed:" >&2
        tail -n 30 "$work/stderr.out" >&2
        exit 1
    }
    cat "$work/time.out" >>"$work/$label"
}

# median FILE COLUMN: the median of a column of numbers.
median() {
    awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
