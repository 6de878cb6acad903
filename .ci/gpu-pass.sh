#!/usr/bin/env bash
# The H100 pass, run through the device tool after the devkit is installed (see README):
#   bash .ci/gpu-pass.sh tests COMMIT     -> $OUT/gpu-tests.txt
#   bash .ci/gpu-pass.sh bench COMMIT OPS SHAPES NAME  -> $OUT/NAME/results.json (+ index.html,
#       baked-check.txt: rows against the baked times, and bench shapes with no baked bucket)
#   bash .ci/gpu-pass.sh timing COMMIT OP BACKENDS SHAPES [ROUNDS] -> $OUT/timing-check.json
#       (AGAINST=steady|clean-flush|override: the method compared with the default; OVERRIDE=JSON
#       the config keys changed for override, e.g. '{"variant": "split_keep"}')
#   bash .ci/gpu-pass.sh tune COMMIT OPS BACKENDS SHAPES [BUDGET] -> $OUT/h100-sxm.json, $OUT/tune-OP/tuning.json
#   bash .ci/gpu-pass.sh retime COMMIT OPS BACKENDS [SHAPES] -> $OUT/h100-sxm.json (the repo's baked
#       file with each entry's winner re-checked and re-timed on this machine), $OUT/retime-OP/tuning.json
#   TIMING=steady|default picks bench's, tune's and retime's --timing (retime: steady by default).
#   bash .ci/gpu-pass.sh efficiency COMMIT OP BACKEND SHAPES [QUICK_BUDGET] [FULL_BUDGET]
#       -> $OUT/se-BACKEND-{quick,full-N}/tuning.json and $OUT/se-BACKEND-efficiency.json: quick
#          against full (exhaustive where the space is listable and small) or against REFERENCE
#          logs, winners timed head to head; seeded by the kernel only (no baked store)
set -u
export PYTHONUNBUFFERED=1 TILEARENA_COMMIT="$2"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "editable install failed"
case "$1" in
tests)
    # The timer's own tests first and alone (marker timing: they need the GPU to themselves),
    # then the rest eight at a time.
    timing=(python3 -m pytest -q -m "gpu and timing" -p no:cacheprovider tests/test_gpu.py)
    rest=(python3 -m pytest -q -m "gpu and not timing" -p no:cacheprovider -n 8 --timeout 240 tests/)
    { echo "commit: $2"; echo "command: ${timing[*]}; ${rest[*]}"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } > "$OUT/gpu-tests.txt"
    timeout 240 "${timing[@]}" > "$OUT/gpu-tests-timing.log" 2>&1
    timing_rc=$?
    timeout "${3:-500}" "${rest[@]}" > "$OUT/gpu-tests.log" 2>&1
    echo "exit: timing $timing_rc, rest $?" >> "$OUT/gpu-tests.txt"
    tail -n 1 "$OUT/gpu-tests-timing.log" >> "$OUT/gpu-tests.txt"
    grep -E "^(FAILED|ERROR)" "$OUT/gpu-tests.log" | head -60 >> "$OUT/gpu-tests.txt"
    tail -n 25 "$OUT/gpu-tests.log" >> "$OUT/gpu-tests.txt"
    tail -n 40 "$OUT/gpu-tests.txt"
    ;;
bench)
    timeout "${6:-560}" tilearena bench --op "$3" --shapes "$4" --out "$OUT/$5" --warm-workers 8 --report \
        --timing "${TIMING:-default}" 2>&1 | tail -n 90
    # The rows against the tuner's baked times, and which bench shapes have no baked bucket.
    tilearena baked-check "$OUT/$5/results.json" --coverage > "$OUT/$5/baked-check.txt" 2>&1
    tail -n 25 "$OUT/$5/baked-check.txt"
    ;;
timing)
    # How far one config's time moves between interleaved measurements, default against steady.
    timeout "${7:-560}" tilearena timing-check --op "$3" --backend "$4" --shapes "$5" --rounds "${6:-8}" \
        --against "${AGAINST:-steady}" ${OVERRIDE:+--override "$OVERRIDE"} --out "$OUT/timing-check.json" 2>&1 \
        | tail -n 40
    ;;
tune)
    # OPS comma-separated; every op's winners merge into one store, baked as each is found.
    # RESUME=1 starts from the repo's baked file and skips the shapes it already holds;
    # CANDIDATE_TIMEOUT=S caps each candidate's compile-and-check (and timing) at S seconds.
    skip=""
    if [ "${RESUME:-0}" = 1 ]; then cp autotune/baked/h100-sxm.json "$OUT/h100-sxm.json"; skip="--skip-baked"; fi
    for op in ${3//,/ }; do
        timeout "${7:-560}" tilearena tune --op "$op" --backend "$4" --shapes "$5" --effort quick --budget "${6:-20}" \
            --timing "${TIMING:-default}" --compile-workers 8 ${CANDIDATE_TIMEOUT:+--candidate-timeout $CANDIDATE_TIMEOUT} --bake $skip \
            --store "$OUT/h100-sxm.json" --out "$OUT/tune-$op" 2>&1 | grep -v "TileLang:" | tail -n 30
    done
    ;;
retime)
    # No search: every baked entry of OPS (and BACKENDS; SHAPES if given) has its winner checked
    # against float64 again and timed on this machine; a bench that follows on the same machine
    # is then compared with times of the same board (TILEARENA_BAKED_DIR=$OUT for that bench).
    cp autotune/baked/h100-sxm.json "$OUT/h100-sxm.json"
    for op in ${3//,/ }; do
        timeout "${6:-560}" tilearena tune --op "$op" --backend "$4" ${5:+--shapes "$5"} --effort retime \
            --timing "${TIMING:-steady}" --compile-workers 8 --bake --store "$OUT/h100-sxm.json" \
            --out "$OUT/retime-$op" 2>&1 | grep -v "TileLang:" | tail -n 12
    done
    ;;
efficiency)
    # No baked store: the searches start from the kernel's own seeds, as on a new GPU. Quick
    # first (all shapes); the reference is REFERENCE (tuning.json files of earlier full or
    # exhaustive searches, space-separated) or else a full search per shape, run one shape at a
    # time so a cut-off call keeps whole shapes. Then both winners are timed head to head.
    mkdir -p /tmp/no-baked-store
    export TILEARENA_BAKED_DIR=/tmp/no-baked-store
    timeout 400 tilearena tune --op "$3" --backend "$4" --shapes "$5" --effort quick --budget "${6:-30}" \
        --compile-workers 12 --out "$OUT/se-$4-quick" 2>&1 | tail -n 8
    references="${REFERENCE:-}"
    if [ -z "$references" ]; then
        i=0
        IFS=';' read -ra shapes <<< "$5"
        for shape in "${shapes[@]}"; do
            i=$((i + 1))
            timeout 560 tilearena tune --op "$3" --backend "$4" --shapes "$shape" --effort full --budget "${7:-400}" \
                --compile-workers 12 --out "$OUT/se-$4-full-$i" 2>&1 | tail -n 3
            references="$references $OUT/se-$4-full-$i/tuning.json"
        done
    fi
    # shellcheck disable=SC2086
    timeout 300 tilearena tune-efficiency "$OUT/se-$4-quick/tuning.json" $references \
        --out "$OUT/se-$4-efficiency.json" 2>&1 | tail -n 20
    ;;
esac
