#!/usr/bin/env bash
# First work call on a machine with the devkit installed:
#   bash .ci/queue/start.sh COMMIT ARCHIVE STEPS_FILE WAIT_S
# unpacks ARCHIVE (git archive of COMMIT, carried as an ignored path) into /tmp/w, installs it,
# copies the repo's baked store to /tmp/queue, starts run.sh as a daemon (setsid: the device
# tool keeps such a process running while the machine stays held) and waits like poll.sh.
# Later calls: bash .ci/queue/poll.sh WAIT_S (no carry) until the log says QUEUE-DONE.
set -u
commit=$1 archive=$2 steps=$3 wait_s=$4
if [ ! -f "/tmp/w/.extracted-$commit" ]; then
    rm -rf /tmp/w && mkdir -p /tmp/w && tar -xzf "$archive" -C /tmp/w && touch "/tmp/w/.extracted-$commit"
fi
(cd /tmp/w && python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1) \
    || { echo "install failed"; tail /tmp/pip.log; }
mkdir -p /tmp/queue
[ -f /tmp/queue/h100-sxm.json ] || cp /tmp/w/autotune/baked/h100-sxm.json /tmp/queue/h100-sxm.json
cp "$steps" /tmp/queue/steps.txt
if [ ! -f /tmp/queue/queue.log ]; then
    setsid nohup bash /tmp/w/.ci/queue/run.sh "$commit" /tmp/queue/steps.txt > /tmp/queue/queue.log 2>&1 < /dev/null &
    # setsid makes run.sh a session leader: stop.sh ends that session (every step it started).
    echo $! > /tmp/queue/run.pid
fi
bash /tmp/w/.ci/queue/poll.sh "$wait_s"
