#!/usr/bin/env bash
# Every figure of bench/README.md in one run (about 10 minutes on 2 quiet CPU cores), printed to the
# terminal and kept in runs/bench/results.txt (git-ignored). Arguments go to `python -m bench`
# (--threads N, --quick, --compile). PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/bench
"${PYTHON:-python}" -m bench "$@" 2>&1 | tee runs/bench/results.txt
