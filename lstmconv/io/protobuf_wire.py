"""The protobuf wire format, as much of it as lstmconv walks without parsing: varints, keys, fields.

A serialized message is a sequence of fields, each a key (``field_number << 3 | wire_type`` as a varint)
and a value: a varint (wire type 0), 8 bytes (1), a varint length then that many bytes (2: strings, bytes,
sub-messages, packed arrays) or 4 bytes (5). See https://protobuf.dev/programming-guides/encoding/.
The ONNX writer frames large tensors itself (:mod:`lstmconv.io.onnx_stream`) and the ONNX reader
skips their bytes (:mod:`lstmconv.io.onnx_skeleton`); both rely on this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["WIRE_VARINT", "WIRE_LEN", "WireFormatError", "Field", "fields", "read_varint", "varint", "key"]

WIRE_VARINT, WIRE_64BIT, WIRE_LEN, WIRE_32BIT = 0, 1, 2, 5


class _Bytes(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> int: ...


class WireFormatError(ValueError):
    """The bytes are not a well-formed protobuf message (callers say which file)."""


@dataclass(frozen=True)
class Field:
    """One field of a message: bytes ``[start, end)`` in all, the value at ``[value_start, end)``."""

    number: int
    wire: int
    start: int
    value_start: int
    end: int


def read_varint(data: _Bytes, position: int, end: int | None = None) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    limit = len(data) if end is None else end
    value, shift = 0, 0
    while True:
        if position >= limit or shift > 63:
            raise WireFormatError(f"a varint at byte {position} runs past its message or is too long")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def fields(data: _Bytes, start: int, end: int) -> Iterator[Field]:
    """The fields of the message at ``data[start:end]``, in order; raises unless they tile it exactly."""
    position = start
    while position < end:
        field_start = position
        number_and_wire, position = read_varint(data, position, end)
        number, wire = number_and_wire >> 3, number_and_wire & 7
        value_start = position
        if wire == WIRE_VARINT:
            _, position = read_varint(data, position, end)
        elif wire == WIRE_LEN:
            size, value_start = read_varint(data, position, end)
            position = value_start + size
        elif wire in (WIRE_64BIT, WIRE_32BIT):
            position += 8 if wire == WIRE_64BIT else 4
        else:
            raise WireFormatError(f"unexpected wire type {wire} at byte {field_start}")
        if position > end or number == 0:
            raise WireFormatError(f"the field at byte {field_start} runs past the end of its message")
        yield Field(number, wire, field_start, value_start, position)


def varint(value: int) -> bytes:
    """``value`` (>= 0) encoded as a varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(number: int, wire: int = WIRE_LEN) -> bytes:
    """The key of field ``number`` (length-delimited unless ``wire`` says otherwise)."""
    return varint(number << 3 | wire)
