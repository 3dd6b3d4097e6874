"""Frameworks are imported lazily: `import lstmconv`, `--help` and .h5 -> .safetensors need no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HEAVY = ("torch", "keras", "tensorflow", "onnxruntime")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_import_and_help_import_no_framework() -> None:
    code = (
        "import sys, lstmconv\n"
        "from lstmconv.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = _python(code)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


def test_h5_to_safetensors_without_torch_installed(tmp_path: Path) -> None:
    out = tmp_path / "sine.safetensors"
    code = (
        "import sys\n"
        # A module set to None in sys.modules makes `import torch` raise ImportError, as if not installed.
        f"for name in {HEAVY!r}:\n    sys.modules[name] = None\n"
        "from lstmconv.cli import main\n"
        f"sys.argv = ['lstmconv', 'convert', {str(ROOT / 'examples' / 'sine_lstm.h5')!r}, {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
    )
    result = _python(code)
    assert out.exists(), result.stdout + result.stderr
    assert "EXIT 2" not in result.stdout


def test_tensorflow_formats_convert_with_neither_tensorflow_nor_torch(tmp_path: Path) -> None:
    """SavedModels, TF1 and TF2 checkpoints, ml5 manifests and TFLite files are read, and ONNX, safetensors and
    TFLite written, with every framework made unimportable."""
    data = ROOT / "tests" / "data"
    sources = [
        data / "saved_model" / "functional_bigru", data / "tf1_checkpoint" / "multi_basic_lstm.index",
        data / "tf_checkpoint" / "lstm_dense.index", data / "ml5" / "manifest.json", data / "tf2onnx" / "rnn_relu_loop.onnx",
    ]
    jobs = [(source, tmp_path / f"{k}{suffix}") for k, source in enumerate(sources) for suffix in (".onnx", ".safetensors", ".tflite")]
    code = (
        "import sys\n"
        f"for name in {HEAVY!r}:\n    sys.modules[name] = None\n"
        "import lstmconv\n"
        f"for source, out in {[(str(s), str(o)) for s, o in jobs]!r}:\n"
        "    lstmconv.convert(source, out, skip_unsupported=True)\n"
        f"lstmconv.convert({str(tmp_path / '0.tflite')!r}, {str(tmp_path / 'back.onnx')!r})\n"
        "print('DONE')\n"
    )
    result = _python(code)
    assert "DONE" in result.stdout, result.stdout + result.stderr[-3000:]
