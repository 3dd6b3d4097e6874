"""Running written ``.tflite`` files in the LiteRT interpreter (``ai-edge-litert``, the test extra; skipped without)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

__all__ = ["run_tflite", "run_examples", "operators"]


def run_tflite(path: Path, calls: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The outputs (by name) of successive ``invoke()``s of one interpreter, one per feed in ``calls`` (inputs by
    name; resized to their shapes when those change): a stateful model would carry the first call into the next."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(path))
    details = {d["name"]: d for d in interpreter.get_input_details()}
    shapes: dict[str, tuple[int, ...]] = {}
    results = []
    for feeds in calls:
        assert set(details) == set(feeds), (sorted(details), sorted(feeds))
        if any(shapes.get(name) != value.shape for name, value in feeds.items()):
            for name, value in feeds.items():
                interpreter.resize_tensor_input(details[name]["index"], list(value.shape))
            interpreter.allocate_tensors()
            shapes = {name: value.shape for name, value in feeds.items()}
        for name, value in feeds.items():
            interpreter.set_tensor(details[name]["index"], value.astype(details[name]["dtype"]))
        interpreter.invoke()
        results.append({d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()})
    return results


def run_examples(path: Path, feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each example of the batch alone, one call after the other, then the whole batch: outputs per call (the
    examples' joined into one batch), as ``[joined single calls, batch call]``."""
    batch = next(iter(feeds.values())).shape[0]
    singles = run_tflite(path, [{name: value[k : k + 1] for name, value in feeds.items()} for k in range(batch)] + [feeds])
    joined = {name: np.concatenate([call[name] for call in singles[:batch]]) for name in singles[0]}
    return [joined, singles[-1]]


def operators(path: Path) -> list[str]:
    """The builtin operators of every subgraph, main first."""
    from lstmconv.io.tflite_flatbuffer import read_model_summary

    return [op for graph in read_model_summary(path.read_bytes(), path)["subgraphs"] for op in graph["operators"]]
