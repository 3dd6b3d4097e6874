"""``.pt``/``.pth`` state dicts read one module at a time: a file in torch's zip format is unpickled onto the
meta device and each tensor read from its zip record when its module is built; a legacy pickle is loaded whole.
Every tensor must equal what ``torch.load`` itself reads, and the conversions what loading the file whole gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconv
from lstmconv.errors import InputFormatError
from lstmconv.io.torch_files import open_pt_state
from tests.test_streaming import _streams_like_the_in_memory_paths, assert_read_one_module_at_a_time, torch_modules

torch = pytest.importorskip("torch")


def _pt_sources(folder: Path) -> list[Path]:
    """State dicts as torch saves them: zip format and legacy pickle, a training checkpoint, float64 and bfloat16,
    tensors sharing one storage and a tensor that is a transposed (non-contiguous) view."""
    paths = []
    for name, module in torch_modules().items():
        for legacy in (False, True):
            path = folder / f"{name}{'_legacy' if legacy else ''}.pt"
            torch.save(module.state_dict(), path, _use_new_zipfile_serialization=not legacy)
            paths.append(path)
    lstm = torch.nn.LSTM(4, 3, batch_first=True)
    state = lstm.state_dict()
    torch.save({"epoch": 7, "model_state_dict": state, "optimizer": {"lr": 0.1}}, folder / "checkpoint.pth")
    torch.save({k: v.double() for k, v in state.items()}, folder / "float64.pt")
    torch.save({k: v.bfloat16() for k, v in state.items()}, folder / "bfloat16.pt")
    # weight_hh_l0 saved as the transpose of a (hidden, 4*hidden) tensor; both biases one slice each of one tensor
    both_biases = torch.cat([state["bias_ih_l0"], state["bias_hh_l0"]])
    odd = {
        "rnn.weight_ih_l0": state["weight_ih_l0"],
        "rnn.weight_hh_l0": state["weight_hh_l0"].t().contiguous().t(),
        "rnn.bias_ih_l0": both_biases[:12],
        "rnn.bias_hh_l0": both_biases[12:],
    }
    assert not odd["rnn.weight_hh_l0"].is_contiguous()
    assert odd["rnn.bias_ih_l0"].untyped_storage().data_ptr() == odd["rnn.bias_hh_l0"].untyped_storage().data_ptr()
    torch.save(odd, folder / "shared_and_strided.pt")
    return [*paths, folder / "checkpoint.pth", folder / "float64.pt", folder / "bfloat16.pt", folder / "shared_and_strided.pt"]


def test_tensors_read_from_a_pt_file_equal_what_torch_load_reads(tmp_path: Path) -> None:
    compared = 0
    for source in _pt_sources(tmp_path):
        expected = torch.load(source, weights_only=True)
        expected = expected.get("model_state_dict", expected)
        with open_pt_state(source) as (stand_ins, notes, load):
            assert set(stand_ins) == {k for k, v in expected.items() if isinstance(v, torch.Tensor)}, source.name
            for key, tensor in expected.items():
                for _ in range(2):  # a second read of a tensor whose pages were dropped reads the file again
                    back = load(key)
                    truth = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
                    assert back.dtype == truth.dtype and back.shape == truth.shape, (source.name, key)
                    assert np.array_equal(back, truth), (source.name, key)
                    assert stand_ins[key].shape == truth.shape and stand_ins[key].dtype == truth.dtype
                compared += 1
        if source.name == "checkpoint.pth":
            assert notes == ["weights taken from the checkpoint's 'model_state_dict' entry"]
        if source.name == "bfloat16.pt":
            assert sorted(notes) == sorted(f"{key}: bfloat16 widened to float32 (exact)" for key in expected)
    assert compared > 60


def test_pt_sources_stream_like_the_in_memory_paths(tmp_path: Path) -> None:
    sources = _pt_sources(tmp_path)
    assert sum(_streams_like_the_in_memory_paths(source, tmp_path) for source in sources) >= 20


def test_a_pt_source_is_read_one_module_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = next(p for p in _pt_sources(tmp_path) if p.name == "gru_and_linear.pt")
    assert_read_one_module_at_a_time(source, "open_pt_state", monkeypatch)


def test_a_tensor_numpy_cannot_hold_is_refused_by_name(tmp_path: Path) -> None:
    lstm = torch.nn.LSTM(2, 3)
    state = {f"rnn.{k}": v for k, v in lstm.state_dict().items()}
    state["rnn.weight_hh_l0"] = state["rnn.weight_hh_l0"].to(torch.float8_e4m3fn)
    torch.save(state, tmp_path / "fp8.pt")
    with pytest.raises(InputFormatError, match=r"float8_e4m3fn has no NumPy equivalent") as caught:
        lstmconv.convert(tmp_path / "fp8.pt", tmp_path / "out.safetensors")
    assert "rnn.weight_hh_l0" in str(caught.value)
    assert not (tmp_path / "out.safetensors").exists()


def test_a_big_endian_file_is_read_right_when_tensors_share_a_storage(tmp_path: Path) -> None:
    """A file saved on a big-endian machine records it; its values are read swapped into native order."""
    import zipfile

    torch.manual_seed(1)
    storage = torch.randn(2 * 8192)  # 64 KiB: whole pages inside, whichever tensor drops them
    state = {"rnn.weight_ih_l0": storage[:8192].view(2048, 4), "rnn.weight_hh_l0": storage[8192:].view(2048, 4)}
    little = tmp_path / "little.pt"
    torch.save(state, little)
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as source, zipfile.ZipFile(big, "w", compression=zipfile.ZIP_STORED) as swapped:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            swapped.writestr(info, data)
    expected = torch.load(big, weights_only=True)  # torch's own reading, not mapped
    assert torch.equal(expected["rnn.weight_ih_l0"], state["rnn.weight_ih_l0"])
    with open_pt_state(big) as (_stand_ins, _notes, load):
        for key in state:
            assert np.array_equal(load(key), state[key].numpy()), key


@pytest.mark.parametrize("shortened", ["data/0", "data/1"], ids=["first record", "last record"])
def test_a_record_shorter_than_its_tensor_is_refused_not_read_past(shortened: str, tmp_path: Path) -> None:
    """Each storage must fill its record exactly, as torch's own loader demands (its mmap loader does not: a first
    record cut short then yields the bytes of the records after it). Refused before any tensor is read."""
    import zipfile

    lstm = torch.nn.LSTM(8, 16)
    good = tmp_path / "good.pt"
    torch.save({f"rnn.{k}": v for k, v in lstm.state_dict().items()}, good)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_STORED) as cut:
        names = [info.filename for info in source.infolist()]
        assert any(name.endswith(shortened) for name in names)
        for info in source.infolist():
            data = source.read(info.filename)
            cut.writestr(info, data[: len(data) // 3] if info.filename.endswith(shortened) else data)
    with pytest.raises(InputFormatError, match="does not match its record|cannot load as a torch file") as caught:
        lstmconv.convert(bad, tmp_path / "out.safetensors")
    assert str(bad) in str(caught.value)
    assert not (tmp_path / "out.safetensors").exists()


def test_verify_reads_a_pt_file_one_module_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmconv.pipeline.verify as verify_files

    source = next(p for p in _pt_sources(tmp_path) if p.name == "gru_and_linear.pt")
    lstmconv.convert(source, tmp_path / "m.onnx", to="onnx")

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("a whole model was loaded")

    monkeypatch.setattr("lstmconv.pipeline.load.collect", whole)
    results = verify_files.compare_files(source, tmp_path / "m.onnx")
    assert len(results) == 2 and all(r.same for r in results)


# ---------------------------------------------------------------------------------------------------
# Read without torch and without running anything: archives re-zipped, whole-module pickles


def test_a_rezipped_archive_reads_as_torch_loads_it(tmp_path: Path) -> None:
    """Records not on torch's 64-byte boundaries (any zip tool): torch finds them by name, so does lstmconv."""
    import zipfile

    lstm = torch.nn.LSTM(3, 4)
    original, rezipped = tmp_path / "original.pt", tmp_path / "rezipped.pt"
    torch.save({f"rnn.{k}": v for k, v in lstm.state_dict().items()}, original)
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    expected = torch.load(rezipped, weights_only=True)
    with open_pt_state(rezipped) as (_stand_ins, _notes, load):
        for key, tensor in expected.items():
            assert np.array_equal(load(key), tensor.numpy()), key


class _Net(torch.nn.Module):  # a user's own class, pickled by reference, never imported by lstmconv
    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.RNN(3, 5, num_layers=2, nonlinearity="relu", batch_first=True)
        self.head = torch.nn.Linear(5, 2)
        self.register_buffer("scratch", torch.zeros(7), persistent=False)


def test_a_whole_module_pickle_converts_with_the_modules_own_facts(tmp_path: Path) -> None:
    """torch.save(model): read without running it; nn.RNN's nonlinearity comes from the pickled module."""
    torch.manual_seed(0)
    model = _Net()
    source = tmp_path / "model.pt"
    torch.save(model, source)
    out = tmp_path / "model.safetensors"
    report = lstmconv.convert(source, out)
    assert [layer.name for layer in report.layers] == ["rnn", "head"]
    from lstmconv.torch_modules import load_torch_modules

    modules = load_torch_modules(out)
    assert modules["rnn"].nonlinearity == "relu"
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        want, _ = model.rnn(x)
        got, _ = modules["rnn"](x)
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", ["gru", "lstm", "rnn"])
def test_corpus_module_pickles_convert_exactly(name: str, tmp_path: Path) -> None:
    """The corpus's whole-module pickles (their class is the authors' __main__ code): converted without running
    them, torch.nn with the written weights reproduces the recorded outputs."""
    from lstmconv.torch_modules import load_torch_modules
    from tests.conftest import assert_close, corpus_file

    source = corpus_file(f"audio-rnn-module-pickles/{name}.pt")
    expected = np.load(str(source) + ".expected.npz")
    out = tmp_path / "m.safetensors"
    lstmconv.convert(source, out)
    module = load_torch_modules(out)[name]
    with torch.no_grad():
        y, state = module(torch.from_numpy(expected[f"{name}/x"]))
    assert_close(y.numpy(), expected[f"{name}/y"], f"{name} y")
    h = state[0] if isinstance(state, tuple) else state
    assert_close(h.numpy().transpose(1, 0, 2), expected[f"{name}/h"], f"{name} h")  # recorded (batch, levels, hidden)


def test_a_pickle_of_something_else_is_refused_naming_it(tmp_path: Path) -> None:
    from tests.conftest import corpus_file

    source = corpus_file("sarcasm-keras-pickled-pt/lstm/model.pt")
    with pytest.raises(lstmconv.LstmconvError, match="keras") as caught:
        lstmconv.convert(source, tmp_path / "out.safetensors")
    assert "not a torch module" in str(caught.value)
    assert not (tmp_path / "out.safetensors").exists()
