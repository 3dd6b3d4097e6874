"""What each target refuses of a layer, and the ways out that exist for a refused one.

Both are asked of the targets themselves (:data:`lstmconv.registry.TARGETS`, each target's ``rule_sets`` and
``refusals``), never written out here: a refusal names the target being written and only ways out that work,
the other targets that compute the layer exactly, an option of the target itself (``--emit-module``), and
``--skip-unsupported``.
"""

from __future__ import annotations

from lstmconv.registry import TARGETS
from lstmconv.schema import Layer

__all__ = ["target_refusals", "ways_out"]


def target_refusals(layer: Layer) -> dict[str, list[str]]:
    """Why each target would refuse ``layer``, by the label of the rule set (targets that accept it are absent)."""
    found: dict[str, list[str]] = {}
    for spec in TARGETS:
        target = spec.load()
        for label in target.rule_sets():
            if reasons := target.refusals(layer, label):
                found[label] = reasons
    return found


def ways_out(layer: Layer, writing: str, *, can_skip: bool = True) -> str:
    """The hint for a layer the rule set ``writing`` (a label of :func:`target_refusals`) refuses; ``can_skip``:
    the target can leave the layer out (a whole-model file cannot)."""
    refused = target_refusals(layer)
    others: list[str] = []
    for spec in TARGETS:
        target = spec.load()
        rule_sets = target.rule_sets()
        if writing in rule_sets and (own := target.way_out(layer)) is not None:
            others.insert(0, own)
        others += [how for label, how in rule_sets.items() if label != writing and label not in refused]
    if can_skip:
        others.append("--skip-unsupported (skip_unsupported=True) to convert the other layers")
    return "instead: " + "; ".join(others)
