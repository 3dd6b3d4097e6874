"""TensorFlow's tensor bundle (checkpoints, a SavedModel's ``variables/``), read as ``BundleReader`` reads it.

``<prefix>.index`` is a LevelDB-format table (``tensorflow/core/lib/io/table``): data blocks of prefix-compressed
keys with restart points, an index block pointing at them and a 48-byte footer ending in the table magic. Each
key is a tensor name and its value a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c);
the empty key holds the ``BundleHeaderProto`` (shard count, byte order). A tensor's bytes are at ``offset`` in
``<prefix>.data-<shard>-of-<shards>``; TensorFlow checks each tensor's crc32c when it reads it, and so does this
reader. Blocks are checked against their own crc32c. Compressed blocks, sliced (partitioned) variables and
big-endian bundles are refused.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmconv.errors import InputFormatError, UnsupportedFeatureError
from lstmconv.io.protobuf_wire import WIRE_LEN, WireFormatError, fields, read_varint
from lstmconv.io.reading import read_into, regular_file

__all__ = ["BundleEntry", "TensorBundle", "open_bundle", "string_scalar"]

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_MAX_INDEX_BYTES = 256 << 20
#: TensorFlow DataType -> NumPy dtype (little-endian), for the types a checkpoint's weights have
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
_DT_STRING = 7


@dataclass(frozen=True)
class BundleEntry:
    name: str
    dtype: int  # TensorFlow DataType
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # masked, as stored


def _masked_crc(data: bytes | memoryview) -> int:
    """crc32c of ``data``, masked as LevelDB and TensorFlow store it."""
    import google_crc32c

    return _mask(google_crc32c.value(bytes(data)))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TensorBundle:
    """The entries of a bundle and a reader of each tensor's bytes."""

    def __init__(self, index: Path, entries: dict[str, BundleEntry], shards: int) -> None:
        self.index, self.entries, self.shards = index, entries, shards
        self.prefix = str(index)[: -len(".index")]

    def data_file(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as an array, its bytes checked against the crc32c the bundle stores."""
        entry = self.entries[name]
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise UnsupportedFeatureError(f"a tensor of TensorFlow dtype {entry.dtype}", file=self.index, tensor=name)
        nbytes = math.prod(entry.shape) * np.dtype(dtype).itemsize
        if nbytes != entry.size:
            raise InputFormatError("the tensor's size does not match its shape", file=self.index, tensor=name,
                                   expected=nbytes, actual=entry.size)
        path = regular_file(self.data_file(entry.shard), "checkpoint data file")
        if entry.offset + entry.size > (held := path.stat().st_size):
            # checked before the array is made: memory is bounded by what the file really holds
            raise InputFormatError("the data file ends before the tensor", file=path, tensor=name,
                                   expected=f"bytes {entry.offset}..{entry.offset + entry.size}", actual=f"{held} bytes")
        array = np.empty(entry.shape, np.dtype(dtype))
        with path.open("rb") as handle:
            if not read_into(handle, array, entry.offset):
                raise InputFormatError("the data file ends before the tensor", file=path, tensor=name)
        if _masked_crc(memoryview(array.reshape(-1)).cast("B")) != entry.crc32c:
            raise InputFormatError("the tensor's bytes do not match their checksum", file=path, tensor=name,
                                   hint="the checkpoint is damaged; TensorFlow refuses it too")
        return array.astype(array.dtype.newbyteorder("="), copy=False)

    def read_bytes(self, name: str) -> bytes:
        """A scalar string tensor's value (a string tensor is stored as its varint length, a masked crc32c
        of the lengths, then the bytes; the entry's crc covers the whole)."""
        entry = self.entries[name]
        if entry.dtype != _DT_STRING or entry.shape != ():
            raise InputFormatError("not a scalar string tensor", file=self.index, tensor=name)
        path = regular_file(self.data_file(entry.shard), "checkpoint data file")
        with path.open("rb") as handle:
            handle.seek(entry.offset)
            raw = handle.read(entry.size)
        if len(raw) != entry.size:
            raise InputFormatError("the data file ends before the tensor", file=path, tensor=name)
        return string_scalar(raw, entry.crc32c, path, name)


def string_scalar(raw: bytes, crc32c: int, path: Path, name: str) -> bytes:
    """The bytes of a scalar string tensor stored as TensorFlow's ``WriteStringTensor`` writes it: the length
    as a varint, a 4-byte checksum of the lengths, the bytes. The entry's checksum runs over the length as a
    little-endian uint32, the 4 checksum bytes and the string bytes."""
    import google_crc32c

    try:
        length, position = read_varint(raw, 0)
    except WireFormatError as error:
        raise InputFormatError(f"cannot read a string tensor: {error}", file=path, tensor=name) from None
    start = position + 4
    if start + length != len(raw) or length >= 2**32:
        raise InputFormatError("a string tensor does not hold what its length says", file=path, tensor=name)
    crc = google_crc32c.extend(google_crc32c.value(struct.pack("<I", length)), raw[position:])
    if _mask(crc) != crc32c:
        raise InputFormatError("the tensor's bytes do not match their checksum", file=path, tensor=name)
    return raw[start:]


def open_bundle(index: Path) -> TensorBundle:
    """Read ``<prefix>.index``: every entry, the header checked (little-endian, no slices)."""
    regular_file(index)
    size = index.stat().st_size
    if size < _FOOTER or size > _MAX_INDEX_BYTES:
        raise InputFormatError("not a checkpoint index (size)", file=index, actual=f"{size} bytes")
    data = index.read_bytes()
    entries: dict[str, BundleEntry] = {}
    header: bytes | None = None
    for key, value in _table(data, index):
        if key == b"":
            header = value
            continue
        entries[key.decode("utf-8", "replace")] = _entry(key.decode("utf-8", "replace"), value, index)
    if header is None:
        raise InputFormatError("the checkpoint index has no header entry", file=index)
    shards, endianness = 1, 0
    for field in fields(header, 0, len(header)):
        if field.number == 1:
            shards = read_varint(header, field.value_start)[0]
        elif field.number == 2:
            endianness = read_varint(header, field.value_start)[0]
    if endianness != 0:
        raise UnsupportedFeatureError("a big-endian checkpoint", file=index)
    if not 0 < shards < 100_000:
        raise InputFormatError("the checkpoint says it has no data shard", file=index, actual=shards)
    return TensorBundle(index, entries, shards)


def _table(data: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table."""
    if struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise InputFormatError("not a checkpoint index (no table magic at its end)", file=path)
    footer = len(data) - _FOOTER
    try:
        _, position = _handle(data, footer)  # the metaindex block: not needed
        (index_offset, index_size), _ = _handle(data, position)
        for _, handle in _block(data, index_offset, index_size, path):
            offset, after = read_varint(handle, 0)
            length, _ = read_varint(handle, after)
            yield from _block(data, offset, length, path)
    except (WireFormatError, IndexError, struct.error) as error:
        raise InputFormatError(f"cannot read the checkpoint index: {error}", file=path) from None


def _handle(data: bytes, position: int) -> tuple[tuple[int, int], int]:
    offset, position = read_varint(data, position)
    size, position = read_varint(data, position)
    return (offset, size), position


def _block(data: bytes, offset: int, size: int, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """The entries of the block at ``offset``, checked against its trailer (uncompressed only)."""
    if offset + size + 5 > len(data):
        raise InputFormatError("a block of the checkpoint index lies beyond its end", file=path)
    contents = data[offset : offset + size]
    kind = data[offset + size]
    if kind != 0:
        raise UnsupportedFeatureError("a compressed checkpoint index (TensorFlow writes them uncompressed)", file=path)
    if _masked_crc(data[offset : offset + size + 1]) != struct.unpack_from("<I", data, offset + size + 1)[0]:
        raise InputFormatError("a block of the checkpoint index does not match its checksum", file=path)
    restarts = struct.unpack_from("<I", contents, len(contents) - 4)[0]
    end = len(contents) - 4 * (restarts + 1)
    if end < 0:
        raise InputFormatError("a block of the checkpoint index has more restart points than bytes", file=path)
    position, key = 0, b""
    while position < end:
        shared, position = read_varint(contents, position, end)
        unshared, position = read_varint(contents, position, end)
        length, position = read_varint(contents, position, end)
        if shared > len(key) or position + unshared + length > end:
            raise InputFormatError("an entry of the checkpoint index runs past its block", file=path)
        key = key[:shared] + contents[position : position + unshared]
        position += unshared
        yield key, contents[position : position + length]
        position += length


def _entry(name: str, value: bytes, path: Path) -> BundleEntry:
    dtype, shape, shard, offset, size, crc = 0, [], 0, 0, 0, 0
    try:
        for field in fields(value, 0, len(value)):
            if field.number == 1:
                dtype = read_varint(value, field.value_start)[0]
            elif field.number == 2 and field.wire == WIRE_LEN:
                for dim in fields(value, field.value_start, field.end):
                    if dim.number == 2 and dim.wire == WIRE_LEN:
                        for part in fields(value, dim.value_start, dim.end):
                            if part.number == 1:
                                shape.append(read_varint(value, part.value_start)[0])
                    elif dim.number == 3:
                        raise InputFormatError("a tensor of unknown rank", file=path, tensor=name)
            elif field.number == 3:
                shard = read_varint(value, field.value_start)[0]
            elif field.number == 4:
                offset = read_varint(value, field.value_start)[0]
            elif field.number == 5:
                size = read_varint(value, field.value_start)[0]
            elif field.number == 6:
                crc = struct.unpack_from("<I", value, field.value_start)[0]
            elif field.number == 7:
                raise UnsupportedFeatureError("a partitioned (sliced) variable", file=path, tensor=name)
    except WireFormatError as error:
        raise InputFormatError(f"cannot read the entry: {error}", file=path, tensor=name) from None
    if any(d >= 2**40 for d in shape) or math.prod(shape) >= 2**40:
        raise InputFormatError("a tensor larger than any file", file=path, tensor=name, actual=tuple(shape))
    return BundleEntry(name, dtype, tuple(shape), shard, offset, size, crc)
