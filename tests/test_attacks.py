"""The structured attack suite's quick sample (``scripts/attacks.py`` runs all of it): each lying file is refused
clearly or converted as the framework reads it, within bounded time and memory, losing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attack_harness import ATTACKS, Attack, run

QUICK = [attack for attack in ATTACKS if attack.quick]


@pytest.mark.parametrize("attack", QUICK, ids=[f"{a.klass}: {a.name}" for a in QUICK])
def test_attack_keeps_the_promise(attack: Attack, tmp_path: Path) -> None:
    if attack.name.startswith((".pt", "legacy .pt")):
        pytest.importorskip("torch")
    outcome = run(attack, tmp_path)
    assert outcome.ok, outcome.why
