"""What the ``lstmconv`` executable does around a command so that a small conversion is not mostly start-up.

``benchmarks/bench.py small`` measures each of these against the same command without it (docs/performance.md):

- **No cyclic garbage collection while importing.** Start-up creates a few hundred thousand objects that live
  until the process ends (numpy, pydantic's validators, typer, the modules themselves); the collector would
  walk them over and over while they are made. It is paused until the command starts (:func:`commands_start`),
  then what exists is frozen (``gc.freeze``: later collections skip it) and collection runs normally.
- **No interpreter teardown after the command** (:func:`exit_now`): it frees every module and object one by
  one, for memory the operating system reclaims at once. What the teardown does that can matter is kept.

Each pays for itself in ``bench.py small --baseline`` against a copy without it (15 interleaved rounds, sine
model to torch and to ONNX: the collector 20-30 ms, the teardown about 40 ms of 0.3 s). Shortening OpenBLAS's
thread spinning (``OPENBLAS_THREAD_TIMEOUT``) did not, small or at 256 MiB, and is not done.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading

__all__ = ["begin", "commands_start", "end", "exit_now"]

_paused = False


def begin() -> None:
    """Pause the cyclic garbage collector while the command line and the library are imported."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def commands_start() -> None:
    """Freeze what start-up made and collect garbage normally from here on."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def end() -> None:
    """Whatever is alive now lives until exit: the interpreter's last collection need not walk it."""
    commands_start()
    gc.freeze()


def exit_now(code: object) -> None:
    """End the process now with ``code``, skipping the interpreter's teardown; return instead (and leave the exit
    to the caller) when skipping it could lose anything: ``atexit`` functions still run (logging's, h5py's) and
    stdout and stderr are flushed; a live non-daemon thread (its work would be cut short), a flush that fails (a
    closed pipe) or an exit code that is not a number (``sys.exit`` prints it) take the ordinary way out. Output
    files are complete by then: written, flushed to disk and renamed into place before a command returns."""
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is None or not (code is None or isinstance(code, int)):
        return
    others = [thread for thread in threading.enumerate() if thread is not threading.main_thread()]
    if any(thread.is_alive() and not thread.daemon for thread in others):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        run_exit_functions()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)
