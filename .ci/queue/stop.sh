#!/usr/bin/env bash
# Stop a running queue and every process its steps started:
#   bash .ci/queue/stop.sh
# Killing run.sh alone is not enough: the step it is running (a tune, a bench) goes on, and
# would share the GPU with whatever runs next (session 18 lost a re-time and a bench that way).
# Nor is killing run.sh's process group: `timeout`, which wraps most steps, puts itself and its
# command in a process group of their own (session 19: a bench stopped that way ran on for
# 9 minutes beside the next step).  run.sh was started with setsid (start.sh), so its pid is
# the id of a session that holds every process the queue started: that session is ended.
set -u
queue=${QUEUE_DIR:-/tmp/queue}
sid=$(cat "$queue/run.pid" 2>/dev/null) || { echo "no $queue/run.pid: no queue started here"; exit 0; }
# Live processes only: a zombie (ended, not yet reaped by its parent) is no longer running.
alive() { ps -o stat= -s "$sid" | grep -qv '^Z'; }
alive || { echo "queue $sid: already ended"; exit 0; }
pkill -TERM -s "$sid"
for _ in $(seq 20); do
    alive || { echo "queue $sid stopped"; exit 0; }
    sleep 0.5
done
pkill -KILL -s "$sid"
sleep 0.5
if alive; then
    echo "queue $sid: still running after SIGKILL:"; ps -o pid,pgid,stat,cmd -s "$sid"; exit 1
fi
echo "queue $sid killed"
