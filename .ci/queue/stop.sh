#!/usr/bin/env bash
# Stop a running queue and every process its steps started:
#   bash .ci/queue/stop.sh
# Killing run.sh alone is not enough: the step it is running (a tune, a bench) goes on, and
# would share the GPU with whatever runs next (session 18 lost a re-time and a bench that way).
# run.sh was started with setsid (start.sh), so its pid is its process group's id.
set -u
pid=$(cat /tmp/queue/run.pid 2>/dev/null) || { echo "no /tmp/queue/run.pid: no queue started here"; exit 0; }
kill -TERM -- "-$pid" 2>/dev/null || { echo "queue $pid: already ended"; exit 0; }
for _ in $(seq 20); do
    kill -0 -- "-$pid" 2>/dev/null || { echo "queue $pid stopped"; exit 0; }
    sleep 0.5
done
kill -KILL -- "-$pid" 2>/dev/null
echo "queue $pid killed"
