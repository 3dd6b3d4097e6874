"""The torch target: each layer as torch.nn parameters (``nn.LSTM``/``GRU``/``RNN``, ``nn.Linear``,
``nn.Embedding``) under ``<layer>.<parameter>`` keys, in a ``.safetensors`` (written layer by layer) or a
``.pt``/``.pth`` (``torch.save``, written whole at the end). The header's metadata describes every layer, so the
modules can be rebuilt from the file alone.

With ``--emit-module``, layers torch.nn cannot compute are written in torch's parameter layout too, and a small
PyTorch module file computing them is written beside (:mod:`lstmconv.adapters.torch_emit`), checked by
running it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstmconv.adapters.torch import (
    layer_from_canonical,
    torch_layout_state,
    torch_module_spec,
    torch_refusals,
)
from lstmconv.adapters.torch_emit import (
    EmittedLayer,
    can_emit,
    emitted_function,
    emitted_layer,
    module_source,
)
from lstmconv.errors import UnsupportedFeatureError, VerificationError
from lstmconv.io.torch_files import METADATA_KEY, read_torch_file, write_torch_file
from lstmconv.protocols import LayerSource, Options, Planned, Refusal, TargetBase
from lstmconv.reference.common import LayerOutput, LayerStates, ReferenceFn
from lstmconv.reference.torch_function import torch_layer_function, usage_notes
from lstmconv.schema import SCHEMA_VERSION, DenseMeta, Layer, RecurrentLayer, RecurrentMeta
from lstmconv.targets.safetensors_output import add_tensors, check_safetensors, open_safetensors

__all__ = ["TARGET"]

_RULES = "torch"


class TorchTarget(TargetBase):
    def rule_sets(self) -> dict[str, str]:
        return {_RULES: "--to torch (a .safetensors or .pt file)"}

    def refusals(self, layer: Layer, rule_set: str) -> list[str]:
        return torch_refusals(layer) if isinstance(layer, RecurrentLayer) else []

    def way_out(self, layer: Layer) -> str | None:
        """``--emit-module``, for a layer torch.nn cannot compute that the emitted module does."""
        if isinstance(layer, RecurrentLayer) and can_emit(layer):
            return "--emit-module layers.py (emit_module='layers.py') for a small PyTorch module computing it"
        return None


    def companions(self, destination: Path, options: Options) -> dict[Path, tuple[tuple[str, ...], str]]:
        return {options.emit_module: ((".py",), "the --emit-module file")} if options.emit_module is not None else {}

    preload = ("safetensors",)

    def writer(self, destination: Path, layers: LayerSource, options: Options) -> TorchWriter:
        return TorchWriter(destination, layers, options)


TARGET = TorchTarget()


class _Tensors(dict[str, np.ndarray]):
    """A ``.pt`` file's tensors, collected for ``torch.save`` at the end."""

    def add(self, name: str, array: np.ndarray) -> None:
        self[name] = array

    def flush_behind(self) -> None:
        pass

    def abort(self) -> None:
        pass


class TorchWriter:
    what = "the torch parameters"
    label = "torch"
    refusing = "torch.nn cannot compute {count} layer(s) exactly"
    all_or_nothing = False

    def __init__(self, destination: Path, layers: LayerSource, options: Options) -> None:
        self.destination, self.layers, self.options = destination, layers, options
        self.streamed = destination.suffix == ".safetensors"
        self.module_path = options.emit_module
        self.companions = (self.module_path,) if self.module_path is not None else ()
        self.refused: list[Exception] = []
        self.described: list[Layer] = []  # descriptions of the layers written
        self.emitted: list[EmittedLayer] = []
        self.written: list[str] = []
        self.tensors: dict[str, np.ndarray] = {}  # a .pt file's, for the read-back

    def refuse(self, layer: Layer) -> Refusal | None:
        if not isinstance(layer, RecurrentLayer):
            return None
        reasons = torch_refusals(layer)
        if not reasons or (self.module_path is not None and can_emit(layer)):
            return None
        return Refusal(reasons)

    def plan(self, layer: Layer) -> Iterator[Planned]:
        meta = layer.meta()
        emitted = isinstance(layer, RecurrentLayer) and self.module_path is not None and bool(torch_refusals(layer))
        if emitted:
            assert isinstance(layer, RecurrentLayer)
            params = torch_layout_state(layer)
            described = emitted_layer(layer)
            self.emitted.append(described)
            function = self._emitted_function(described, params) if self.options.verify else None
            became = described[1] + " (emitted module)"
        else:
            params = layer_from_canonical(layer)
            computes = isinstance(meta, (RecurrentMeta, DenseMeta))
            function = torch_layer_function(meta, params) if computes else None  # type: ignore[arg-type]
            became = torch_module_spec(layer) or "identity (no parameters)"
        if params:
            became += f" as {layer.name}.*"
        notes: tuple[str, ...] = ()
        if isinstance(meta, (RecurrentMeta, DenseMeta)):
            notes = (*meta.source.inferred, *meta.source.notes, *usage_notes(meta))
        self.described.append(meta)
        yield Planned(layer, {f"{layer.name}.{key}": value for key, value in params.items()}, function, became, notes)

    def _emitted_function(self, described: EmittedLayer, params: dict[str, np.ndarray]) -> ReferenceFn:
        """The emitted module's function, run with torch; not having torch is said when the check needs it."""
        text = module_source([described])
        try:
            return emitted_function(text, described, params)
        except ImportError:
            module_path = self.module_path
            layer = described[0]

            def unavailable(x: np.ndarray, initial: LayerStates | None = None) -> LayerOutput:
                raise UnsupportedFeatureError(
                    "checking the emitted module means running it, which needs PyTorch, not installed here",
                    file=module_path,
                    layer=layer,
                    hint="pip install torch, or pass --no-verify (verify=False)",
                )

            return unavailable

    def open(self, path: Path, *companions: Path) -> object:
        self.path, self.module_temporary = path, (companions[0] if companions else None)
        return open_safetensors(path, self.layers.names) if self.streamed else _Tensors()

    def write(self, stream: object, planned: Planned) -> None:
        add_tensors(stream, planned.tensors)  # type: ignore[arg-type]

    def finish(self, stream: object) -> None:
        metadata = {
            "lstmconv_schema": SCHEMA_VERSION,
            "layers": [layer.model_dump(mode="json") for layer in self.described],
            "source": {"file": Path(self.layers.source).name, "format": self.layers.source_format},
            "custom_modules": {name: class_name for name, class_name, _ in self.emitted},
        }
        if self.streamed:
            stream.finish({METADATA_KEY: json.dumps(metadata, sort_keys=True)})  # type: ignore[attr-defined]
            self.written = list(stream.entries)  # type: ignore[attr-defined]
        else:
            assert isinstance(stream, _Tensors)
            write_torch_file(self.path, stream, metadata)
            self.tensors, self.written = dict(stream), list(stream)
        if self.module_temporary is not None:
            if self.emitted:
                self.module_temporary.write_text(module_source(self.emitted))
            else:  # torch.nn computes every layer: no module to write (a companion not written is not placed)
                self.module_temporary.unlink()

    def check(self, path: Path, *companions: Path) -> None:
        if self.streamed:
            check_safetensors(path, self.written)
        else:
            _compare_written(self.destination, self.tensors, read_torch_file(path)[0])
        for module in companions:
            if module.exists():
                compile(module.read_text(), str(module), "exec")

    def report(self) -> dict[str, object]:
        warnings: tuple[str, ...] = ()
        if self.module_path is not None and not self.emitted:
            warnings = (f"--emit-module: torch.nn computes every layer, so there is no module to write; {self.module_path} not written",)
        return {"written_tensors": len(self.written), "warnings": warnings}


def _compare_written(destination: Path, meant: dict[str, np.ndarray], written: dict[str, np.ndarray]) -> None:
    if set(meant) != set(written):
        raise VerificationError(
            "the written file does not hold the intended tensors",
            file=destination,
            expected=sorted(meant),
            actual=sorted(written),
        )
    for key, value in meant.items():
        back = written[key]
        same = back.dtype == value.dtype and back.shape == value.shape
        if not same or np.ascontiguousarray(back).tobytes() != np.ascontiguousarray(value).tobytes():
            raise VerificationError("tensor read back differs from what was written", file=destination, tensor=key)
