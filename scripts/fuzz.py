"""Long mutation-fuzzing run over every input format (see tests/fuzz_harness.py for what is counted).

    .venv/bin/python scripts/fuzz.py --mutations 5000 --chunk 500

Runs chunks in separate processes, so a crash inside a native library (h5py, onnx, torch) cannot hide:
a chunk process that dies is reported. Prints the totals as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = """
import json, sys
sys.path.insert(0, {root!r})
from tests.fuzz_harness import run
tally = run(cases={cases}, seed={seed}, seconds=30, hard_exit=True)
print(json.dumps({{"cases": tally.cases, "crashes": tally.crashes, "tracebacks": tally.tracebacks,
    "hangs": tally.hangs, "partial_outputs": tally.partial_outputs, "changed_outputs": tally.changed_outputs,
    "exit_codes": {{str(k): v for k, v in tally.exit_codes.items()}}, "examples": tally.examples[:20]}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutations", type=int, default=5000, help="mutated files (each runs convert, inspect and verify)")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    totals: dict = {"mutations": 0, "cases": 0, "crashes": 0, "tracebacks": 0, "hangs": 0, "partial_outputs": 0,
                    "changed_outputs": 0, "dead_chunks": 0, "exit_codes": {}, "examples": []}
    started = time.time()
    for chunk, first in enumerate(range(0, args.mutations, args.chunk)):
        count = min(args.chunk, args.mutations - first)
        code = CHUNK.format(root=str(ROOT), cases=count, seed=args.seed + chunk)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            hung = [line for line in done.stdout.splitlines() if line.startswith("HANG ")]
            totals["hangs" if hung else "dead_chunks"] += 1
            totals["examples"].append(f"chunk {chunk} ended with {done.returncode}: {hung or done.stderr[-500:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        totals["mutations"] += count
        for key in ("cases", "crashes", "tracebacks", "hangs", "partial_outputs", "changed_outputs"):
            totals[key] += result[key]
        for key, value in result["exit_codes"].items():
            totals["exit_codes"][key] = totals["exit_codes"].get(key, 0) + value
        totals["examples"] += result["examples"]
        print(f"chunk {chunk}: {result['cases']} cases, bad {sum(result[k] for k in ('crashes', 'tracebacks', 'hangs', 'partial_outputs', 'changed_outputs'))}", file=sys.stderr)
    totals["seconds"] = round(time.time() - started, 1)
    print(json.dumps(totals, indent=2))


if __name__ == "__main__":
    main()
