#!/usr/bin/env bash
# The GPU check of issue 23, for a lent GPU machine: `dojo bench gpu` under a hard 8-minute
# timeout, writing one JSON file (default docs/gpu-check.json) and printing its path.
#
#   bench/gpu-check.sh                         # on the GPU: every part (docs/gpu.md)
#   bench/gpu-check.sh --skip ddp             # the same, leaving a part out
#   bench/gpu-check.sh /tmp/dry.json --device cpu --tiny    # the dry run, on any machine
#
# It creates nothing outside the repository: temporary files, torch.compile's and Triton's
# caches go to .gpu-check-tmp/ here, removed on exit. The JSON is rewritten after every part,
# so a run the timeout stops still leaves what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/gpu-check.json
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a first argument that is not a flag: the file
    out="$1"
    shift
fi
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
scratch="$PWD/.gpu-check-tmp"
mkdir -p "$scratch"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch" XDG_CACHE_HOME="$scratch/cache"
export TORCHINDUCTOR_CACHE_DIR="$scratch/inductor" TRITON_CACHE_DIR="$scratch/triton"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # works without `pip install -e .` too
rc=0
# 480 s hard: the budget inside (420 s by default) plus a minute for the last part's overrun;
# SIGTERM first, SIGKILL 15 s later if the run does not stop
timeout --signal=TERM --kill-after=15 480 "$python" -m dojo.cli bench gpu --out "$out" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then  # dojo printed the path itself when it finished
    echo "gpu-check: dojo bench gpu exited $rc (124: the 8-minute timeout); what it wrote:" >&2
    echo "$out"
fi
exit "$rc"
