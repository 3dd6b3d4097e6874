"""A small deterministic sample of the mutation fuzzer (the long run is scripts/fuzz.py; figures in docs/)."""

from __future__ import annotations

import pytest

from tests.fuzz_harness import run


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_files_never_crash_hang_or_leave_outputs(seed: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tally = run(cases=30, seed=seed, seconds=30, folder=tmp_path / "fuzz")
    assert tally.cases == 90
    assert tally.bad() == 0, "\n".join(tally.examples)
