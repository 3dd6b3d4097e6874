"""TFLite models as a source: the fused sequence ops read back as layers, the rest refused saying why.

Judges: the corpus's TFLite files with outputs recorded by TensorFlow 2.21's TFLite interpreter (a fused LSTM with
cell_clip 10; a WHILE loop; Flex ops; an unrolled LSTM; skipped without ``../shared/corpus``), and the LiteRT
interpreter running the files lstmconv writes from tf_keras fixtures, read back here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError, RefusedConversionError, UnsupportedFeatureError
from lstmconv.registry import detect_format
from tests.conftest import DATA, assert_close, corpus_file
from tests.tflite_helpers import run_examples

pytest.importorskip("tflite")

LAYER = "tfl.unidirectional_sequence_lstm"


@pytest.mark.parametrize("case", ["stacked_lstm", "simplernn_relu", "bidirectional_concat", "bidirectional_ave", "go_backwards_lstm"])
def test_files_lstmconv_writes_read_back_as_the_layers_they_hold(case: str, tmp_path: Path) -> None:
    source = DATA / "keras2" / f"{case}.h5"
    lstmconv.convert(source, tmp_path / "m.tflite", per_layer=True)
    assert detect_format(tmp_path / "m.tflite").name == "tflite"
    expected = np.load(DATA / "keras2" / f"{case}.outputs.npz")
    read = lstmconv.load(tmp_path / "m.tflite")
    originals = {layer.name: layer for layer in lstmconv.load(source).model.recurrent_layers()}
    for name, original in originals.items():
        # one layer per source layer (a bidirectional pair and its merge read as one), named by its output
        (layer,) = [layer for layer in read.model.recurrent_layers() if layer.name == f"{name}.y"]
        assert layer.bidirectional == original.bidirectional and layer.merge_mode == original.merge_mode
        y = read.references[layer.name](expected[f"{name}/x"], None).y
        assert_close(y, expected[f"{name}/y"], f"{case} {name} read back")
    lstmconv.convert(tmp_path / "m.tflite", tmp_path / "again.onnx")  # and on to another target


def test_the_corpus_fused_lstm_with_cell_clip_reads_exactly_and_goes_where_it_can(tmp_path: Path) -> None:
    """cell_clip=10 clamps the cell state at every step: the canonical state_clip. TFLite, the canonical file and
    --emit-module compute it; torch.nn, ONNX and Keras refuse, saying so."""
    source = corpus_file("har-lstm-tflite/lstm.tflite")
    expected = np.load(str(corpus_file("har-lstm-tflite/lstm.tflite.expected.npz")))
    read = lstmconv.load(source)
    (layer,) = read.model.recurrent_layers()
    assert layer.name == LAYER and layer.state_clip == 10.0
    x = expected[f"{LAYER}/x"]
    out = read.references[LAYER](x, None)
    assert_close(out.y, expected[f"{LAYER}/y"], "reference y")
    assert_close(out.states[0][0][1], expected[f"{LAYER}/c"], "reference c")
    lstmconv.convert(source, tmp_path / "again.tflite")
    for y in run_examples(tmp_path / "again.tflite", {f"{LAYER}.x": x}):
        assert_close(y[f"{LAYER}.y"], expected[f"{LAYER}/y"], "written again, in LiteRT")
    for out_name, match in (("m.onnx", "not the cell state"), ("m.safetensors", "does not clamp its cell state"),
                            ("m.weights.h5", "do not clamp their cell state")):
        with pytest.raises(RefusedConversionError, match=match):
            lstmconv.convert(source, tmp_path / out_name)
    torch = pytest.importorskip("torch")
    import importlib.util

    from safetensors.torch import load_file

    lstmconv.convert(source, tmp_path / "m.safetensors", emit_module=tmp_path / "layers.py")
    spec = importlib.util.spec_from_file_location("layers", tmp_path / "layers.py")
    assert spec is not None and spec.loader is not None
    emitted = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(emitted)
    modules = emitted.build_modules()
    emitted.load_state(modules, load_file(str(tmp_path / "m.safetensors")))
    with torch.no_grad():
        y, _ = modules[LAYER](torch.from_numpy(x))
    assert_close(y.numpy(), expected[f"{LAYER}/y"], "emitted module")


@pytest.mark.parametrize(("relative", "reason"), [
    ("driveprofiler-lstm-tflite/lstm_model.tflite", "WHILE loop of builtin ops"),
    ("lettuce-lstm-keras3-tflite/lstm_model.tflite", "FlexTensorListReserve"),
    ("signtalk-unrolled-lstm-tflite/lstm_model.tflite", "unrolled"),
])
def test_corpus_recurrences_that_are_no_layer_are_refused_saying_why(relative: str, reason: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=reason):
        lstmconv.load(corpus_file(relative))


def test_a_damaged_tflite_file_is_refused(tmp_path: Path) -> None:
    lstmconv.convert(DATA / "keras2" / "stacked_lstm.h5", tmp_path / "m.tflite")
    data = bytearray((tmp_path / "m.tflite").read_bytes())
    (tmp_path / "short.tflite").write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(InputFormatError):
        lstmconv.load(tmp_path / "short.tflite")
    (tmp_path / "tiny.tflite").write_bytes(b"\x10\x00\x00\x00TFL3")
    with pytest.raises(InputFormatError):
        lstmconv.load(tmp_path / "tiny.tflite")


@pytest.mark.parametrize("case", ["go_backwards_lstm", "bidirectional_concat", "bidirectional_mul", "bidirectional_ave"])
def test_verify_sees_a_written_tflite_as_the_source_function(case: str, tmp_path: Path) -> None:
    """REVERSE_V2 around an op is a go_backwards layer, two ops merged by CONCATENATION/ADD/MUL one
    bidirectional layer: the file reads back as the function written."""
    source = DATA / "keras2" / f"{case}.h5"
    lstmconv.convert(source, tmp_path / "m.tflite", per_layer=True)
    assert lstmconv.verify(source, tmp_path / "m.tflite", common_only=True).same


def test_an_average_that_is_not_one_is_not_read_as_a_merge(tmp_path: Path) -> None:
    """ADD then MUL reads as merge_mode='ave' only when the factor is 0.5: with 0.7 the two ops are two layers."""
    from tflite.Model import Model

    lstmconv.convert(DATA / "keras2" / "bidirectional_ave.h5", tmp_path / "m.tflite", per_layer=True)
    assert lstmconv.load(tmp_path / "m.tflite").model.recurrent_layers()[0].merge_mode == "ave"
    data = bytearray((tmp_path / "m.tflite").read_bytes())
    model = Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    (half,) = [graph.Tensors(t) for t in range(graph.TensorsLength()) if graph.Tensors(t).Name().endswith(b"/half")]
    buffer = model.Buffers(half.Buffer())
    start = buffer._tab.Vector(buffer._tab.Offset(4))
    assert bytes(data[start : start + 4]) == np.float32(0.5).tobytes()
    data[start : start + 4] = np.float32(0.7).tobytes()
    (tmp_path / "other.tflite").write_bytes(bytes(data))
    layers = lstmconv.load(tmp_path / "other.tflite").model.recurrent_layers()
    assert len(layers) == 2 and not any(layer.bidirectional for layer in layers)
