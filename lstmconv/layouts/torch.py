"""torch.nn's names: the module class of each cell kind (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``)."""

from __future__ import annotations

__all__ = ["TORCH_MODULES"]

#: The torch.nn module class of each cell kind.
TORCH_MODULES: dict[str, str] = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
