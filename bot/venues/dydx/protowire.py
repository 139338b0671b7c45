"""The two protobuf wire primitives the hand-written encoders share (DYDX_V4.md §6)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(varint(n) for n in range(1 << 14))  # every length a tx piece really has


def length(payload: bytes) -> bytes:
    """The varint length prefix of a length-delimited field."""
    n = len(payload)
    return _SMALL_VARINTS[n] if n < 16384 else varint(n)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, varint length, payload."""
    return tag + length(payload) + payload
