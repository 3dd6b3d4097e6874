"""Recurrent layers that torch.nn cannot compute, as plain PyTorch modules (written by lstmconv).

This file depends on torch only. Each class keeps torch.nn's parameter names and layout
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``_reverse`` for the backward
direction; gates LSTM i,f,g,o and GRU r,z,n), so ``load_state_dict`` works as for nn.LSTM/GRU/RNN; LSTM
peepholes are ``peephole_l{k}`` with rows (input, forget, output). Inputs and outputs are batch-first.

    modules = build_modules()
    load_state(modules, safetensors.torch.load_file("weights.safetensors"))
    y, state = modules["lstm_1"](x)      # x: (batch, time, features)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def activation(name: str, alpha: float | None = None, beta: float | None = None):
    """The activation function ``name`` with its numeric parameters."""
    simple = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "linear": lambda x: x,
        "softsign": lambda x: x / (1 + x.abs()),
        "softplus": nn.functional.softplus,
        "selu": torch.selu,
        "exponential": torch.exp,
        "silu": nn.functional.silu,
        "gelu": nn.functional.gelu,
        "gelu_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
        "relu6": lambda x: x.clamp(0, 6),
        "mish": lambda x: x * torch.tanh(nn.functional.softplus(x)),
        "softmax": lambda x: torch.softmax(x, -1),
        "log_softmax": lambda x: torch.log_softmax(x, -1),
        "hard_tanh": lambda x: x.clamp(-1, 1),
        "log_sigmoid": nn.functional.logsigmoid,
    }
    if name in simple:
        return simple[name]
    if name == "hard_sigmoid":
        return lambda x: (alpha * x + beta).clamp(0, 1)
    if name == "hard_silu":
        return lambda x: x * (alpha * x + beta).clamp(0, 1)
    if name == "elu":
        return lambda x: torch.where(x > 0, x, alpha * torch.expm1(x.clamp(max=0)))
    if name == "leaky_relu":
        return lambda x: torch.where(x >= 0, x, alpha * x)
    if name == "affine":
        return lambda x: alpha * x + beta
    if name == "scaled_tanh":
        return lambda x: alpha * torch.tanh(beta * x)
    if name == "thresholded_relu":
        return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))
    raise ValueError(f"unknown activation {name!r}")


class _Recurrent(nn.Module):
    """Shared parameters and the time loop; subclasses define one step."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        merge_mode: str = "concat",
        go_backwards: bool = False,
        time_aligned_output: bool = False,
        activations: dict | None = None,
        clip: float | None = None,
        state_clip: float | None = None,
        peepholes: bool = False,
        input_forget: bool = False,
        reset_after: bool = True,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.merge_mode = bidirectional, merge_mode
        self.go_backwards, self.time_aligned_output = go_backwards, time_aligned_output
        self.clip, self.input_forget, self.reset_after = clip, input_forget, reset_after
        self.state_clip = state_clip
        acts = activations or {}
        self.act = {role: activation(*spec) for role, spec in acts.items()}
        self.suffixes = ["", "_reverse"] if bidirectional else [""]
        size = self.gates * hidden_size
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size * len(self.suffixes)
            for suffix in self.suffixes:
                self.register_parameter(f"weight_ih_l{k}{suffix}", nn.Parameter(torch.empty(size, layer_input)))
                self.register_parameter(f"weight_hh_l{k}{suffix}", nn.Parameter(torch.empty(size, hidden_size)))
                if bias:
                    self.register_parameter(f"bias_ih_l{k}{suffix}", nn.Parameter(torch.zeros(size)))
                    self.register_parameter(f"bias_hh_l{k}{suffix}", nn.Parameter(torch.zeros(size)))
                if peepholes:
                    self.register_parameter(f"peephole_l{k}{suffix}", nn.Parameter(torch.zeros(3, hidden_size)))
        bound = 1 / math.sqrt(hidden_size)
        for name, parameter in self.named_parameters():
            if name.startswith("weight"):
                nn.init.uniform_(parameter, -bound, bound)

    def _clip(self, x):
        return x if self.clip is None else x.clamp(-self.clip, self.clip)

    def forward(self, x, state=None):
        """x (batch, time, features) -> (output, h_n) or (output, (h_n, c_n)), states (levels*directions, batch, H)."""
        if self.go_backwards:
            x = x.flip(1)
        batch = x.shape[0]
        h_n, c_n = [], []
        layer_input = x
        for k in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self.suffixes):
                index = k * len(self.suffixes) + d
                zeros = x.new_zeros(batch, self.hidden_size)
                h = zeros if state is None else (state[0] if isinstance(state, tuple) else state)[index]
                c = zeros if state is None or not isinstance(state, tuple) else state[1][index]
                p = {n: getattr(self, f"{n}_l{k}{suffix}", None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "peephole")}
                projected = layer_input @ p["weight_ih"].T
                if p["bias_ih"] is not None:
                    projected = projected + p["bias_ih"]
                steps = range(x.shape[1] - 1, -1, -1) if d == 1 else range(x.shape[1])
                out = [None] * x.shape[1]
                for t in steps:
                    h, c = self.step(projected[:, t], h, c, p)
                    out[t] = h
                outputs.append(torch.stack(out, 1))
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outputs, -1)
        y = layer_input
        if self.bidirectional and self.merge_mode != "concat":
            forward, backward = y.chunk(2, -1)
            y = {"sum": forward + backward, "mul": forward * backward, "ave": (forward + backward) / 2}[self.merge_mode]
        if self.go_backwards and self.time_aligned_output:
            y = y.flip(1)
        return y, self.final_state(torch.stack(h_n), torch.stack(c_n))

    def final_state(self, h_n, c_n):
        return h_n

    def step(self, x_t, h, c, p):
        raise NotImplementedError


class LstmconvLSTM(_Recurrent):
    """LSTM with any gate/candidate/cell-output activations, peepholes, clip, state_clip and input_forget."""

    gates = 4

    def step(self, x_t, h, c, p):
        z = x_t + h @ p["weight_hh"].T + (p["bias_hh"] if p["bias_hh"] is not None else 0)
        i, f, g, o = z.chunk(4, -1)
        if p["peephole"] is not None:
            i, f = i + p["peephole"][0] * c, f + p["peephole"][1] * c
        i = self.act["gate"](self._clip(i))
        f = 1 - i if self.input_forget else self.act["gate"](self._clip(f))
        c = f * c + i * self.act["candidate"](self._clip(g))
        if self.state_clip is not None:  # TFLite's and TF1's cell_clip: the cell state itself
            c = c.clamp(-self.state_clip, self.state_clip)
        if p["peephole"] is not None:
            o = o + p["peephole"][2] * c
        h = self.act["gate"](self._clip(o)) * self.act["cell_output"](c)
        return h, c

    def final_state(self, h_n, c_n):
        return (h_n, c_n)


class LstmconvGRU(_Recurrent):
    """GRU with any activations; reset_after=False applies the reset gate before the recurrent matmul."""

    gates = 3

    def step(self, x_t, h, c, p):
        hidden = self.hidden_size
        w_hh = p["weight_hh"]
        b_hh = p["bias_hh"] if p["bias_hh"] is not None else torch.zeros(3 * hidden, dtype=x_t.dtype)
        x_r, x_z, x_n = x_t.chunk(3, -1)
        w_r, w_z, w_n = w_hh.chunk(3, 0)
        b_r, b_z, b_n = b_hh.chunk(3, 0)
        r = self.act["gate"](self._clip(x_r + h @ w_r.T + b_r))
        z = self.act["gate"](self._clip(x_z + h @ w_z.T + b_z))
        if self.reset_after:
            n = self.act["candidate"](self._clip(x_n + r * (h @ w_n.T + b_n)))
        else:
            n = self.act["candidate"](self._clip(x_n + (r * h) @ w_n.T + b_n))
        return (1 - z) * n + z * h, c


class LstmconvRNN(_Recurrent):
    """Elman RNN with any activation."""

    gates = 1

    def step(self, x_t, h, c, p):
        z = x_t + h @ p["weight_hh"].T + (p["bias_hh"] if p["bias_hh"] is not None else 0)
        return self.act["candidate"](self._clip(z)), c


def load_state(modules: dict, state_dict: dict) -> None:
    """Load ``<layer>.<parameter>`` entries into ``modules`` (strict per module)."""
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}, strict=True)
