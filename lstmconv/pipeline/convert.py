"""``convert`` and the ``save_*`` functions: one pipeline from a source to a target.

read (:mod:`~lstmconv.pipeline.read`) → refuse, plan, check, write, report (:mod:`~lstmconv.pipeline.write`). A
file is read one layer at a time and each layer is written as it is read; a model already in memory
(``load``, ``load_state_dict``) goes through the same steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lstmconv._fast import buffers
from lstmconv.errors import UnsupportedFeatureError
from lstmconv.io.reading import regular_file
from lstmconv.pipeline.destination import (
    check_destination,
    check_named,
    check_suffix,
    refuse_overwriting_source,
)
from lstmconv.pipeline.load import LoadedModel, loaded_layers
from lstmconv.pipeline.read import open_layers
from lstmconv.pipeline.report import ConversionReport, LayerReport
from lstmconv.pipeline.warm import prepare_writer
from lstmconv.pipeline.write import plan_tensors, write
from lstmconv.protocols import TARGET_OPTIONS, LayerSource, Options
from lstmconv.registry import TARGETS, TargetSpec, resolve_source, target_for_destination, target_named

__all__ = [
    "LayerReport",  # from lstmconv.pipeline.report
    "ConversionReport",
    "convert",
    "save",
    "save_torch",
    "save_onnx",
    "save_canonical",
    "save_keras",
    "to_torch_state_dict",
]


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
    """Convert ``source`` into ``destination`` for framework ``to``, checked numerically, written atomically.

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
    options = Options(
        verify=verify,
        force=force,
        skip_unsupported=skip_unsupported,
        allow_nonfinite=allow_nonfinite,
        config=Path(config) if config is not None else None,
        source_format=source_format,
        per_layer=per_layer,
        external_data=external_data,
        emit_module=Path(emit_module) if emit_module is not None else None,
    )
    source = resolve_source(Path(source))
    regular_file(source)
    if config is not None:
        regular_file(config, "architecture JSON")
    check_outputs(spec, destination, options, (source, config))
    # buffers.recycling(): each layer's arrays reuse the memory of a layer already written (see lstmconv._fast.buffers)
    with buffers.recycling(), open_layers(source, options, meanwhile=lambda: prepare_writer(spec, options)) as layers:
        return write(spec.load(), layers, destination, options)


def check_outputs(spec: TargetSpec, destination: Path, options: Options, sources: tuple[object, ...]) -> list[Path]:
    """Check, before anything is read, that the options apply to ``spec``, that every output is named as it is
    written and not the source, and exists only with ``force``; returns the companion outputs."""
    for name in options.given():
        if name not in spec.options:
            flag, keyword = TARGET_OPTIONS[name]
            takes = [other.name for other in _targets_taking(name)]
            raise UnsupportedFeatureError(
                f"{flag} applies to --to {' or '.join(takes)} only ({keyword} with to={takes[0]!r})",
                hint=f"the {spec.name} target does not take it: leave it out",
            )
    companions = spec.load().companions(destination, options)
    refuse_overwriting_source(sources, (destination, *companions))  # type: ignore[arg-type]
    check_suffix(destination, spec.name, options.force)
    for companion, (suffixes, what) in companions.items():
        if suffixes:
            check_named(companion, suffixes, what, options.force)
        else:
            check_destination(companion, options.force)
    return list(companions)


def _targets_taking(option: str) -> list[TargetSpec]:
    return [spec for spec in TARGETS if option in spec.options]


def save(loaded: LoadedModel, destination: str | Path, *, to: str | None = None, **options: object) -> ConversionReport:
    """Write a model already in memory (:func:`lstmconv.load`...) for target ``to`` (default: from the
    destination's suffix); ``options`` as :func:`convert`'s."""
    destination = Path(destination)
    spec = target_named(to) if to is not None else target_for_destination(destination)
    assert spec is not None
    emit = options.pop("emit_module", None)
    chosen = Options(**options, emit_module=Path(emit) if emit is not None else None)  # type: ignore[arg-type]
    check_outputs(spec, destination, chosen, (loaded.source,))
    return write(spec.load(), loaded_layers(loaded), destination, chosen)


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
    return save(loaded, destination, to="torch", verify=verify, force=force, skip_unsupported=skip_unsupported, emit_module=emit_module)


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
    return save(
        loaded, destination, to="onnx", per_layer=per_layer, external_data=external_data, verify=verify, force=force,
        skip_unsupported=skip_unsupported,
    )


def save_canonical(loaded: LoadedModel, destination: str | Path, *, verify: bool = True, force: bool = False) -> ConversionReport:
    """Write lstmconv's own file: every layer as it is in the canonical form (exact, nothing refused)."""
    return save(loaded, destination, to="canonical", verify=verify, force=force)


def save_keras(
    loaded: LoadedModel, destination: str | Path, *, verify: bool = True, force: bool = False, skip_unsupported: bool = False
) -> ConversionReport:
    """Write Keras weights: ``.weights.h5`` (Keras 3), ``.h5`` (legacy Keras 2, by name) or a whole ``.keras``
    model when the wiring is known; checked, atomic, layer by layer (:mod:`lstmconv.targets.keras`)."""
    return save(loaded, destination, to="keras", verify=verify, force=force, skip_unsupported=skip_unsupported)


def to_torch_state_dict(loaded: LoadedModel, *, skip_unsupported: bool = False) -> dict[str, np.ndarray]:
    """``{"<layer>.<torch parameter>": array}`` for every layer; layers torch.nn cannot compute exactly are
    refused (:class:`~lstmconv.errors.RefusedConversionError` listing them) or, with ``skip_unsupported``,
    left out."""
    options = Options(verify=False, skip_unsupported=skip_unsupported)
    layers: LayerSource = loaded_layers(loaded)
    return plan_tensors(target_named("torch").load(), layers, Path(loaded.source or "state").with_suffix(".safetensors"), options)
