"""One pipeline for every source and target: what one target refuses of a source every target refuses, facts are
read and written from one table, and the registry is what the CLI, the detection and the refusals use."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.registry import SOURCES, TARGETS, detect_format
from tests.conftest import DATA, ROOT

SUFFIX = {"torch": ".safetensors", "keras": ".weights.h5", "onnx": ".onnx", "canonical": ".lstmconv.safetensors", "tfjs": ".json", "tflite": ".tflite"}
WHOLE_MODEL_ONLY = {"tfjs"}  # refuse a source whose layers' connections are unknown before reading it


def test_every_registry_entry_is_a_module_with_its_object() -> None:
    for source in SOURCES:
        assert hasattr(importlib.import_module(source.module).SOURCE, "open"), source.name
    for target in TARGETS:
        loaded = importlib.import_module(target.module).TARGET
        for method in ("rule_sets", "refusals", "rule_set_for", "way_out", "companions", "writer"):
            assert callable(getattr(loaded, method)), (target.name, method)
        assert set(SUFFIX) == {t.name for t in TARGETS}  # this test names a file for every target


@pytest.mark.parametrize("target", sorted(SUFFIX))
def test_a_file_without_a_recurrent_layer_is_refused_by_every_target(target: str, tmp_path: Path) -> None:
    """Only an nn.Linear (a state dict) or a Keras Dense (a whole model): torch and ONNX refused the state dict
    and the canonical target wrote it."""
    from safetensors.numpy import save_file

    sources = []
    if target not in WHOLE_MODEL_ONLY:
        sources.append(tmp_path / "fc.safetensors")
        save_file({"fc.weight": np.ones((2, 3), np.float32), "fc.bias": np.zeros(2, np.float32)}, str(sources[-1]))
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    sources.append(tmp_path / "dense.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(sources[-1])
    made = sorted(p.name for p in tmp_path.iterdir())
    for source in sources:
        out = tmp_path / f"out{SUFFIX[target]}"
        with pytest.raises(InputFormatError, match="no LSTM, GRU or SimpleRNN layer"):
            lstmconv.convert(source, out, to=target)
        assert sorted(p.name for p in tmp_path.iterdir()) == made


def test_detection_and_the_cli_choices_come_from_the_registry(tmp_path: Path) -> None:
    from lstmconv.cli import Source, Target

    assert [s.value for s in Source] == [s.name for s in SOURCES]
    assert [t.value for t in Target] == [t.name for t in TARGETS]
    assert detect_format(ROOT / "examples" / "sine_lstm.h5").name == "keras"
    canonical = tmp_path / "m.lstmconv.safetensors"
    lstmconv.convert(ROOT / "examples" / "sine_lstm.h5", canonical)
    assert detect_format(canonical).name == "canonical"
    torch_file = tmp_path / "m.safetensors"
    lstmconv.convert(canonical, torch_file)
    assert detect_format(torch_file).name == "torch"
    with pytest.raises(UnsupportedFeatureError, match=", ".join(s.name for s in SOURCES)):
        lstmconv.load(canonical, source_format="caffe")


def test_an_option_of_another_target_is_refused_naming_the_one_that_takes_it(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"--emit-module applies to --to torch only"):
        lstmconv.convert(ROOT / "examples" / "sine_lstm.h5", tmp_path / "m.onnx", emit_module=tmp_path / "m.py")
    assert not list(tmp_path.iterdir())


def test_no_list_of_target_or_source_names_outside_the_registry() -> None:
    """Target and format names are the registry's: no module of lstmconv spells out a tuple of them."""
    import re

    names = {t.name for t in TARGETS} | {s.name for s in SOURCES}
    listing = re.compile(r"[(\[{]\s*(?:\"(?:%s)\"\s*,\s*){2,}" % "|".join(names))
    found = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "lstmconv").rglob("*.py")
        if path.name != "registry.py" and listing.search(path.read_text())
    ]
    assert not found


# ---------------------------------------------------------------------------------------------------
# One table per fact: a Keras activation read is one the Keras target writes


def test_every_keras_activation_read_is_written_back_under_a_name_keras_reads() -> None:
    from lstmconv.activations import Activation
    from lstmconv.adapters.keras import keras_activation
    from lstmconv.adapters.keras_plan import keras_activation_name
    from lstmconv.layouts.keras import KERAS_ACTIVATIONS

    for name, (_, _, _, majors) in KERAS_ACTIVATIONS.items():
        for major in sorted(majors):
            activation = keras_activation(name, major)
            written = keras_activation_name(activation, max(major, 2))
            assert written is not None, (name, major)
            assert keras_activation(written, max(major, 2)) == activation, (name, major, written)
    assert keras_activation_name(Activation(name="log_sigmoid"), 2) is None  # tf.keras has no log_sigmoid


def test_a_keras3_lstm_with_log_sigmoid_converts_back_to_keras(tmp_path: Path) -> None:
    """It loaded, then ``--to keras`` refused it: the reader and the writer used two tables."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    layer = keras.layers.LSTM(3, activation="log_sigmoid", return_sequences=True, name="lstm")
    model = keras.Sequential([keras.Input((4, 2)), layer])
    source = tmp_path / "m.keras"
    model.save(source)
    out = tmp_path / "back.weights.h5"
    lstmconv.convert(source, out)
    other = keras.Sequential([keras.Input((4, 2)), keras.layers.LSTM(3, activation="log_sigmoid", return_sequences=True, name="lstm")])
    other.load_weights(out)
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(other(x)), expected, atol=1e-6)
    with pytest.raises(lstmconv.LstmconvError, match="Keras 2 has no activation computing"):
        lstmconv.convert(source, tmp_path / "back.h5")


def test_a_pt_file_and_a_safetensors_hold_the_same_parameters(tmp_path: Path) -> None:
    """The two torch files come from one writer: the same tensors (a .pt holds a plain state dict, no description)."""
    torch = pytest.importorskip("torch")
    from lstmconv.io.torch_files import read_torch_file

    source = DATA / "keras2" / "stacked_lstm.h5"
    lstmconv.convert(source, tmp_path / "a.safetensors")
    lstmconv.convert(source, tmp_path / "a.pt")
    streamed, _ = read_torch_file(tmp_path / "a.safetensors")
    whole, _ = read_torch_file(tmp_path / "a.pt")
    assert sorted(streamed) == sorted(whole)
    assert all(np.array_equal(streamed[k], whole[k]) for k in streamed)
    del torch
