"""Dovecot's {CRAM-MD5} password scheme.

The stored value is the hex of the MD5 chaining state after one block of the HMAC-MD5
outer pad, followed by the state after the inner pad, each word little-endian. hashlib
does not expose MD5's internal state, so the compression function is written out here.
"""

import hashlib
import hmac
import math
import struct

PREFIX = "{CRAM-MD5}"

_SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
_CONSTANTS = [int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]
_INITIAL_STATE = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MASK = 0xFFFFFFFF


def _rotate_left(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        f = (f + a + _CONSTANTS[i] + words[g]) & _MASK
        a, d, c = d, c, b
        b = (b + _rotate_left(f, _SHIFTS[i])) & _MASK
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def cram_md5_hash(password: str) -> str:
    """The {CRAM-MD5} value Dovecot stores for this password (UTF-8 encoded)."""
    key = password.encode("utf-8")
    if len(key) > 64:
        key = hashlib.md5(key).digest()  # noqa: S324 -- the scheme is defined this way
    key = key.ljust(64, b"\0")
    inner = _compress(_INITIAL_STATE, bytes(k ^ 0x36 for k in key))
    outer = _compress(_INITIAL_STATE, bytes(k ^ 0x5C for k in key))
    return PREFIX + struct.pack("<8I", *outer, *inner).hex()


def is_cram_md5(value: str) -> bool:
    digest = value[len(PREFIX) :]
    return value.startswith(PREFIX) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def verify_cram_md5(password: str, stored: str) -> bool:
    """Constant-time comparison of a password with a stored {CRAM-MD5} value."""
    if not is_cram_md5(stored):
        return False
    return hmac.compare_digest(cram_md5_hash(password).encode(), stored.encode())
