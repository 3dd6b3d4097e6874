"""Run every structured attack (``tests/attack_harness.py``) and print a table by class.

    .venv/bin/python scripts/attacks.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.attack_harness import ATTACKS, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        outcomes = [run(attack, Path(scratch) / f"{k:03d}") for k, attack in enumerate(ATTACKS)]
    by_class: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for outcome in outcomes:
        by_class[outcome.attack.klass] += 1
        failed[outcome.attack.klass] += not outcome.ok
        mark = "ok  " if outcome.ok else "FAIL"
        print(f"{mark} {outcome.seconds:6.2f} s  {outcome.attack.klass}: {outcome.attack.name}" + ("" if outcome.ok else f"\n      {outcome.why}"))
    print()
    print("| class | attacks | kept the promise |")
    print("|---|---|---|")
    for klass, count in by_class.items():
        print(f"| {klass} | {count} | {count - failed[klass]} |")
    return 1 if sum(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
