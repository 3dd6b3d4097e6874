"""TensorFlow.js layers models written from Keras 2 ``.h5`` files, as the tfjs converter lays them out."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

__all__ = ["write_tfjs"]


def write_tfjs(h5: Path, folder: Path, shard_bytes: int = 1000) -> Path:
    """``h5`` as the tfjs converter writes it: modelTopology from the file's config, every layer's weights in
    Keras order under ``<layer>/<weight>``, two groups, shards of ``shard_bytes`` cut wherever they fall."""
    with h5py.File(h5, "r") as handle:
        config = json.loads(handle.attrs["model_config"])
        version = handle.attrs.get("keras_version", "2.2.4")
        version = version.decode() if isinstance(version, bytes) else str(version)
        root = handle["model_weights"]
        specs, blobs = [], []
        for layer in [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]:
            for weight in [n.decode() if isinstance(n, bytes) else n for n in root[layer].attrs["weight_names"]]:
                array = np.asarray(root[layer][weight], dtype="<f4")
                specs.append({"name": weight.removesuffix(":0"), "shape": list(array.shape), "dtype": "float32"})
                blobs.append(array.tobytes())
    half = len(specs) // 2
    manifest = []
    for group, (group_specs, group_blobs) in enumerate(((specs[:half], blobs[:half]), (specs[half:], blobs[half:]))):
        data = b"".join(group_blobs)
        paths = []
        for k in range(0, max(len(data), 1), shard_bytes):
            name = f"group{group + 1}-shard{k // shard_bytes + 1}"
            (folder / name).write_bytes(data[k : k + shard_bytes])
            paths.append(name)
        manifest.append({"paths": paths, "weights": group_specs})
    model = folder / "model.json"
    topology = {"keras_version": version, "backend": "tensorflow", "model_config": config}
    model.write_text(json.dumps({"format": "layers-model", "modelTopology": topology, "weightsManifest": manifest}))
    return model
