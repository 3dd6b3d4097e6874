"""Run the numeric check of one converted layer and turn its outcome into a report row or an error.

The check itself (inputs, tolerances, differences) is :mod:`lstmconv.pipeline.numeric_check`; this module decides whether a
layer is checked at all (``--no-verify``, no reference for the source, non-finite weights allowed by
``--allow-nonfinite``) and raises :class:`VerificationError` on a mismatch. It runs in two halves so that a
streaming conversion can compute the source side while the source arrays are in memory and the target side
later from the converted arrays alone (:func:`check_source_side`, :meth:`SourceSide.finish`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmconv.errors import VerificationError
from lstmconv.pipeline.numeric_check import difference_from, source_output, tolerance
from lstmconv.pipeline.read import nonfinite_tensor
from lstmconv.reference.common import LayerOutput, ReferenceFn
from lstmconv.schema import DenseLayer, DenseMeta, Layer, RecurrentLayer, RecurrentMeta

__all__ = ["CheckOutcome", "SourceSide", "check_source_side"]

# (max difference, tolerance, notes); the numbers are None when the layer was not checked
CheckOutcome = tuple[float | None, float | None, tuple[str, ...]]

_NOT_FINITE = ("not checked numerically: the weights hold NaN or Inf",)


@dataclass(frozen=True)
class SourceSide:
    """The first half of a layer's check: the source reference's output (None when the layer is not checked).

    Holds the layer's description and the small output arrays only, never the weights.
    """

    source: str
    meta: RecurrentMeta | DenseMeta | None
    expected: LayerOutput | None
    notes: tuple[str, ...] = ()

    def finish(self, target: ReferenceFn | None, what: str) -> CheckOutcome:
        """Run ``target`` on the same inputs and compare; ``what`` names it in the error ("the ONNX operators")."""
        if self.meta is None or self.expected is None or target is None:
            return None, None, self.notes
        tol = tolerance(self.meta.dtype)
        error = difference_from(self.meta, self.expected, target)
        if not error <= tol:
            raise VerificationError(
                f"{what} do not compute the source layer's function",
                file=self.source,
                layer=self.meta.name,
                expected=f"max difference <= {tol:g}",
                actual=f"{error:.3g}",
                hint="this is a bug in lstmconv; please report it with the file",
            )
        return error, tol, ()


def check_source_side(
    source: str, layer: Layer, reference: ReferenceFn | None, verify: bool, *, known_finite: bool = False
) -> SourceSide:
    """Compute the source half of ``layer``'s check (``reference``: the source layout's function of it).

    Layers with non-finite weights (allowed with --allow-nonfinite) are not checked and say so;
    ``known_finite`` skips looking for them again when the caller has refused them already.
    """
    if not verify or reference is None or not isinstance(layer, (RecurrentLayer, DenseLayer)):
        return SourceSide(source, None, None)
    if not known_finite and nonfinite_tensor(layer) is not None:
        return SourceSide(source, None, None, _NOT_FINITE)
    meta = layer.meta()
    return SourceSide(source, meta, source_output(meta, reference))
