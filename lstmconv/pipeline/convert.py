"""``convert``: load a source, build the target's tensors, check them numerically, write atomically
(:mod:`lstmconv.io.atomic`), and report each layer (:mod:`lstmconv.pipeline.report`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstmconv.adapters.torch import layer_from_canonical, torch_layout_state, torch_refusals
from lstmconv.pipeline.check import check_conversion
from lstmconv.errors import (
    LstmconvError,
    RefusedConversionError,
    UnsupportedFeatureError,
    VerificationError,
)
from lstmconv.io.reading import regular_file
from lstmconv.io.torch_files import read_torch_file, write_torch_file
from lstmconv.pipeline.load import LoadedModel, load_file, loaded_layers
from lstmconv.reference.common import ReferenceFn
from lstmconv.pipeline.report import ConversionReport, LayerReport
from lstmconv.schema import DenseLayer, RecurrentLayer
from lstmconv.reference.torch_function import torch_layer_function
from lstmconv.adapters.torch_emit import can_emit
from lstmconv.pipeline.read import stream_to, streams, write_to
from lstmconv.targets.torch import (
    check_torch_destination,
    torch_layer_report,
    torch_metadata,
    torch_refusal,
    torch_refusals_error,
)
from lstmconv.registry import target_for_destination, target_named
from lstmconv.io.atomic import check_named, check_suffix, external_data_path, refuse_overwriting_source, write_atomically

__all__ = [
    "LayerReport",  # from lstmconv.pipeline.report
    "ConversionReport",
    "convert",
    "save_torch",
    "save_onnx",
    "save_canonical",
    "save_keras",
    "to_torch_state_dict",
]

def to_torch_state_dict(loaded: LoadedModel, *, skip_unsupported: bool = False) -> dict[str, np.ndarray]:
    """``{"<layer>.<torch parameter>": array}`` for every layer (see :func:`_plan_torch` for refusals)."""
    return _plan_torch(loaded, skip_unsupported=skip_unsupported)[0]


def _plan_torch(
    loaded: LoadedModel, *, skip_unsupported: bool = False, custom: list[RecurrentLayer] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], list[str]]:
    """Prefixed torch parameters of every layer, per-layer parameters, and the layers refused and skipped.

    Raises :class:`RefusedConversionError` listing every layer ``torch.nn`` cannot compute exactly, unless
    ``skip_unsupported`` (then they are left out and returned in the third value).
    """
    refusals: list[LstmconvError] = []
    per_layer: dict[str, dict[str, np.ndarray]] = {}
    for layer in loaded.model.layers:
        if isinstance(layer, RecurrentLayer):
            reasons = torch_refusals(layer)
            if reasons and custom is not None and can_emit(layer):
                custom.append(layer)  # computed by the emitted module instead of torch.nn
                per_layer[layer.name] = torch_layout_state(layer)
                continue
            if reasons:
                refusals.append(torch_refusal(layer, reasons))
                continue
        per_layer[layer.name] = layer_from_canonical(layer)
    left_out = [f"{r.layer}: {r.message}" for r in refusals]
    if refusals and not skip_unsupported:
        raise torch_refusals_error(refusals, loaded.source)
    tensors = {f"{name}.{key}": value for name, params in per_layer.items() for key, value in params.items()}
    return tensors, per_layer, left_out


def convert(
    source: str | Path,
    destination: str | Path,
    *,
    to: str | None = None,
    config: str | Path | None = None,
    source_format: str | None = None,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    per_layer: bool = False,
    external_data: bool = False,
    emit_module: str | Path | None = None,
    allow_nonfinite: bool = False,
) -> ConversionReport:
    """Convert ``source`` into ``destination`` for framework ``to``, checked numerically (see module doc).

    ``to`` defaults to the target ``destination``'s suffix names (:mod:`lstmconv.registry`): ``.onnx``,
    ``.keras``/``.weights.h5``/``.h5``, ``.safetensors``/``.pt``/``.pth`` (torch), ``.lstmconv.safetensors``.

    ``per_layer`` (ONNX only) writes every layer as its own subgraph even when the source's wiring is known.
    ``external_data`` (ONNX only) writes the weights to ``<destination>.data`` beside the model (ONNX external
    data; a model of more than 2 GiB needs it).
    ``emit_module`` (torch only) writes a PyTorch module file for the layers torch.nn cannot compute.
    """
    destination = Path(destination)
    spec = target_named(to) if to is not None else target_for_destination(destination)
    assert spec is not None
    to = spec.name
    if emit_module is not None and to != "torch":
        raise UnsupportedFeatureError(
            "--emit-module applies to --to torch only (emit_module=... with to='torch')",
            hint=f"the {to} target computes these layers itself or refuses them: leave it out",
        )
    if external_data and to != "onnx":
        raise UnsupportedFeatureError(
            "--external-data applies to --to onnx only (external_data=True with to='onnx')",
            hint=f"the {to} target has no size limit: leave it out",
        )
    # The destination is checked before anything is read, so a wrong name fails at once.
    regular_file(source)
    if config is not None:
        regular_file(config, "architecture JSON")
    data_file = external_data_path(destination) if external_data else None
    module_file = Path(emit_module) if emit_module is not None else None
    refuse_overwriting_source((source, config), (destination, data_file, module_file))
    check_suffix(destination, to, force)
    # sources streams() accepts, to any target but .pt and --emit-module: read, converted, written layer by layer
    to_safetensors = to == "torch" and destination.suffix == ".safetensors" and emit_module is None
    streamed_target = to_safetensors or to in ("onnx", "canonical", "keras")
    if streamed_target and streams(source, source_format):
        return stream_to(
            to, source, destination, config=config, source_format=source_format, per_layer=per_layer,
            external_data=external_data, verify=verify,
            force=force, skip_unsupported=skip_unsupported, allow_nonfinite=allow_nonfinite,
        )
    loaded = load_file(
        source,
        config=config,
        source_format=source_format,
        skip_unsupported=skip_unsupported,
        allow_nonfinite=allow_nonfinite,
    )
    if to == "onnx":
        return save_onnx(
            loaded, destination, per_layer=per_layer, external_data=external_data, verify=verify, force=force,
            skip_unsupported=skip_unsupported,
        )
    if to == "canonical":
        return save_canonical(loaded, destination, verify=verify, force=force)
    if to == "keras":
        return save_keras(loaded, destination, verify=verify, force=force, skip_unsupported=skip_unsupported)
    return save_torch(
        loaded, destination, verify=verify, force=force, skip_unsupported=skip_unsupported, emit_module=emit_module
    )


def save_torch(
    loaded: LoadedModel,
    destination: str | Path,
    *,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    emit_module: str | Path | None = None,
) -> ConversionReport:
    """Write ``loaded`` as torch parameters to ``destination`` (.safetensors/.pt/.pth), checked and atomic.

    With ``emit_module``, layers torch.nn cannot compute are written in torch's parameter layout too, and a
    PyTorch module file computing them is written to ``emit_module`` (checked by running it).
    """
    from lstmconv.adapters.torch_emit import MODULE_CLASS, emitted_function, module_source

    destination = Path(destination)
    check_torch_destination(destination, force)
    refuse_overwriting_source((loaded.source,), (destination, Path(emit_module) if emit_module is not None else None))
    if destination.suffix == ".safetensors" and emit_module is None:  # the layer-by-layer writer, as for files
        return write_to("torch", loaded_layers(loaded), destination, verify=verify, force=force, skip_unsupported=skip_unsupported)
    module_path = Path(emit_module) if emit_module is not None else None
    if module_path is not None:
        check_named(module_path, (".py",), "the --emit-module file", force)
    source = loaded.source
    custom: list[RecurrentLayer] = []
    tensors, per_layer, refused = _plan_torch(
        loaded, skip_unsupported=skip_unsupported, custom=custom if module_path is not None else None
    )
    module_text = module_source(custom) if custom else None
    custom_names = {layer.name for layer in custom}
    if not tensors:
        raise RefusedConversionError("no layer could be converted; nothing was written", refusals=[], file=source)
    reports = []
    for layer in loaded.model.layers:
        if layer.name not in per_layer:
            continue
        target: ReferenceFn | None = None
        if layer.name in custom_names and verify:
            assert isinstance(layer, RecurrentLayer) and module_text is not None
            try:
                target = emitted_function(module_text, layer, per_layer[layer.name])
            except ImportError:
                raise UnsupportedFeatureError(
                    "checking the emitted module means running it, which needs PyTorch, not installed here",
                    file=module_path,
                    layer=layer.name,
                    hint="pip install torch, or pass --no-verify (verify=False)",
                ) from None
        elif isinstance(layer, (RecurrentLayer, DenseLayer)):
            target = torch_layer_function(layer, per_layer[layer.name])
        error, tol, check_notes = check_conversion(loaded, layer, target, "the torch parameters", verify)
        emitted = MODULE_CLASS[layer.cell] if layer.name in custom_names else None  # type: ignore[union-attr]
        reports.append(torch_layer_report(layer, per_layer[layer.name], error, tol, check_notes, emitted))
    metadata = torch_metadata(
        [layer for layer in loaded.model.layers if layer.name in per_layer],
        source,
        loaded.source_format,
        {layer.name: MODULE_CLASS[layer.cell] for layer in custom},
    )
    warnings: tuple[str, ...] = ()
    if module_path is not None and module_text is None:
        warnings = (f"--emit-module: torch.nn computes every layer, so there is no module to write; {module_path} not written",)
    companions = (module_path,) if module_path is not None and module_text is not None else ()

    def write(path: Path, *module: Path) -> None:
        write_torch_file(path, tensors, metadata)
        if module:
            module[0].write_text(module_text or "")

    def check(path: Path, *module: Path) -> None:
        _compare_written(destination, tensors, read_torch_file(path)[0])
        if module:
            compile(module[0].read_text(), str(module[0]), "exec")

    # the module file and the parameters are one output: both are placed, or neither
    write_atomically(destination, write, check, companions=companions, replace=force)
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target="torch",
        layers=tuple(reports),
        skipped=(*loaded.model.skipped, *refused),
        verified=verify,
        written_tensors=len(tensors),
        warnings=warnings,
    )


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


def save_onnx(
    loaded: LoadedModel,
    destination: str | Path,
    *,
    per_layer: bool = False,
    external_data: bool = False,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
) -> ConversionReport:
    """Write ``loaded`` as an ONNX model (whole model when its wiring is known, else per layer), checked;
    with ``external_data``, its weights go to ``<destination>.data`` beside it."""
    return write_to(
        "onnx", loaded_layers(loaded), destination, per_layer=per_layer, external_data=external_data,
        verify=verify, force=force, skip_unsupported=skip_unsupported,
    )


def save_canonical(loaded: LoadedModel, destination: str | Path, *, verify: bool = True, force: bool = False) -> ConversionReport:
    """Write lstmconv's own file: every layer as it is in the canonical form (exact, nothing refused)."""
    return write_to("canonical", loaded_layers(loaded), destination, verify=verify, force=force)


def save_keras(
    loaded: LoadedModel, destination: str | Path, *, verify: bool = True, force: bool = False, skip_unsupported: bool = False
) -> ConversionReport:
    """Write Keras weights: ``.weights.h5`` (Keras 3), ``.h5`` (legacy Keras 2, by name) or a whole ``.keras``
    model when the wiring is known; checked, atomic, layer by layer (:mod:`lstmconv.targets.keras`)."""
    return write_to("keras", loaded_layers(loaded), destination, verify=verify, force=force, skip_unsupported=skip_unsupported)
