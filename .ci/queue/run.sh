#!/usr/bin/env bash
# The body of a device queue (started by start.sh as a daemon, so it outlives the call that
# started it; later calls only wait with poll.sh). Runs STEPS_FILE's steps in order from the
# unpacked tree /tmp/w; each step's output goes to /tmp/queue/log-NAME.txt and a step that exits
# 0 is marked done (/tmp/queue/.done-NAME), so a rerun skips it.
#   STEPS_FILE: one step a line, "NAME COMMAND...", run with bash from /tmp/w; '#' lines skipped.
#   In the commands: $Q is /tmp/queue (the store copy is $Q/h100-sxm.json, TILEARENA_BAKED_DIR=$Q).
#   QUEUE_DIR and QUEUE_TREE move /tmp/queue and /tmp/w (tests/test_queue_scripts.py).
set -u
commit=$1
steps=$2
Q=${QUEUE_DIR:-/tmp/queue}
export PYTHONUNBUFFERED=1 TILEARENA_COMMIT=$commit TILEARENA_BAKED_DIR=$Q Q
cd "${QUEUE_TREE:-/tmp/w}" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit,temperature.gpu --format=csv,noheader
while read -r name command; do
    case "$name" in ''|'#'*) continue ;; esac
    [ -f "$Q/.done-$name" ] && continue
    echo "=== $name start $(date +%T)"
    start=$SECONDS
    bash -c "$command" > "$Q/log-$name.txt" 2>&1 < /dev/null
    rc=$?
    echo "=== $name rc=$rc $((SECONDS - start)) s"
    [ $rc = 0 ] && touch "$Q/.done-$name"
    grep -v "TileLang:" "$Q/log-$name.txt" | tail -n 6
done < "$steps"
echo "QUEUE-DONE $(date +%T)"
