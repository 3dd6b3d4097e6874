"""The conversion matrix: source format x target format x cell x directions x bias x levels.

Each source is made by its real framework (torch modules saved as .pt, Keras 3 models saved as .keras,
torch.onnx.export files, lstmconv's canonical file of the torch module); the converted file is loaded in the
real target framework (torch modules rebuilt from the file, Keras 3 load_weights, onnxruntime) and its output
is compared with the source framework's own output. source -> canonical -> source round trips are bit-exact.
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnxruntime = pytest.importorskip("onnxruntime")

import lstmconv  # noqa: E402
from lstmconv.registry import SOURCE_NAMES, TARGET_NAMES  # noqa: E402
from lstmconv.schema import RecurrentLayer  # noqa: E402
from tests.conftest import assert_close  # noqa: E402

INPUT, HIDDEN, STEPS = 3, 4, 5
CELLS = ("lstm", "gru", "rnn")
# Every source and target of the registry: a new one fails here until it has a runner. tfjs is tested in
# test_tfjs_source.py and test_tfjs_target.py: tfjs reads Keras 2 configs only (the models here are built with
# Keras 3), and a tfjs model is a whole model (the torch, ONNX and canonical sources here carry no model config).
# TF checkpoints (TF1 and TF2) and SavedModels are written by TensorFlow only, not installed here:
# test_tf1_checkpoint_source.py, test_tf_checkpoint_source.py and test_saved_model_source.py have their fixtures.
# ml5 manifests hold TF1 LSTM cells only: test_ml5_source.py. TFLite files are read back in test_tflite_source.py.
SOURCES = tuple(name for name in SOURCE_NAMES if name not in ("tfjs", "ml5", "tf1-checkpoint", "tf-checkpoint", "saved-model", "tflite"))
TARGETS = tuple(name for name in TARGET_NAMES if name != "tfjs")
CASES = list(itertools.product(SOURCES, TARGETS, CELLS, (False, True), (True, False), (1, 2)))


def _id(case: tuple) -> str:  # type: ignore[type-arg]
    source, target, cell, bidirectional, bias, levels = case
    return f"{source}-{target}-{cell}-{'bi' if bidirectional else 'uni'}-{'bias' if bias else 'nobias'}-{levels}L"


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, STEPS, INPUT)).astype(np.float32)


def _make_source(source: str, cell: str, bidirectional: bool, bias: bool, levels: int, folder: Path) -> tuple[Path, np.ndarray]:
    """The source file and what its own framework computes on _x()."""
    x = _x()
    if source == "keras":
        k = keras.layers
        cls = {"lstm": k.LSTM, "gru": k.GRU, "rnn": k.SimpleRNN}[cell]
        stack = []
        for _ in range(levels):
            layer = cls(HIDDEN, return_sequences=True, use_bias=bias)
            stack.append(k.Bidirectional(layer) if bidirectional else layer)
        model = keras.Sequential([keras.Input((STEPS, INPUT)), *stack])
        rng = np.random.RandomState(1)
        model.set_weights([rng.uniform(-0.8, 0.8, w.shape).astype(np.float32) for w in model.get_weights()])
        path = folder / "source.keras"
        model.save(path)
        return path, keras.ops.convert_to_numpy(model(x))
    torch.manual_seed(1)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        INPUT, HIDDEN, num_layers=levels, bidirectional=bidirectional, bias=bias, batch_first=True
    )
    with torch.no_grad():
        y = module(torch.from_numpy(x))[0].numpy()
    if source == "onnx":
        buffer = io.BytesIO()
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, dynamo=False, opset_version=14)
        path = folder / "source.onnx"
        path.write_bytes(buffer.getvalue())
        return path, y
    path = folder / "source.pt"
    torch.save({f"rnn.{k}": v for k, v in module.state_dict().items()}, path)
    if source == "canonical":
        canonical = folder / "source.safetensors"
        lstmconv.convert(path, canonical, to="canonical")
        return canonical, y
    assert source == "torch", f"no way to make a {source} source here"
    return path, y


def _run_target(target: str, out: Path, layers: list[RecurrentLayer], x: np.ndarray) -> np.ndarray:
    if target == "torch":
        from lstmconv.torch_modules import load_torch_modules

        value = torch.from_numpy(x)
        modules = load_torch_modules(out)
        with torch.no_grad():
            for layer in layers:
                value = modules[layer.name](value)[0]
        return value.numpy()
    if target == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if names == ["input"]:
            return session.run(None, {"input": x})[0]
        value = x
        outputs = [o.name for o in session.get_outputs()]
        for layer in layers:  # per-layer model: chain the layers' subgraphs
            feeds = {n: (value if n == f"{layer.name}.x" else np.zeros((2, STEPS, int(session.get_inputs()[names.index(n)].shape[2])), np.float32)) for n in names}
            value = dict(zip(outputs, session.run(None, feeds)))[f"{layer.name}.y"]
        return value
    if target == "keras":
        k = keras.layers
        stack = []
        for layer in layers:
            for level in range(layer.num_levels):
                name = layer.name if level == 0 else f"{layer.name}_l{level}"
                cls = {"lstm": k.LSTM, "gru": k.GRU, "rnn": k.SimpleRNN}[layer.cell]
                kwargs = {"return_sequences": True, "use_bias": layer.use_bias}
                if layer.cell == "gru":
                    kwargs["reset_after"] = bool(layer.reset_after)
                inner = cls(HIDDEN, **kwargs)
                stack.append(k.Bidirectional(inner, name=name) if layer.bidirectional else cls(HIDDEN, name=name, **kwargs))
        model = keras.Sequential([keras.Input((STEPS, INPUT)), *stack])
        model.load_weights(out)
        return keras.ops.convert_to_numpy(model(x))
    if target == "tflite":
        from tests.tflite_helpers import run_tflite

        litert = pytest.importorskip("ai_edge_litert.interpreter")
        widths = {d["name"]: int(d["shape"][-1]) for d in litert.Interpreter(model_path=str(out)).get_input_details()}
        if list(widths) == ["input"]:
            return run_tflite(out, [{"input": x}])[0]["output"]
        value = x
        for layer in layers:  # per-layer model: chain the layers' subgraphs
            feeds = {n: (value if n == f"{layer.name}.x" else np.zeros((2, STEPS, width), np.float32)) for n, width in widths.items()}
            value = run_tflite(out, [feeds])[0][f"{layer.name}.y"]
        return value
    raise AssertionError(target)


def _reference_chain(out: Path, x: np.ndarray) -> np.ndarray:
    loaded = lstmconv.load(out)
    value = x.astype(np.float64)
    for layer in loaded.model.recurrent_layers():
        value = loaded.references[layer.name](value, None).y
    return value


@pytest.mark.parametrize(("source", "target", "cell", "bidirectional", "bias", "levels"), CASES, ids=[_id(c) for c in CASES])
def test_matrix(source: str, target: str, cell: str, bidirectional: bool, bias: bool, levels: int, tmp_path: Path) -> None:
    source_path, truth = _make_source(source, cell, bidirectional, bias, levels, tmp_path)
    suffix = {"torch": ".safetensors", "keras": ".weights.h5", "onnx": ".onnx", "canonical": ".safetensors", "tflite": ".tflite"}[target]
    out = tmp_path / f"converted{suffix}"
    lstmconv.convert(source_path, out, to=target)
    layers = lstmconv.load(source_path).model.recurrent_layers()
    if target == "canonical":
        y = _reference_chain(out, _x())  # no framework runs a canonical file: its own reference does
        back = tmp_path / f"back{source_path.suffix if source != 'canonical' else '.pt'}"
        if source == "keras":
            back = tmp_path / "back.weights.h5"
        round_trip_target = {"torch": "torch", "canonical": "torch", "keras": "keras", "onnx": "onnx"}[source]
        lstmconv.convert(out, back, to=round_trip_target)
        _assert_same_weights(source_path if source != "canonical" else source_path, back, source)
    else:
        y = _run_target(target, out, layers, _x())
    assert_close(y, truth, f"{source} -> {target}")


def _assert_same_weights(original: Path, back: Path, source: str) -> None:
    """source -> canonical -> source keeps every array bit for bit (no bias is summed on these paths)."""
    def arrays(path: Path) -> list[bytes]:
        loaded = lstmconv.load(path)
        found = []
        for layer in loaded.model.recurrent_layers():
            for _, _, direction in layer.directions():
                for gate in sorted(direction.gates):
                    params = direction.gates[gate]
                    found += [a.tobytes() for a in (params.w_input, params.w_recurrent, params.b_input, params.b_recurrent) if a is not None]
        return found

    assert arrays(original) == arrays(back), f"{source} -> canonical -> {source} changed the weights"
