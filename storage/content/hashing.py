"""A SHA-256 whose running state can be saved and resumed in another process.

An upload's chunks may land on different replicas; each replica continues the hash from
the state the previous one stored in the database (as Distribution's resumable blob writer
does), so committing never re-reads the blob. Python's ``hashlib`` cannot export its state,
so this drives OpenSSL's SHA-256 (the same ``libcrypto`` ``hashlib`` uses) through ctypes,
on a ``SHA256_CTX`` whose bytes are the state (112 bytes, stable since OpenSSL 1.0).
ctypes releases the GIL during each call, like ``hashlib`` does on large buffers.

Where libcrypto cannot be loaded, ``resumable_sha256()`` returns None and callers fall back
to re-hashing the upload at commit (``ContentDriver.read_upload``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib

_CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit each)


def _load():
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for fn in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
                getattr(lib, fn).restype = ctypes.c_int
            lib.SHA256_Update.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
            # self-test against hashlib before trusting it
            ctx = ctypes.create_string_buffer(_CTX_SIZE)
            out = ctypes.create_string_buffer(32)
            lib.SHA256_Init(ctx)
            lib.SHA256_Update(ctx, b"berth", 5)
            lib.SHA256_Final(out, ctx)
            if out.raw == hashlib.sha256(b"berth").digest():
                return lib
        except (OSError, AttributeError):
            continue
    return None


_LIB = _load()


class ResumableSHA256:
    """``update``/``hexdigest`` like hashlib, plus ``state()`` → bytes and ``from_state``."""

    __slots__ = ("_ctx",)

    def __init__(self, state: bytes | None = None) -> None:
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
        if state is None:
            _LIB.SHA256_Init(self._ctx)
        else:
            if len(state) != _CTX_SIZE:
                raise ValueError("not a SHA-256 state")
            ctypes.memmove(self._ctx, state, _CTX_SIZE)

    @classmethod
    def from_state(cls, state: bytes) -> "ResumableSHA256":
        return cls(state)

    def update(self, data: bytes) -> None:
        _LIB.SHA256_Update(self._ctx, data, len(data))

    def state(self) -> bytes:
        return self._ctx.raw

    def copy(self) -> "ResumableSHA256":
        return ResumableSHA256(self._ctx.raw)

    def digest(self) -> bytes:
        ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)  # finalising a copy keeps this one usable
        out = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(out, ctx)
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()


def resumable_sha256(state: bytes | None = None) -> ResumableSHA256 | None:
    """A resumable SHA-256 (from ``state`` when given), or None where libcrypto is unavailable."""
    return ResumableSHA256(state) if _LIB is not None else None
