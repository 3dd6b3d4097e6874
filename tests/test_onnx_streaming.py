"""ONNX sources read layer by layer: the skeleton parse leaves the large tensors in the file, a node's weights
are read when its layer is built, and the streamed conversions give the same files and reports as the
in-memory paths (which the framework tests in test_onnx_sources.py and test_onnx_target.py check)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

import lstmconv
from lstmconv.pipeline.convert import save_onnx, save_torch
from lstmconv.errors import InputFormatError
from lstmconv.sources import onnx_graph as onnx_files
from lstmconv.io import onnx_skeleton
from lstmconv.io.onnx_skeleton import read_skeleton
from lstmconv.pipeline.load import load_file
from lstmconv.sources.onnx import onnx_layers
from lstmconv.pipeline.convert import convert
from tests.conftest import DATA, corpus_file
from tests.test_streaming import _tensors

SOURCES = [
    *(f"tf2onnx/{path.name}" for path in sorted((DATA / "tf2onnx").glob("*.onnx"))),
    "corpus:pytorch-tvm-lstm/lstm.onnx",
    "corpus:silero-vad/silero_vad_16k_op15.onnx",  # LSTM inside If branches
    "corpus:water-forecast/lstm_model.onnx",
]


def _source(name: str) -> Path:
    return corpus_file(name.removeprefix("corpus:")) if name.startswith("corpus:") else DATA / name


def _tensors_of(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors_of(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors_of(sub)


@pytest.fixture(params=[0, None], ids=["every tensor in the file", "large tensors in the file"])
def inline_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The fixtures' weights are small: with 0, every tensor is left in the file and read when used."""
    if request.param is not None:
        monkeypatch.setattr(onnx_skeleton, "INLINE_BYTES", request.param)
    return onnx_skeleton.INLINE_BYTES


@pytest.mark.parametrize("name", SOURCES)
def test_skeleton_with_its_bytes_put_back_is_the_model_onnx_loads(name: str, inline_bytes: int) -> None:
    path = _source(name)
    skeleton = read_skeleton(path)
    data = path.read_bytes()
    left_out = 0
    for tensor in _tensors_of(skeleton.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        assert info["location"] == path.name
        offset, length = int(info["offset"]), int(info["length"])
        assert length >= inline_bytes
        tensor.raw_data = data[offset : offset + length]
        del tensor.external_data[:]
        tensor.ClearField("data_location")
        left_out += 1
    if inline_bytes == 0:
        assert left_out > 0  # the check above is not vacuous
    assert skeleton == onnx.load(str(path))


@pytest.mark.parametrize("name", SOURCES)
def test_streamed_torch_file_and_report_equal_the_in_memory_path(name: str, inline_bytes: int, tmp_path: Path) -> None:
    source = _source(name)
    streamed_path, whole_path = tmp_path / "streamed.safetensors", tmp_path / "whole.safetensors"
    try:
        whole = save_torch(load_file(source), whole_path)
    except lstmconv.LstmconvError as refused:  # e.g. hard_sigmoid gates, which torch.nn cannot compute
        with pytest.raises(type(refused)) as caught:
            convert(source, streamed_path, to="torch")
        assert str(caught.value) == str(refused)
        assert not streamed_path.exists()
        return
    streamed = convert(source, streamed_path, to="torch")
    assert _tensors(streamed_path) == _tensors(whole_path)
    assert streamed.layers == whole.layers
    assert streamed.skipped == whole.skipped


@pytest.mark.parametrize("name", SOURCES)
def test_streamed_onnx_file_and_report_equal_the_in_memory_path(name: str, inline_bytes: int, tmp_path: Path) -> None:
    source = _source(name)
    streamed_path, whole_path = tmp_path / "streamed.onnx", tmp_path / "whole.onnx"
    whole = save_onnx(load_file(source), whole_path)
    streamed = convert(source, streamed_path, to="onnx")
    assert streamed_path.read_bytes() == whole_path.read_bytes()
    assert streamed.layers == whole.layers


def test_weights_are_read_when_their_layer_is_built_and_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_skeleton, "INLINE_BYTES", 0)
    reads: list[int] = []
    real = onnx_files._Reader._read

    def counting(self: onnx_files._Reader, target: Path, tensor: str, array: np.ndarray, offset: int) -> np.ndarray:
        reads.append(array.nbytes)
        return real(self, target, tensor, array, offset)

    monkeypatch.setattr(onnx_files._Reader, "_read", counting)
    onnx_file = onnx_files.read_onnx(DATA / "tf2onnx" / "lstm_stacked.onnx")
    assert len(onnx_file.nodes) == 2
    parsing = list(reads)  # small constants the reader folds (shapes, axes); no weights
    layers = onnx_layers(onnx_file)
    first, _ = next(layers)
    first_reads = reads[len(parsing) :]
    w_input_bytes = 4 * first.hidden_size * first.input_size * np.dtype(first.dtype).itemsize  # ONNX W: 4 gates
    assert w_input_bytes in first_reads
    assert max(parsing, default=0) < w_input_bytes
    second, _ = next(layers)
    second_reads = reads[len(parsing) + len(first_reads) :]
    assert 4 * second.hidden_size * second.input_size * np.dtype(second.dtype).itemsize in second_reads


def test_a_cut_off_onnx_file_is_refused_naming_it(tmp_path: Path) -> None:
    data = (DATA / "tf2onnx" / "lstm_stacked.onnx").read_bytes()
    for size in (len(data) // 3, len(data) - 100, len(data) - 1):
        path = tmp_path / f"cut{size}.onnx"
        path.write_bytes(data[:size])
        with pytest.raises(InputFormatError) as caught:
            lstmconv.convert(path, tmp_path / "out.safetensors", force=True)
        assert str(path) in str(caught.value)
        assert not (tmp_path / "out.safetensors").exists()


def test_deeply_nested_graphs_are_refused_not_a_crash(tmp_path: Path) -> None:
    from lstmconv.io.protobuf_wire import key, varint

    def field(number: int, body: bytes) -> bytes:
        return key(number) + varint(len(body)) + body

    graph = b""
    for _ in range(100):  # GraphProto.node -> NodeProto.attribute -> AttributeProto.g -> GraphProto ...
        graph = field(1, field(5, field(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(field(7, graph))
    with pytest.raises(InputFormatError, match="nested") as caught:
        read_skeleton(path)
    assert str(path) in str(caught.value)


def test_a_symlinked_onnx_file_reads_its_weights_from_the_real_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_skeleton, "INLINE_BYTES", 0)  # every tensor read from the file
    real = tmp_path / "models" / "real.onnx"
    real.parent.mkdir()
    real.write_bytes((DATA / "tf2onnx" / "lstm_stacked.onnx").read_bytes())
    link = tmp_path / "link.onnx"
    link.symlink_to(real)
    via_link = convert(link, tmp_path / "a.safetensors", to="torch")
    direct = convert(real, tmp_path / "b.safetensors", to="torch")
    assert via_link.layers == direct.layers
    assert _tensors(tmp_path / "a.safetensors")[0] == _tensors(tmp_path / "b.safetensors")[0]
