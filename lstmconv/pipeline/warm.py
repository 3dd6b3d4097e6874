"""Work done ahead, while a source is vetted: nothing here reads the source."""

from __future__ import annotations

import importlib

from lstmconv.protocols import Options
from lstmconv.registry import TargetSpec

__all__ = ["prepare_writer"]


def prepare_writer(spec: TargetSpec, options: Options) -> None:
    """Import what writing to ``spec`` (and, with ``verify``, checking) will need. Run while a forked child vets
    an HDF5 source (:func:`lstmconv.io.hdf5_guard.prescan_hdf5`): the child takes the second core for a few
    milliseconds, and these imports would otherwise come after it. ``bench.py small --baseline`` against a copy
    without it (21 interleaved rounds): sine to torch 0.36 against 0.38 s; to ONNX no difference (its writer's
    imports are light now that the onnx package is not imported)."""
    target = spec.load()
    for module in (*target.preload, *(("numpy.random",) if options.verify else ())):  # numpy.random: the check's inputs
        importlib.import_module(module)
