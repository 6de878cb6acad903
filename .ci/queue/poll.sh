#!/usr/bin/env bash
# Wait up to WAIT_S seconds for the queue to finish, then bring back all it wrote so far as
# $OUT/queue.tar.gz (one file: many small ones would exceed what a call returns).
set -u
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ] && ! grep -q QUEUE-DONE /tmp/queue/queue.log 2>/dev/null; do sleep 5; done
cat /tmp/queue/queue.log
tar -czf "$OUT/queue.tar.gz" -C /tmp queue
