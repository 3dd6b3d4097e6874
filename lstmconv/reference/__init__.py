"""NumPy reference cells, one per framework layout, each written from that framework's own equations.

Each reference reads weights *in its framework's layout* (Keras kernels, torch state dicts), never the
canonical form, so a bug in an adapter cannot validate itself. All references share one calling
convention (:mod:`lstmconv.reference.common`): batch-first input, initial and final states per
(level, direction), float64 arithmetic.
"""

__all__: list[str] = []
