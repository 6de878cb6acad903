#!/usr/bin/env bash
# One device call with no devkit: Helion from .scratch/hkit.tar.xz (helion_kit.sh), the project
# from this tree, then each "NAME OVERRIDE_JSON" line of STEPS as a Helion RMSNorm timing-check
# with --adopt into a copy of the baked store, and the Helion split GPU numerics.  Everything
# lands under $OUT/q (at most 8 files come back: keep STEPS to 4 lines).
#   run carry=[".scratch"]  command: bash .ci/queue/helion_only.sh FULL_COMMIT .ci/queue/helion-steps.txt
# An optional third argument replaces the tests' -k selection (e.g. "helion and rmsnorm"); give
# /dev/null as STEPS to run the tests alone.
set -u
commit=$1 steps=$2 tests=${3:-helion_split_rows_match and rmsnorm}
mkdir -p /tmp/hsite && tar -xJf .scratch/hkit.tar.xz -C /tmp/hsite
export PYTHONPATH=/tmp/hsite PYTHONUNBUFFERED=1 TILEARENA_COMMIT=$commit
Q=$OUT/q; mkdir -p "$Q"; cp autotune/baked/h100-sxm.json "$Q/"; export TILEARENA_BAKED_DIR=$Q
log=$Q/log.txt
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader | tee "$log"
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || tail -3 /tmp/pip.log | tee -a "$log"
while read -r name override; do
    case "$name" in ''|'#'*) continue ;; esac
    echo "=== $name $(date +%T)" | tee -a "$log"
    timeout 100 tilearena timing-check --rounds 6 --against override --adopt "$Q/h100-sxm.json" --op rmsnorm \
        --backend helion --shapes "M=4096,N=262144;M=8192,N=65536" --override "$override" --out "$Q/tc-$name.json" \
        2>&1 | grep -v '^\s*$' | tail -8 | tee -a "$log"
done < "$steps"
echo "=== tests $(date +%T)" | tee -a "$log"
{ echo "commit: $commit"; echo "command: python3 -m pytest -q -m gpu -p no:cacheprovider -n 8 --timeout 100 tests/test_gpu.py -k \"$tests\""; } > "$Q/tests.txt"
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider -n 8 --timeout 100 tests/test_gpu.py \
    -k "$tests" >> "$Q/tests.txt" 2>&1; echo "exit: $?" >> "$Q/tests.txt"; tail -5 "$Q/tests.txt" | tee -a "$log"
echo "=== done $(date +%T)" | tee -a "$log"
