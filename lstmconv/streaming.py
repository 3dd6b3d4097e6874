"""Keras file -> torch ``.safetensors``, one layer at a time.

A layer's arrays are read, converted, checked and written, then dropped, so memory is bounded by the
largest layer rather than the model (``benchmarks/bench.py large`` measures it). Behaviour and file bytes are
those of :func:`lstmconv.conversion.save_torch`; this is only the order of the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from lstmconv.adapters.torch import layer_from_canonical, torch_module_spec, torch_refusals
from lstmconv.conversion import ConversionReport, LayerReport, _check, _check_torch_destination, describe, torch_refusal
from lstmconv.errors import InputFormatError, RefusedConversionError
from lstmconv.formats.keras_files import open_keras
from lstmconv.formats.safetensors_stream import SafetensorsStream
from lstmconv.formats.torch_files import METADATA_KEY
from lstmconv.loading import LoadedModel, iter_keras_layers, reading_errors, refuse_nonfinite_layer
from lstmconv.schema import SCHEMA_VERSION, CanonicalModel, DenseLayer, RecurrentLayer
from lstmconv.targets.torch import torch_layer_function, usage_notes

__all__ = ["stream_keras_to_torch"]


def _reserve(entries: list) -> int:  # type: ignore[type-arg]
    """Generous room for the header: every tensor name, shape and offset, and each layer's description."""
    names = sum(len(entry.name) for entry in entries)
    tensors = sum(len(entry.array_names) for entry in entries)
    return 8192 + 24 * 1024 * len(entries) + 4 * names + 600 * (tensors + 8 * len(entries))


def stream_keras_to_torch(
    source: str | Path,
    destination: str | Path,
    *,
    config: str | Path | None = None,
    verify: bool = True,
    force: bool = False,
    skip_unsupported: bool = False,
    allow_nonfinite: bool = False,
) -> ConversionReport:
    """Convert a Keras file to a torch ``.safetensors`` layer by layer (see the module docstring)."""
    source, destination = Path(source), Path(destination)
    _check_torch_destination(destination, force)
    handle, temporary_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp.safetensors", dir=destination.parent)
    os.close(handle)
    temporary = Path(temporary_name)
    stream: SafetensorsStream | None = None
    try:
        with contextlib.ExitStack() as stack:
            with reading_errors(source):  # parser errors are about the input; write errors stay OSErrors
                info, entries, _wiring = stack.enter_context(open_keras(source, config))
            stream = SafetensorsStream(temporary, _reserve(entries))
            metas, reports, skipped, refusals = [], [], [], []
            seen: set[str] = set()
            layers = iter_keras_layers(info, entries, skip_unsupported=skip_unsupported)
            while True:
                with reading_errors(source):
                    item = next(layers, None)
                if item is None:
                    break
                if isinstance(item, str):
                    skipped.append(item)
                    continue
                layer, reference = item
                if layer.name in seen:
                    raise InputFormatError(f"two layers are named {layer.name!r}", file=source)
                seen.add(layer.name)
                if not allow_nonfinite:
                    refuse_nonfinite_layer(layer, str(source))
                if isinstance(layer, RecurrentLayer) and (reasons := torch_refusals(layer)):
                    refusals.append(torch_refusal(layer.name, reasons))
                    continue
                if refusals and not skip_unsupported:
                    continue  # going on only to name every refused layer
                params = layer_from_canonical(layer)
                loaded_one = LoadedModel(
                    model=CanonicalModel(layers=(layer,)),
                    references={layer.name: reference} if reference is not None else {},
                    source=str(source),
                )
                target = torch_layer_function(layer, params) if isinstance(layer, (RecurrentLayer, DenseLayer)) else None
                error, tol, check_notes = _check(loaded_one, layer, target, "the torch parameters", verify)
                for key in sorted(params):
                    stream.add(f"{layer.name}.{key}", params[key])
                metas.append(layer.meta().model_dump(mode="json"))
                became = torch_module_spec(layer) or "identity (no parameters)"
                if params:
                    became += f" as {layer.name}.*"
                notes = (
                    (*layer.source.inferred, *usage_notes(layer), *check_notes)
                    if isinstance(layer, (RecurrentLayer, DenseLayer))
                    else ()
                )
                reports.append(LayerReport(layer.name, describe(layer), became, error, tol, tuple(notes)))
                del params, layer, reference, loaded_one
            if refusals and not skip_unsupported:
                raise RefusedConversionError(
                    f"torch.nn cannot compute {len(refusals)} layer(s) exactly; nothing was written",
                    refusals=refusals,
                    file=str(source),
                )
            if not stream.entries:
                hint = "; ".join(skipped) or None
                raise RefusedConversionError("no layer could be converted; nothing was written", refusals=[], file=str(source), hint=hint)
            metadata = {
                "lstmconv_schema": SCHEMA_VERSION,
                "layers": metas,
                "source": {"file": source.name, "format": "keras"},
                "custom_modules": {},
            }
            stream.finish({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
            _check_header(temporary, stream.entries)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, destination)
    except BaseException:
        if stream is not None:
            stream.abort()
        temporary.unlink(missing_ok=True)
        raise
    return ConversionReport(
        source=str(source),
        destination=str(destination),
        target="torch",
        layers=tuple(reports),
        skipped=(*skipped, *(f"{r.layer}: {r.message}" for r in refusals)),
        verified=verify,
        written_tensors=len(stream.entries),
    )


def _check_header(path: Path, entries: dict[str, dict[str, object]]) -> None:
    """The finished file parses as safetensors and lists exactly the tensors written."""
    from safetensors import safe_open

    from lstmconv.errors import VerificationError

    with safe_open(str(path), framework="numpy") as handle:
        keys = set(handle.keys())  # noqa: SIM118 - not a dict
    if keys != set(entries):
        raise VerificationError("the written file does not list the tensors written", file=path)

