"""TensorFlow.js layers models written from Keras 2 ``.h5`` files as the tfjs converter lays them out, and run by
real ``@tensorflow/tfjs`` in Node (from the test set-up's ``.tfjs``, or ``LSTMCONV_TFJS_MODULES``; skipped without)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import ROOT

__all__ = ["write_tfjs", "tfjs_predict"]

MODULES = Path(os.environ.get("LSTMCONV_TFJS_MODULES", ROOT / ".tfjs" / "node_modules"))
SCRIPT = ROOT / "tests" / "js" / "tfjs_predict.js"


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


def tfjs_predict(model: Path, inputs: list[np.ndarray], work: Path) -> list[np.ndarray]:
    """``model``'s predictions on ``inputs``, computed by real tfjs in Node."""
    if shutil.which("node") is None or not (MODULES / "@tensorflow" / "tfjs").is_dir():
        pytest.skip(f"Node or @tensorflow/tfjs not installed (looked in {MODULES})")
    feed = work / "inputs.json"
    dtype = lambda x: "int32" if x.dtype.kind in "iu" else "float32"  # noqa: E731
    feed.write_text(json.dumps([{"data": x.ravel().tolist(), "shape": list(x.shape), "dtype": dtype(x)} for x in inputs]))
    done = subprocess.run(
        ["node", str(SCRIPT), str(model), str(feed)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": str(MODULES)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [np.asarray(out["data"], np.float32).reshape(out["shape"]) for out in json.loads(done.stdout)]
