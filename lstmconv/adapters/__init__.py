"""Adapters: pure functions between one framework's arrays and the canonical form.

They never touch files, never print, and never mutate their input.
"""

__all__: list[str] = []
