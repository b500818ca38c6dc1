#!/usr/bin/env bash
# The device check for a lent GPU machine (run it first, before other work; under 8 minutes):
# the gpu-marked tests, then predicted vs measured memory and step time on two zoo models, whose
# rows land in benchmarks/RESULTS.md ("gpu_check") with the device name.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -m gpu -p no:cacheprovider || [ $? -eq 5 ]  # 5: no gpu tests collected
timeout 420 python benchmarks/gpu_check.py --device cuda
