"""The one exception hierarchy of lstmconv.

Every error lstmconv raises derives from :class:`LstmconvError`. The structured fields (file, layer,
tensor, expected, actual, hint) are kept on the exception so scripts can inspect them, and ``str(e)``
renders them into one line a user can act on::

    model.h5: layer 'lstm_1': tensor 'kernel': shape mismatch: expected (33, 800), got (33, 600).
    Hint: ...

The CLI turns any ``LstmconvError`` into exit code 2 with that message and no traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "LstmconvError",
    "InputFormatError",
    "MissingTensorError",
    "ShapeMismatchError",
    "UnsupportedFeatureError",
    "RefusedConversionError",
    "VerificationError",
    "OutputExistsError",
    "OutputNameError",
    "OutputWriteError",
    "ConfigError",
]


class LstmconvError(Exception):
    """Base class of every error raised by lstmconv."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        layer: str | None = None,
        tensor: str | None = None,
        expected: Any = None,
        actual: Any = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.layer = layer
        self.tensor = tensor
        self.expected = expected
        self.actual = actual
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.layer:
            where.append(f"layer '{self.layer}'")
        if self.tensor:
            where.append(f"tensor '{self.tensor}'")
        text = ": ".join([*where, self.message]) if where else self.message
        if self.expected is not None and self.actual is not None:
            text += f" (expected {self.expected}, got {self.actual})"
        elif self.expected is not None or self.actual is not None:  # one side only: do not print "None"
            text += f" (expected {self.expected})" if self.expected is not None else f" (got {self.actual})"
        if self.hint:
            text += f". {self.hint}"
        return text

    def with_context(self, *, file: str | Path | None = None, layer: str | None = None) -> LstmconvError:
        """Return the same error with file/layer filled in where they were unknown."""
        if (file is None or self.file) and (layer is None or self.layer):
            return self
        changes: dict[str, Any] = {}
        if file is not None and not self.file:
            changes["file"] = str(file)
        if layer is not None and not self.layer:
            changes["layer"] = layer
        return self._replaced(changes)

    def with_files_renamed(self, renames: Mapping[str, str]) -> LstmconvError:
        """Return the same error with every path in ``renames`` replaced by its new name, in the file and in the
        text (the message, the hint and any refusals). An output is written to a temporary file and renamed
        into place (:func:`lstmconv.io.atomic.write_atomically`); an error found while writing or reading it back
        names the temporary file, which the user never sees and which is removed by then."""
        if not renames:
            return self

        def renamed(text: str | None) -> str | None:
            if text is None:
                return None
            for old, new in renames.items():
                text = text.replace(old, new)
            return text

        changes = {"file": renamed(self.file), "message": renamed(self.message), "hint": renamed(self.hint)}
        if isinstance(self, RefusedConversionError):
            changes["refusals"] = [refusal.with_files_renamed(renames) for refusal in self.refusals]
        return self._replaced(changes)

    def _replaced(self, changes: dict[str, Any]) -> LstmconvError:
        """A copy of this error (same type, same fields) with ``changes``, its message rendered again."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changes)
        Exception.__init__(clone, clone._render())
        return clone


class InputFormatError(LstmconvError):
    """The input file is missing, unreadable, malformed, or not a format lstmconv knows."""


class ConfigError(LstmconvError):
    """A layer configuration (from the file, a sidecar JSON, or the caller) is missing or inconsistent."""


class MissingTensorError(LstmconvError):
    """A weight tensor a layer needs is not in the input."""


class ShapeMismatchError(LstmconvError):
    """A weight tensor has a shape that does not fit the layer."""


class UnsupportedFeatureError(LstmconvError):
    """The source uses something lstmconv cannot read (yet), or a target cannot express exactly."""


class RefusedConversionError(LstmconvError):
    """One or more layers cannot be converted exactly to the requested target; nothing was written."""

    def __init__(self, message: str, *, refusals: list[LstmconvError], **kwargs: Any) -> None:
        self.refusals = refusals
        super().__init__(message, **kwargs)

    def _render(self) -> str:
        head = super()._render()
        lines = [head] + [f"  - {r}" for r in getattr(self, "refusals", [])]
        return "\n".join(lines)


class VerificationError(LstmconvError):
    """The numeric check found that the target does not compute the source's function."""


class OutputExistsError(LstmconvError):
    """The destination exists and ``force`` was not given."""


class OutputNameError(LstmconvError):
    """An output's name does not fit what is written there (its suffix), or its folder does not exist."""


class OutputWriteError(LstmconvError, OSError):
    """An output could not be written (its folder, the disk): the destination is named, never the source. Also an
    ``OSError``, as the failure it reports is the system's; ``errno`` is the system's code when there is one."""
