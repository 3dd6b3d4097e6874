"""Promises kept at the edges: nothing lost (the source is never the destination), what the user sees
(target from the suffix, whole reports, JSON, --version) and the library's verbs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmconv.cli import app
from tests.conftest import DATA, ROOT

runner = CliRunner()
SINE = ROOT / "examples" / "sine_lstm.h5"


def _run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def _same_file_spellings(tmp_path: Path, original: Path) -> list[Path]:
    """The source itself, another spelling of its path, a hard link and a symbolic link to it."""
    (tmp_path / "sub").mkdir()
    hard = tmp_path / f"hard{original.suffix}"
    os.link(original, hard)
    symbolic = tmp_path / f"symbolic{original.suffix}"
    symbolic.symlink_to(original)
    return [original, tmp_path / "sub" / ".." / original.name, hard, symbolic]


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize(
    ("name", "to"),
    [("sine_lstm.h5", "keras"), ("sine_lstm.h5", "torch"), ("lstm_stacked.onnx", "onnx")],
)
def test_source_and_destination_the_same_file_is_refused(tmp_path: Path, name: str, to: str, force: bool) -> None:
    original = tmp_path / name
    shutil.copy(SINE if name == "sine_lstm.h5" else DATA / "tf2onnx" / name, original)
    before = original.read_bytes()
    for spelling in _same_file_spellings(tmp_path, original):
        if to == "torch":  # the torch target writes .safetensors / .pt only: a link with that suffix to the source
            spelling = spelling.with_suffix(".safetensors")
            if not spelling.exists():
                spelling.symlink_to(original)
        result = _run("convert", original, spelling, "--to", to, *(["--force"] if force else []))
        assert result.exit_code == 2, result.output
        assert "the source file itself" in result.output and "Traceback" not in result.output
        assert original.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_library_save_refuses_the_file_it_was_loaded_from(tmp_path: Path) -> None:
    import lstmconv

    original = tmp_path / "sine.h5"
    shutil.copy(SINE, original)
    loaded = lstmconv.load(original)
    with pytest.raises(lstmconv.errors.OutputExistsError, match="source file itself"):
        lstmconv.save_keras(loaded, original, force=True)
    assert original.read_bytes() == SINE.read_bytes()


@pytest.mark.parametrize(
    ("name", "target", "key"),
    [
        ("out.onnx", "onnx", None),
        ("out.keras", "keras", None),
        ("out.weights.h5", "keras", None),
        ("out.h5", "keras", None),
        ("out.safetensors", "torch", "lstm.weight_ih_l0"),
        ("out.pt", "torch", None),
        ("out.lstmconv.safetensors", "canonical", None),
    ],
)
def test_the_target_comes_from_the_destination_suffix(tmp_path: Path, name: str, target: str, key: str | None) -> None:
    out = tmp_path / name
    result = _run("convert", SINE, out)
    assert result.exit_code == 0, result.output
    assert f"({target}" in result.output and out.exists()
    if key is not None:
        from safetensors.numpy import load_file

        assert key in load_file(out)


def test_an_unknown_suffix_asks_for_to_and_names_the_suffixes(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.bin")
    assert result.exit_code == 2 and "--to" in result.output and ".onnx" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_suffix_of_another_target_names_both_fixes(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "out.onnx", "--to", "torch")
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "out.safetensors" in text and "--to onnx" in text, text
    assert list(tmp_path.iterdir()) == []


def test_errors_raised_to_python_callers_name_the_keyword(tmp_path: Path) -> None:
    import lstmconv

    out = tmp_path / "sine.onnx"
    out.write_bytes(b"keep")
    with pytest.raises(lstmconv.errors.OutputExistsError, match=r"force=True"):
        lstmconv.convert(SINE, out)
    with pytest.raises(lstmconv.LstmconvError, match=r"skip_unsupported=True"):
        lstmconv.convert(DATA / "keras2" / "char_lstm_sigmoid.h5", tmp_path / "c.safetensors")
    assert out.read_bytes() == b"keep"


# ---------------------------------------------------------------------------------------------------
# verify compares everything, or says it did not


def _lstm_only(tmp_path: Path) -> Path:
    """sine_lstm.h5's LSTM as a torch state dict, without its Dense layer."""
    from safetensors.numpy import load_file, save_file

    full = tmp_path / "full.safetensors"
    assert _run("convert", SINE, full, "--to", "torch").exit_code == 0
    only = tmp_path / "lstm_only.safetensors"
    save_file({k: v for k, v in load_file(full).items() if k.startswith("lstm.")}, only)
    return only


def test_verify_a_layer_in_one_file_only_is_not_evidence(tmp_path: Path) -> None:
    only = _lstm_only(tmp_path)
    result = _run("verify", SINE, only)
    assert result.exit_code == 1, result.output
    assert "not compared" in result.output and "same function" not in result.output.replace("different", "")
    common = _run("verify", SINE, only, "--common-only")
    assert common.exit_code == 0, common.output


def test_verify_reads_the_dense_layer_of_a_whole_model_onnx(tmp_path: Path) -> None:
    """lstmconv's whole-model ONNX holds Dense as MatMul + Add: read there, compared, and a changed bias found."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "sine.onnx"
    assert _run("convert", SINE, out).exit_code == 0
    same = _run("verify", SINE, out, "--json")
    assert same.exit_code == 0, same.output
    import json

    rows = {row["first"]: row for row in json.loads(same.stdout)["layers"]}
    assert rows["dense"]["compared"] and rows["dense"]["second"] == "dense"
    model = onnx.load(out)
    for k, initializer in enumerate(model.graph.initializer):
        if initializer.name == "dense.bias":
            changed = numpy_helper.to_array(initializer) + 0.5
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(changed, initializer.name))
    changed_file = tmp_path / "changed.onnx"
    onnx.save(model, changed_file)
    result = _run("verify", SINE, changed_file)
    assert result.exit_code == 1 and "NO" in result.output


def test_library_verify_and_inspect_are_the_cli_verbs(tmp_path: Path) -> None:
    import lstmconv

    out = tmp_path / "sine.onnx"
    lstmconv.convert(SINE, out)
    outcome = lstmconv.verify(SINE, out)
    assert outcome.same and all(r.compared for r in outcome.layers)
    assert not lstmconv.verify(SINE, _lstm_only(tmp_path)).same
    found = lstmconv.inspect(SINE)
    assert [layer.name for layer in found.layers] == ["lstm", "dense", "activation"]


def test_package_docstring_example_runs() -> None:
    import lstmconv

    loaded = lstmconv.load(SINE)
    state = lstmconv.to_torch_state_dict(loaded)
    assert state["lstm.weight_ih_l0"].shape == (48, 1)
    assert "to_torch_state_dict(loaded)[0]" not in (lstmconv.__doc__ or "")


# ---------------------------------------------------------------------------------------------------
# What the user sees: whole reports, JSON, --version, inspect's facts


def test_reports_are_not_cut_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "bidirectional.safetensors"
    result = _run("convert", DATA / "keras2" / "bidirectional_ave.h5", out)
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.startswith("│ bidirectional"))
    assert "SimpleRNN 4->5, bidirectional (ave), tanh" in row  # one row, not wrapped at 80 columns
    assert "nn.RNN(4, 5, batch_first=True, bidirectional=True) as bidirectional.*" in row


def test_convert_json_is_the_report_as_data(tmp_path: Path) -> None:
    import json

    result = _run("convert", SINE, tmp_path / "s.safetensors", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["target"] == "torch" and data["written_tensors"] == 6
    checked = [layer for layer in data["layers"] if layer["max_abs_error"] is not None]
    assert [layer["name"] for layer in checked] == ["lstm", "dense"]
    assert all(layer["max_abs_error"] <= layer["tolerance"] for layer in checked)


def test_inspect_json_left_out_and_refusals_are_objects() -> None:
    import json

    result = _run("inspect", DATA / "keras2" / "char_lstm_sigmoid.h5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    refusals = data["refusals"]["torch"]
    assert refusals and set(refusals[0]) == {"layer", "reason"} and refusals[0]["layer"] == "lstm"
    assert "onnx" not in data["refusals"]


def test_inspect_json_left_out_layer_is_an_object(tmp_path: Path) -> None:
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    full = tmp_path / "full.safetensors"
    assert _run("convert", SINE, full).exit_code == 0
    tensors = load_file(full)
    tensors["extra.running_mean"] = np.zeros(3, np.float32)
    with_extra = tmp_path / "extra.safetensors"
    save_file(tensors, with_extra)
    data = json.loads(_run("inspect", with_extra, "--json").stdout)
    assert {"layer": "extra.running_mean", "kind": None, "reason": "not an nn.LSTM/GRU/RNN/Linear parameter"} in data["left_out"]


def test_version() -> None:
    import lstmconv

    result = _run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"lstmconv {lstmconv.__version__}"


def test_inspect_shows_peepholes_and_clip(tmp_path: Path) -> None:
    import numpy as np
    import onnx

    from tests.onnx_helpers import one_node_model

    rng = np.random.default_rng(0)
    hidden, features = 3, 2
    inputs = {
        "W": rng.normal(size=(1, 4 * hidden, features)),
        "R": rng.normal(size=(1, 4 * hidden, hidden)),
        "B": rng.normal(size=(1, 8 * hidden)),
        "P": rng.normal(size=(1, 3 * hidden)),
    }
    model = one_node_model("LSTM", inputs, ["X"], {"hidden_size": hidden, "clip": 2.5})
    path = tmp_path / "peep.onnx"
    onnx.save(model, path)
    result = _run("inspect", path)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ lstm"))  # not the file's path
    assert "peepholes" in row and "clip 2.5" in row
    assert "torch refuses" in result.output


def test_a_stateful_layer_is_noted_in_the_report(tmp_path: Path) -> None:
    import numpy as np

    import lstmconv

    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(2, 12)), rng.normal(size=(3, 12)), rng.normal(size=(12,))]
    config = {"name": "lstm", "units": 3, "stateful": True, "return_sequences": True}
    loaded = lstmconv.load_keras_weights(weights, class_name="LSTM", config=config, keras_version="3.0")
    report = lstmconv.save_torch(loaded, tmp_path / "s.safetensors")
    assert any("stateful" in note for note in report.layers[0].notes)


# ---------------------------------------------------------------------------------------------------
# An unknown layer is never passed off as a known one


def _weights_only(path: Path, version: str | None, layers: dict[str, dict[str, tuple[int, ...]]]) -> Path:
    """A weights-only Keras .h5 (``save_weights``) with the given datasets per layer."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        if version is not None:
            handle.attrs["keras_version"] = version
            handle.attrs["backend"] = "tensorflow"
        handle.attrs["layer_names"] = [name.encode() for name in layers]
        for name, weights in layers.items():
            group = handle.create_group(name)
            group.attrs["weight_names"] = [key.encode() for key in weights]
            for key, shape in weights.items():
                group.create_dataset(key, data=rng.standard_normal(shape).astype(np.float32))
    return path


def test_a_custom_layer_is_left_out_not_passed_off_as_dense(tmp_path: Path) -> None:
    """textgenrnn's AttentionWeightedAverage: one weight ``attention_W`` (356, 1) in a Keras 2 file."""
    lstm = {"lstm/kernel:0": (4, 12), "lstm/recurrent_kernel:0": (3, 12), "lstm/bias:0": (12,)}
    path = _weights_only(tmp_path / "w.h5", "2.1.5", {"lstm": lstm, "attention": {"attention/attention_W:0": (3, 1)}})
    result = _run("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert [layer["name"] for layer in data["layers"]] == ["lstm"]
    assert [item["layer"] for item in data["left_out"]] == ["attention"]
    converted = _run("convert", path, tmp_path / "w.onnx")  # Keras 2.1.5's hard_sigmoid: exact in ONNX
    assert converted.exit_code == 0, converted.output
    assert "left out: attention" in converted.output and "MatMul" not in converted.output


@pytest.mark.parametrize(
    ("version", "names"),
    [("2.1.5", ("dense_1/kernel:0", "dense_1/bias:0")), (None, ("dense_1_W", "dense_1_b"))],
)
def test_a_weights_only_dense_is_still_read_by_its_names(tmp_path: Path, version: str | None, names: tuple[str, str]) -> None:
    lstm = {"lstm/kernel:0": (4, 12), "lstm/recurrent_kernel:0": (3, 12), "lstm/bias:0": (12,)}
    path = _weights_only(tmp_path / "d.h5", version, {"lstm": lstm, "dense_1": {names[0]: (3, 2), names[1]: (2,)}})
    import lstmconv

    found = lstmconv.inspect(path)
    assert [type(layer).__name__ for layer in found.layers] == ["RecurrentMeta", "DenseMeta"]


def test_whole_model_onnx_takes_any_time_length(tmp_path: Path) -> None:
    """sine_lstm.h5 was built for 5 steps; its ONNX model runs 20 steps as torch.nn does with the same weights."""
    onnxruntime = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    import numpy as np
    import onnx

    from lstmconv.torch_modules import load_torch_modules

    model_file, weights = tmp_path / "sine.onnx", tmp_path / "sine.safetensors"
    assert _run("convert", SINE, model_file).exit_code == 0 and _run("convert", SINE, weights).exit_code == 0
    dims = [d.dim_param or d.dim_value for d in onnx.load(model_file).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 1]
    x = np.random.default_rng(0).normal(size=(3, 20, 1)).astype(np.float32)
    y = onnxruntime.InferenceSession(str(model_file)).run(None, {"input": x})[0]
    modules = load_torch_modules(weights)
    with torch.no_grad():
        sequence, _ = modules["lstm"](torch.from_numpy(x))
        expected = modules["dense"](sequence[:, -1]).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_whole_model_onnx_ids_input_takes_any_length(tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "e.onnx"
    assert _run("convert", DATA / "keras2" / "embedding_lstm_dense.h5", out).exit_code == 0
    dims = [d.dim_param or d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time"]


# ---------------------------------------------------------------------------------------------------
# Refusals name the target being written and only ways out that exist for it


def test_keras3_hard_sigmoid_refusal_offers_the_legacy_h5_and_onnx(tmp_path: Path) -> None:
    """Keras 2's hard_sigmoid has no Keras 3 activation; a legacy .h5 (Keras 2 semantics) and ONNX express it."""
    source = DATA / "keras2" / "lstm_hard_sigmoid.h5"
    result = _run("convert", source, tmp_path / "m.weights.h5")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Keras 3 cannot compute" in text
    assert "legacy Keras .h5" in text and "--to onnx" in text and "--to torch" not in text
    for works in ("m.h5", "m.onnx"):
        assert _run("convert", source, tmp_path / works).exit_code == 0


def test_torch_refusal_offers_only_targets_that_compute_the_layer(tmp_path: Path) -> None:
    result = _run("convert", DATA / "keras2" / "gru_hard_sigmoid_reset_before.h5", tmp_path / "m.safetensors")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "torch.nn cannot compute" in text
    assert "--emit-module" in text and "--to onnx" in text and "legacy Keras .h5" in text
    assert "Keras 3 file" not in text  # Keras 3 has no Keras 2 hard_sigmoid either


def test_keras_target_does_not_blame_onnx_for_an_unconverted_layer(tmp_path: Path) -> None:
    from tests.conftest import corpus_file

    source = corpus_file("water-forecast/lstm_model.keras")  # holds a Lambda layer
    result = _run("convert", source, tmp_path / "m.keras")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Lambda" in text and "ONNX" not in text and "onnx" not in text.lower().replace(".onnx", "")


def test_mask_zero_is_refused_only_where_it_cannot_be_expressed(tmp_path: Path) -> None:
    """Keras writes Embedding(mask_zero=True) as it is; a whole-model ONNX graph cannot skip masked steps."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [keras.Input((7,), dtype="int32"), keras.layers.Embedding(20, 4, mask_zero=True), keras.layers.LSTM(3)]
    )
    source = tmp_path / "masked.keras"
    model.save(source)
    assert _run("convert", source, tmp_path / "back.keras").exit_code == 0
    refused = _run("convert", source, tmp_path / "m.onnx")
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "Embedding mask_zero=True" in text and "--per-layer" in text  # not the path
    assert _run("convert", source, tmp_path / "m.onnx", "--per-layer").exit_code == 0


def test_a_constant_sequence_lens_is_refused_not_ignored(tmp_path: Path) -> None:
    """Fixed lengths are part of the node's function; converting without them would be silently wrong."""
    import numpy as np
    import onnx

    import lstmconv
    from tests.onnx_helpers import one_node_model

    rng = np.random.default_rng(0)
    inputs = {"W": rng.normal(size=(1, 4, 2)), "R": rng.normal(size=(1, 4, 4)), "sequence_lens": None}
    model = one_node_model("RNN", inputs, ["X"], {"hidden_size": 4})
    lengths = onnx.numpy_helper.from_array(np.array([2, 1], np.int32), "sequence_lens")
    model.graph.initializer.append(lengths)
    node = model.graph.node[0]
    node.input[:] = ["X", "W", "R", "", "sequence_lens"]
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    with pytest.raises(lstmconv.errors.UnsupportedFeatureError, match="sequence_lens is a constant"):
        lstmconv.inspect(path)


def test_runtime_inputs_survive_the_canonical_file(tmp_path: Path) -> None:
    import numpy as np
    import onnx

    import lstmconv
    from tests.onnx_helpers import one_node_model

    rng = np.random.default_rng(0)
    inputs = {"W": rng.normal(size=(1, 4, 2)), "R": rng.normal(size=(1, 4, 4))}
    path = tmp_path / "m.onnx"
    onnx.save(one_node_model("RNN", inputs, ["X", "initial_h"], {"hidden_size": 4}), path)
    canonical = tmp_path / "m.lstmconv.safetensors"
    lstmconv.convert(path, canonical)
    assert lstmconv.inspect(canonical).layers[0].runtime_inputs == ("initial_h",)


# ---------------------------------------------------------------------------------------------------
# Small things


@pytest.mark.parametrize("emit", [False, True])
def test_written_files_follow_the_umask(tmp_path: Path, emit: bool) -> None:
    source = DATA / "keras2" / "lstm_hard_sigmoid.h5"
    old = os.umask(0o027)
    try:
        args = ["--emit-module", tmp_path / "m.py"] if emit else []
        out = tmp_path / ("m.safetensors" if emit else "m.onnx")
        assert _run("convert", source, out, *args).exit_code == 0
    finally:
        os.umask(old)
    for written in tmp_path.iterdir():
        assert written.stat().st_mode & 0o777 == 0o640, written


def test_emit_module_with_nothing_to_emit_says_so(tmp_path: Path) -> None:
    result = _run("convert", SINE, tmp_path / "s.safetensors", "--emit-module", tmp_path / "m.py")
    assert result.exit_code == 0 and "no module to write" in " ".join(result.output.split())
    assert not (tmp_path / "m.py").exists()


def test_the_needs_pytorch_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import lstmconv

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if it were not installed
    module = tmp_path / "m.py"
    with pytest.raises(lstmconv.LstmconvError) as caught:
        lstmconv.convert(DATA / "keras2" / "lstm_hard_sigmoid.h5", tmp_path / "m.safetensors", emit_module=module)
    assert caught.value.file == str(module) and "PyTorch" in str(caught.value)
    with pytest.raises(lstmconv.LstmconvError) as caught:
        lstmconv.convert(SINE, tmp_path / "m.pt")
    assert caught.value.file == str(tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_verify_takes_config_and_from(tmp_path: Path) -> None:
    from tests.conftest import corpus_file

    weights = corpus_file("chen-sentiment/bidirectional_lstm_softmax_weights.h5")
    config = corpus_file("chen-sentiment/bidirectional_lstm_softmax_architecture.json")
    out = tmp_path / "c.onnx"
    assert _run("convert", weights, out, "--config", config).exit_code == 0
    result = _run("verify", weights, out, "--config", config, "--from", "keras")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors", ".lstmconv.safetensors", ".h5", ".weights.h5"])
def test_verify_compares_embedding_tables(tmp_path: Path, suffix: str) -> None:
    source = DATA / "keras2" / "embedding_lstm_dense.h5"
    out = tmp_path / f"e{suffix}"
    assert _run("convert", source, out).exit_code == 0
    import lstmconv

    outcome = lstmconv.verify(source, out)
    assert outcome.same and any(r.left == "embed" and r.right == "embed" and r.compared for r in outcome.layers)


def test_verify_finds_a_changed_embedding_table(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    import lstmconv

    source = DATA / "keras2" / "embedding_lstm_dense.h5"
    out, changed = tmp_path / "e.safetensors", tmp_path / "changed.safetensors"
    lstmconv.convert(source, out)
    with safe_open(str(out), "np") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    tensors["embed.weight"] = tensors["embed.weight"] + 0.25
    save_file(tensors, changed, metadata=metadata)
    assert not lstmconv.verify(source, changed).same


def test_an_unknown_source_or_target_name_fails_naming_the_choices(tmp_path: Path) -> None:
    import lstmconv
    from lstmconv.registry import SOURCE_NAMES, TARGET_NAMES

    with pytest.raises(lstmconv.LstmconvError, match=", ".join(SOURCE_NAMES)):
        lstmconv.convert(SINE, tmp_path / "x.onnx", source_format="tensorflow")
    with pytest.raises(lstmconv.LstmconvError, match=", ".join(TARGET_NAMES)):
        lstmconv.convert(SINE, tmp_path / "x.onnx", to="tensorflow")
    assert list(tmp_path.iterdir()) == []
