"""Under torch.compile: activation_memory_budget against our exported policy at equal measured
peak (see `benchmarks/alternatives.py`, ``--compiled``).

    python benchmarks/alternatives_compiled.py [--layers 8] [--steps 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.alternatives import compiled_comparison

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    compiled_comparison(args.layers, args.steps)
