"""Targets: what ``convert --to X`` writes. Each target plans the tensors, checks them, and writes the file."""

__all__: list[str] = []
