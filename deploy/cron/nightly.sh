#!/usr/bin/env bash
# Nightly incremental index run, submitted to the Ray cluster from the head node.
#
#   Installed by deploy/cron/reelay-nightly.cron; run it by hand the same way:
#     REELAY_INPUT=s3://corpus/raw/ REELAY_OUTPUT=s3://lake/video_index deploy/cron/nightly.sh
#
# Settings (environment; the cron file sets them):
#   REELAY_INPUT        input URI (folder, s3://bucket/prefix/, glob or manifest)     [required]
#   REELAY_OUTPUT       output URI (local folder or s3://bucket/prefix)                [required]
#   REELAY_REPO         checkout uploaded as the job's working dir  [default: this script's repo]
#   REELAY_EXTRA_ARGS   more flags for jobs/index.py, e.g. "--checkpoint s3://models/run7"
#   REELAY_LOG_DIR      one log per run, kept REELAY_LOG_DAYS days  [default: ~/reelay-logs, 30]
#   REELAY_LOCK         lock file: one writer per output at a time  [default: /tmp/reelay-nightly.lock]
#   REELAY_WAIT_S       how long to wait for the job to end         [default: 86400]
#   RAY_ADDRESS         the cluster's job server                    [default: http://127.0.0.1:8265]
#
# Exit codes (what the scheduler and its alerting see):
#   0  success
#   1  the job could not run or ended without an exit code (cluster unreachable, driver or head
#      node lost, job stopped): rerun; the next run finishes or discards the crashed run's files
#   2  bad usage or input (jobs/index.py exit 2): fix the flags or the input URI; or another
#      run (a manual one) is writing the output: the log names it, tomorrow's run goes ahead
#   3  more videos failed than --max-failure-fraction (jobs/index.py exit 3): the good ones are
#      committed; look at errors/, then rerun with --retry-errors
#   4  another run still holds the lock (yesterday's run is still going): nothing was submitted
#   5  no progress for --stall-timeout seconds (jobs/index.py exit 4): the cluster lost the
#      nodes the run needs; nothing committed; the next run takes its videos
set -euo pipefail

: "${REELAY_INPUT:?set REELAY_INPUT to the input URI}"
: "${REELAY_OUTPUT:?set REELAY_OUTPUT to the output URI}"
REELAY_REPO="${REELAY_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
REELAY_LOG_DIR="${REELAY_LOG_DIR:-$HOME/reelay-logs}"
REELAY_LOG_DAYS="${REELAY_LOG_DAYS:-30}"
REELAY_LOCK="${REELAY_LOCK:-/tmp/reelay-nightly.lock}"
REELAY_WAIT_S="${REELAY_WAIT_S:-86400}"
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"

mkdir -p "$REELAY_LOG_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
submission_id="reelay-nightly-${stamp}"
log="$REELAY_LOG_DIR/${submission_id}.log"
say() { echo "$(date -u +%FT%TZ) nightly: $*" | tee -a "$log" >&2; }

# One writer per output at a time: the commit protocol relies on it.
exec 9>"$REELAY_LOCK"
if ! flock -n 9; then
    say "another run holds $REELAY_LOCK; not submitting"
    exit 4
fi

find "$REELAY_LOG_DIR" -name 'reelay-nightly-*.log' -mtime +"$REELAY_LOG_DAYS" -delete || true

# shellcheck disable=SC2206  # word splitting of the extra flags is intended
extra=(${REELAY_EXTRA_ARGS:-})
say "submitting $submission_id to $RAY_ADDRESS: $REELAY_INPUT -> $REELAY_OUTPUT"
if ! ray job submit --no-wait --submission-id "$submission_id" --working-dir "$REELAY_REPO" \
    -- python jobs/index.py --input "$REELAY_INPUT" --output "$REELAY_OUTPUT" --incremental \
    "${extra[@]}" >>"$log" 2>&1; then
    say "submission failed (is the cluster up at $RAY_ADDRESS?); see $log"
    exit 1
fi

# Follow the driver's output into the log. A dropped stream is not the job's end: the status
# below is polled until the job is over.
ray job logs --follow "$submission_id" >>"$log" 2>&1 || say "log stream ended early; polling status"

deadline=$((SECONDS + REELAY_WAIT_S))
while :; do
    status_text="$(ray job status "$submission_id" 2>&1 || true)"
    case "$status_text" in
        *"succeeded"* | *"failed"* | *"was stopped"*) break ;;
    esac
    if ((SECONDS >= deadline)); then
        say "job $submission_id still not over after ${REELAY_WAIT_S}s; stopping it"
        ray job stop "$submission_id" >>"$log" 2>&1 || true
        exit 1
    fi
    sleep 30
done
echo "$status_text" >>"$log"

# `ray job submit/status` only say succeeded/failed; the driver's own exit code (2 usage,
# 3 failure threshold) is in the status message.
if [[ "$status_text" == *"succeeded"* ]]; then
    say "job $submission_id succeeded; $(grep -h 'reelay index run' "$log" | tail -n 1 || true)"
    exit 0
fi
code="$(grep -oE 'failed with exit code [0-9]+' <<<"$status_text" | grep -oE '[0-9]+$' | head -n 1 || true)"
case "$code" in
    2) say "job $submission_id: bad usage or input (exit 2); see $log"; exit 2 ;;
    3) say "job $submission_id: failures over the threshold (exit 3); good videos committed; see $log"; exit 3 ;;
    4) say "job $submission_id: no progress, the cluster lost the nodes it needs (exit 4); see $log"; exit 5 ;;
    *) say "job $submission_id failed (driver exit code: ${code:-none}); rerun is safe; see $log"; exit 1 ;;
esac
