"""The mask PRG: deterministic per key, independent across keys, exact modular arithmetic."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto import prg
from secagg.errors import CryptoError

BITS = [1, 7, 16, 31, 32, 33, 48, 63, 64]


def test_same_key_gives_the_same_mask() -> None:
    key = os.urandom(16)
    np.testing.assert_array_equal(prg.expand(key, 1000, 32), prg.expand(key, 1000, 32))


def test_different_keys_give_different_masks() -> None:
    a, b = prg.expand(os.urandom(16), 1000, 32), prg.expand(os.urandom(16), 1000, 32)
    assert np.count_nonzero(a == b) < 5  # ~1000 / 2^32 expected collisions


@pytest.mark.parametrize("bits", BITS)
def test_output_dtype_and_range(bits: int) -> None:
    mask = prg.expand(os.urandom(16), 5000, bits)
    assert mask.dtype == (np.uint32 if bits <= 32 else np.uint64)
    assert int(mask.max()) < 2**bits
    if bits >= 8:  # the top bit of the range is used: values are not truncated short
        assert int(mask.max()) >= 2 ** (bits - 1)


def test_mask_is_the_aes_ctr_keystream_read_as_little_endian_words() -> None:
    key = os.urandom(16)
    stream = bytearray(4 * 100)
    prg.fill_keystream(key, bytes(len(stream)), stream)
    np.testing.assert_array_equal(prg.expand(key, 100, 32), np.frombuffer(stream, dtype="<u4"))


def test_prefix_property_makes_chunking_invisible() -> None:
    # The stream for a longer vector starts with the stream for a shorter one, whatever the
    # generator's internal chunk size.
    key = os.urandom(32)
    long = np.zeros(10_000, np.uint64)
    prg.MaskGenerator(64, chunk_bytes=24).add(long, key)
    np.testing.assert_array_equal(long[:333], prg.expand(key, 333, 64))


@settings(max_examples=40, deadline=None)
@given(
    bits=st.sampled_from(BITS),
    dim=st.integers(1, 3000),
    chunk_words=st.integers(1, 700),
    n_add=st.integers(0, 4),
    n_sub=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_apply_equals_the_modular_sum_of_expanded_masks(
    bits: int, dim: int, chunk_words: int, n_add: int, n_sub: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    dtype = prg.word_dtype(bits)
    start = rng.integers(0, 2**bits, dim, dtype=np.uint64, endpoint=False).astype(dtype)
    adds = [os.urandom(16) for _ in range(n_add)]
    subs = [os.urandom(16) for _ in range(n_sub)]
    expected = [int(v) for v in start]
    for key in adds:
        expected = [e + int(m) for e, m in zip(expected, prg.expand(key, dim, bits), strict=True)]
    for key in subs:
        expected = [e - int(m) for e, m in zip(expected, prg.expand(key, dim, bits), strict=True)]
    acc = np.empty(dim, dtype)
    generator = prg.MaskGenerator(bits, chunk_bytes=chunk_words * dtype.itemsize)
    generator.apply(acc, add=adds, subtract=subs, start=start, reduce=True)
    assert [int(v) for v in acc] == [e % 2**bits for e in expected]


@pytest.mark.parametrize("bits", [13, 32, 64])
def test_pairwise_masks_cancel(bits: int) -> None:
    # u adds PRG(s_uv), v subtracts it: the sum of the two masked vectors is the plain sum.
    rng = np.random.default_rng(0)
    dtype = prg.word_dtype(bits)
    x_u = rng.integers(0, 2**bits, 777, dtype=np.uint64, endpoint=False).astype(dtype)
    x_v = rng.integers(0, 2**bits, 777, dtype=np.uint64, endpoint=False).astype(dtype)
    s_uv = os.urandom(16)
    generator = prg.MaskGenerator(bits)
    y_u, y_v = x_u.copy(), x_v.copy()
    generator.add(y_u, s_uv)
    generator.subtract(y_v, s_uv)
    prg.reduce_in_place(y_u, bits)
    prg.reduce_in_place(y_v, bits)
    assert not np.array_equal(y_u, x_u)
    total = y_u + y_v
    prg.reduce_in_place(total, bits)
    plain = x_u + x_v
    prg.reduce_in_place(plain, bits)
    np.testing.assert_array_equal(total, plain)


def test_accumulator_must_match_the_word_type() -> None:
    generator = prg.MaskGenerator(32)
    with pytest.raises(CryptoError, match="uint32"):
        generator.add(np.zeros(10, np.uint64), os.urandom(16))
    with pytest.raises(CryptoError, match="contiguous 1-D"):
        generator.add(np.zeros((2, 5), np.uint32), os.urandom(16))
    read_only = np.zeros(10, np.uint32)
    read_only.flags.writeable = False
    with pytest.raises(CryptoError, match="read-only"):
        generator.add(read_only, os.urandom(16))


@pytest.mark.parametrize("bad", [0, 65, True])
def test_bits_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(CryptoError, match="bits"):
        prg.word_dtype(bad)


def test_key_length_is_checked() -> None:
    with pytest.raises(CryptoError, match="16 or 32"):
        prg.expand(b"short", 10, 32)
