"""ONNX external data (``--external-data``): the weights in ``<model>.data`` beside the model.

onnxruntime and ``onnx.load`` run and read the written pair; whole models reproduce tf_keras's ``predict``
and torch models torch.nn's forward pass. Large tensors start on 64 KiB boundaries, models past protobuf's
2 GiB cap convert this way, and a failed or refused conversion leaves neither file.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import lstmconv
from lstmconv.errors import OutputExistsError, RefusedConversionError, UnsupportedFeatureError, VerificationError
from tests.conftest import DATA, assert_close

onnxruntime = pytest.importorskip("onnxruntime")

FIXTURES = DATA / "keras2"
WHOLE_MODELS = sorted(
    p.name[: -len(".h5")] for p in FIXTURES.glob("*.h5") if not p.name.startswith(("cudnn", "weights_only"))
)


def _session(path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """onnxruntime on ``path`` started from another folder: the data file is found beside the model."""
    monkeypatch.chdir(path.anchor)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _initializers(path: Path) -> list[onnx.TensorProto]:
    return list(onnx.load(str(path), load_external_data=False).graph.initializer)


def _external(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


_SMALL = 64  # bytes: the fixtures' weights are under the 1 KiB that stay in the graph


@pytest.fixture
def weights_external(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every tensor of more than 64 bytes to the data file: the fixtures' weights, not the axes, split
    sizes and shapes (shape inference cannot read those from external data, so they always stay inline)."""
    import lstmconv.targets.onnx_graph as onnx_target

    monkeypatch.setattr(onnx_target, "OnnxPlan", functools.partial(onnx_target.OnnxPlan, inline_bytes=_SMALL))


@pytest.mark.parametrize("case", WHOLE_MODELS)
def test_whole_models_with_external_data_match_tf_keras_predict(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_external: None
) -> None:
    out = tmp_path / f"{case}.onnx"
    lstmconv.convert(FIXTURES / f"{case}.h5", out, to="onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{case}.onnx", f"{case}.onnx.data"]
    external = [t for t in _initializers(out) if t.data_location == onnx.TensorProto.EXTERNAL]
    inline = [t for t in _initializers(out) if t.data_location != onnx.TensorProto.EXTERNAL]
    assert external and not any(t.raw_data for t in external)
    assert all(len(t.raw_data) <= _SMALL and not t.external_data for t in inline)
    assert {_external(t)["location"] for t in external} == {f"{case}.onnx.data"}
    onnx.checker.check_model(str(out), full_check=True)  # a path: the checker reads the external data too
    expected = np.load(FIXTURES / f"{case}.outputs.npz")
    session = _session(out, monkeypatch)
    feeds = {item.name: expected[f"__model__/x{k}"] for k, item in enumerate(session.get_inputs())}
    assert_close(session.run(None, feeds)[0], expected["__model__/y"], f"{case} whole model, external data")


def _torch_model(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A bidirectional LSTM (5.5 and 11 MiB matrices), saved as a torch state dict."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(7)
    module = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(300, 600, batch_first=True, bidirectional=True)})
    torch.save(module.state_dict(), tmp_path / "big.pt")
    return torch, module["rnn"], tmp_path / "big.pt"


def test_large_tensors_start_on_64_kib_boundaries_and_run_as_torch_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch, lstm, source = _torch_model(tmp_path)
    out, inline = tmp_path / "out" / "m.onnx", tmp_path / "inline.onnx"
    out.parent.mkdir()
    lstmconv.convert(source, out, to="onnx", external_data=True)
    lstmconv.convert(source, inline, to="onnx")
    data = out.with_name("m.onnx.data")
    placed = [(t.name, int(_external(t)["offset"]), int(_external(t)["length"])) for t in _initializers(out) if t.external_data]
    assert [name for name, _, _ in placed] == ["rnn.W", "rnn.R", "rnn.B"]
    assert all(offset % 65536 == 0 for _, offset, length in placed if length > 1 << 20)
    assert data.stat().st_size == max(offset + length for _, offset, length in placed)
    assert out.stat().st_size < 2048  # the model itself holds no weights
    # the same tensors as the single-file model, byte for byte
    with_data = {t.name: onnx.numpy_helper.to_array(t, base_dir=str(out.parent)) for t in onnx.load(str(out)).graph.initializer}
    single = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(inline)).graph.initializer}
    assert with_data.keys() == single.keys()
    for name, array in single.items():
        assert with_data[name].dtype == array.dtype and with_data[name].tobytes() == array.tobytes(), name
    x = torch.randn(3, 5, 300)
    with torch.no_grad():
        y, (h, c) = lstm(x)
    session = _session(out, monkeypatch)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"rnn.x": x.numpy()})))
    np.testing.assert_allclose(got["rnn.y"], y.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["rnn.h_n"], h.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["rnn.c_n"], c.numpy(), rtol=0, atol=1e-5)


def test_lstmconv_reads_its_external_data_back(tmp_path: Path) -> None:
    _torch, _lstm, source = _torch_model(tmp_path)
    lstmconv.convert(source, tmp_path / "m.onnx", to="onnx", external_data=True)
    lstmconv.convert(source, tmp_path / "inline.onnx", to="onnx")
    from_external = lstmconv.convert(tmp_path / "m.onnx", tmp_path / "a.safetensors", to="torch")
    from_inline = lstmconv.convert(tmp_path / "inline.onnx", tmp_path / "b.safetensors", to="torch")
    # the same rows; the check's error differs in its last bits (the arrays sit at other alignments)
    assert [replace(r, max_abs_error=0.0) for r in from_external.layers] == [
        replace(r, max_abs_error=0.0) for r in from_inline.layers
    ]
    assert all(r.max_abs_error < r.tolerance for r in from_external.layers)
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_model_past_the_protobuf_cap_converts_with_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.io.onnx_stream as onnx_stream

    _torch, _lstm, source = _torch_model(tmp_path)
    monkeypatch.setattr(onnx_stream, "PROTOBUF_LIMIT", 2_000)
    out = tmp_path / "big.onnx"
    with pytest.raises(UnsupportedFeatureError, match="2 GiB") as caught:
        lstmconv.convert(source, out, to="onnx")
    assert caught.value.file == str(out)  # the destination, not the temporary file
    assert "--external-data" in (caught.value.hint or "") and "big.onnx.data" in (caught.value.hint or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pt"]
    lstmconv.convert(source, out, to="onnx", external_data=True)
    assert out.stat().st_size < 2_000


def test_a_refused_conversion_leaves_neither_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.ModuleDict({"gru": torch.nn.GRU(4, 6)}).double()  # float64: refused for ONNX
    torch.save(module.state_dict(), tmp_path / "double.pt")
    with pytest.raises(RefusedConversionError):
        lstmconv.convert(tmp_path / "double.pt", tmp_path / "m.onnx", to="onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["double.pt"]


@pytest.mark.parametrize(
    "fault, message",
    [
        ("graph fields", "does not hold the model meant"),
        ("data size", "external data file does not hold the bytes written"),
    ],
)
def test_a_failed_check_leaves_neither_file(fault: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.io.onnx_stream as onnx_stream
    import lstmconv.targets.onnx as onnx_target

    _torch, _lstm, source = _torch_model(tmp_path)
    if fault == "graph fields":
        monkeypatch.setattr(onnx_target, "count_graph_fields", lambda path: 0)
    else:  # as if the data file had lost its last byte
        size = onnx_stream.OnnxStream.data_size
        monkeypatch.setattr(onnx_stream.OnnxStream, "data_size", property(lambda stream: size.fget(stream) + 1))
    with pytest.raises(VerificationError, match=message):
        lstmconv.convert(source, tmp_path / "m.onnx", to="onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pt"]


def test_an_existing_data_file_is_kept_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    _torch, _lstm, source = _torch_model(tmp_path)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(b"someone else's")
    with pytest.raises(OutputExistsError) as caught:
        lstmconv.convert(source, tmp_path / "m.onnx", to="onnx", external_data=True)
    assert caught.value.file == str(data) and "--force" in (caught.value.hint or "")
    assert data.read_bytes() == b"someone else's" and not (tmp_path / "m.onnx").exists()
    lstmconv.convert(source, tmp_path / "m.onnx", to="onnx", external_data=True, force=True)
    assert data.stat().st_size > 16 << 20


def test_external_data_is_refused_for_other_targets(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFeatureError, match="--external-data applies to --to onnx only"):
        lstmconv.convert(FIXTURES / "stacked_lstm.h5", tmp_path / "m.safetensors", to="torch", external_data=True)
    assert list(tmp_path.iterdir()) == []


def test_the_data_file_is_in_place_before_the_model_and_removed_if_the_model_cannot_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmconv.io.atomic import write_atomically

    model, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"

    def write(path: Path, data_path: Path) -> None:
        path.write_bytes(b"model")
        data_path.write_bytes(b"data")

    from lstmconv.io import atomic as writing

    renamed: list[str] = []
    real_place = writing._place

    def recording_place(source: Path, target: Path, *, replace: bool) -> None:
        renamed.append(Path(target).name)
        real_place(source, target, replace=replace)

    monkeypatch.setattr(writing, "_place", recording_place)
    write_atomically(model, write, lambda *paths: None, companions=(data,))
    assert renamed == ["m.onnx.data", "m.onnx"]
    assert model.read_bytes() == b"model" and data.read_bytes() == b"data"

    def place_fails_for_the_model(source: Path, target: Path, *, replace: bool) -> None:
        if Path(target) == model:
            raise OSError("disk gone")
        real_place(source, target, replace=replace)

    model.unlink()
    data.unlink()
    monkeypatch.setattr(writing, "_place", place_fails_for_the_model)
    with pytest.raises(OSError, match="disk gone"):
        write_atomically(model, write, lambda *paths: None, companions=(data,))
    assert list(tmp_path.iterdir()) == []


def test_a_loaded_model_is_saved_with_external_data_as_a_file_is_converted(tmp_path: Path) -> None:
    """The library path (``load`` then ``save_onnx``) writes the same pair of files as ``convert``."""
    from lstmconv.pipeline.convert import save_onnx

    _torch, _lstm, source = _torch_model(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_onnx(lstmconv.load(source), tmp_path / "a" / "m.onnx", external_data=True)
    lstmconv.convert(source, tmp_path / "b" / "m.onnx", to="onnx", external_data=True)
    for name in ("m.onnx", "m.onnx.data"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
