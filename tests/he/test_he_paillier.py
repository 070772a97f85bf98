"""Paillier backend: packed fixed-point sums are exact up to rounding, the packing never carries,
and bad keys, bytes, values and capacities are refused by name.

2048-bit encryption costs ~10 ms per ciphertext, so vectors here are a few ciphertexts long."""

from __future__ import annotations

import math
import os

import gmpy2
import numpy as np
import phe
import pytest

import secagg.he
from secagg.errors import (
    CryptoError,
    HECapacityError,
    HEError,
    HEValueRangeError,
    SecAggError,
    TamperedMessageError,
)
from secagg.he import paillier, wire
from secagg.he.paillier import PaillierParams, PaillierPublicKey, PaillierSecretKey

BOUND = 1.0
MAX_N = 6
PRECISION = 1e-6


@pytest.fixture(scope="module")
def keys() -> tuple[PaillierPublicKey, PaillierSecretKey]:
    return paillier.generate_keys(paillier.choose_params(BOUND, MAX_N, PRECISION))


@pytest.fixture(scope="module")
def aggregator(keys: tuple[PaillierPublicKey, PaillierSecretKey]) -> PaillierPublicKey:
    """What the aggregator holds: the public key, rebuilt from its bytes."""
    return paillier.load_public_key(keys[0].serialize())


def _updates(n: int, d: int, seed: int, bound: float = BOUND) -> np.ndarray:
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-bound, bound, (n, d))
    updates[:, 0], updates[:, -1] = bound, -bound
    return updates


def test_layout_of_the_default_parameters() -> None:
    params = paillier.choose_params(BOUND, MAX_N, PRECISION)
    # f = 22: 6 · 2^-23 ≈ 7.2e-7 <= 1e-6; offset 2^22, a sum of 6 slots is < 6 · 2^23 < 2^26
    assert (params.fraction_bits, params.offset, params.slot_bits) == (22, 2**22, 26)
    assert params.slots_per_ciphertext == 2047 // 26 == 78
    assert 2 * params.offset * MAX_N < 2**params.slot_bits
    assert params.slots_per_ciphertext * params.slot_bits <= params.key_bits - 1
    assert params.error_bound(MAX_N) <= PRECISION


@pytest.mark.parametrize(
    ("n", "d"),
    [(1, 1), (3, 78), (4, 79), (MAX_N, 2 * 78 + 5)],
    ids=["one value", "exactly one ciphertext", "one past a ciphertext", "full capacity"],
)
def test_sum_decrypts_within_the_stated_bound(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
    aggregator: PaillierPublicKey,
    n: int,
    d: int,
) -> None:
    public, secret = keys
    updates = _updates(n, d, seed=n * 1000 + d)
    total = aggregator.sum_serialized(public.encrypt(u).serialize() for u in updates)
    assert total.summands == n
    decrypted = secret.decrypt(aggregator.deserialize_vector(total.serialize()))
    assert decrypted.shape == (d,)
    assert np.max(np.abs(decrypted - updates.sum(axis=0))) <= public.params.error_bound(n)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["all +bound", "all -bound"])
@pytest.mark.parametrize("bound", [1.0, 2.5])
def test_sums_at_the_bound_unpack_exactly(sign: float, bound: float) -> None:
    """The extreme slot sums (0 and 2·offset·n) neither borrow nor carry into neighbours."""
    params = paillier.choose_params(bound, 5, 1e-4)
    public, secret = paillier.generate_keys(params)
    d = params.slots_per_ciphertext + 1
    total = public.encrypt(np.full(d, sign * bound))
    for _ in range(params.max_summands - 1):
        total += public.encrypt(np.full(d, sign * bound))
    np.testing.assert_array_equal(secret.decrypt(total), np.full(d, sign * 5 * bound))


def test_alternating_extremes_do_not_disturb_neighbouring_slots(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    public, secret = keys
    pattern = np.where(np.arange(80) % 2 == 0, BOUND, -BOUND)
    total = public.encrypt(pattern)
    for _ in range(MAX_N - 1):
        total += public.encrypt(pattern)
    np.testing.assert_array_equal(secret.decrypt(total), MAX_N * pattern)


def test_non_dyadic_bound_is_within_the_error_bound() -> None:
    params = paillier.choose_params(0.3, 4, 1e-5)
    public, secret = paillier.generate_keys(params)
    total = public.sum_serialized(public.encrypt(np.full(3, 0.3)).serialize() for _ in range(4))
    assert np.max(np.abs(secret.decrypt(total) - 1.2)) <= params.error_bound(4)


def test_parallel_encryption_matches(keys: tuple[PaillierPublicKey, PaillierSecretKey]) -> None:
    public, secret = keys
    values = _updates(1, 2 * 78 + 1, seed=5)[0]
    vector = public.with_workers(2).encrypt(values)  # spawned process pool
    assert len(vector.ciphertexts) == 3
    error = np.max(np.abs(secret.decrypt(vector) - values))
    assert error <= public.params.error_bound(1)


def test_aggregator_cannot_decrypt(
    keys: tuple[PaillierPublicKey, PaillierSecretKey], aggregator: PaillierPublicKey
) -> None:
    public, secret = keys
    with pytest.raises(HEError, match="holds no secret key"):
        aggregator.decrypt(aggregator.encrypt([0.5]))
    key = secret._key
    blob = aggregator.serialize()
    width = public.params.key_bits // 16
    for factor in (key.p, key.q):
        assert factor.to_bytes(width, "big") not in blob
    assert repr(secret) == f"PaillierSecretKey(key_id={public.key_id.hex()})"


def test_keys_below_2048_bits_are_refused() -> None:
    with pytest.raises(HEError, match=r"protection\.he_key_bits must be at least 2048"):
        PaillierParams(1024, 20, 1.0, 10)
    with pytest.raises(HEError, match="2048"):
        paillier.choose_params(1.0, 10, 1e-6, key_bits=1536)


def test_truncated_ciphertext_raises_tampered(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    public, _ = keys
    blob = public.encrypt(_updates(1, 100, seed=1)[0]).serialize()
    for cut in (0, 5, 40, len(blob) // 2, len(blob) - 1):
        with pytest.raises(TamperedMessageError):
            public.deserialize_vector(blob[:cut])
    with pytest.raises(TamperedMessageError):
        public.deserialize_vector(blob + b"\0")


def test_altered_ciphertext_raises_a_named_error(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    public, _ = keys
    blob = public.encrypt(_updates(1, 100, seed=2)[0]).serialize()
    for position in (0, 4, 5, 6, 10, 30, 60, len(blob) // 2, len(blob) - 1):
        altered = bytearray(blob)
        altered[position] ^= 0x80
        with pytest.raises(SecAggError) as caught:
            public.deserialize_vector(bytes(altered))
        assert isinstance(caught.value, TamperedMessageError | HEError)
        if position >= 7:
            assert isinstance(caught.value, TamperedMessageError)


def test_reframed_invalid_ciphertexts_are_caught(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    """With a recomputed digest: non-units are refused on parsing, and a ciphertext whose
    plaintext does not fit the packing is refused on decryption."""
    public, secret = keys
    width, n = public.params.ciphertext_bytes, public.modulus
    for bad in (0, n, n * n):  # not units mod n²
        payload = bad.to_bytes(width, "big")
        with pytest.raises(TamperedMessageError):
            public.deserialize_vector(
                wire.pack_ciphertext("paillier", public.key_id, 3, 1, payload)
            )
    overflowing = phe.PaillierPublicKey(n).raw_encrypt(1 << (public.params.slot_bits * 3))
    payload = overflowing.to_bytes(width, "big")
    vector = public.deserialize_vector(
        wire.pack_ciphertext("paillier", public.key_id, 3, 1, payload)
    )
    with pytest.raises(TamperedMessageError, match="beyond its 3 slots"):
        secret.decrypt(vector)
    too_big_slot = phe.PaillierPublicKey(n).raw_encrypt(2 * public.params.offset + 1)
    payload = too_big_slot.to_bytes(width, "big")
    vector = public.deserialize_vector(
        wire.pack_ciphertext("paillier", public.key_id, 3, 1, payload)
    )
    with pytest.raises(TamperedMessageError, match="exceeds what 1 summands"):
        secret.decrypt(vector)


def test_ciphertext_under_another_key_is_refused(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    public, secret = keys
    other_public, _ = paillier.generate_keys(public.params)
    foreign = other_public.encrypt([0.1])
    with pytest.raises(HEError, match="encrypted under key"):
        public.deserialize_vector(foreign.serialize())
    with pytest.raises(HEError):
        secret.decrypt(foreign)


@pytest.mark.parametrize("bad", [math.nextafter(BOUND, 2.0), -1.5, float("nan"), float("-inf")])
def test_out_of_range_values_are_refused_with_value_and_index(
    keys: tuple[PaillierPublicKey, PaillierSecretKey], bad: float
) -> None:
    values = np.zeros(10)
    values[3] = bad
    with pytest.raises(HEValueRangeError, match=r"at index 3 .*protection\.clip_range"):
        keys[0].encrypt(values)


def test_precision_below_float64_resolution_is_refused() -> None:
    with pytest.raises(HECapacityError, match=r"protection\.he_precision = 1e-12"):
        paillier.choose_params(1.0, 10**6, 1e-12)
    with pytest.raises(HECapacityError, match="float64"):
        PaillierParams(2048, 60, 1.0, 10)


def test_adding_beyond_capacity_is_refused(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    public, _ = keys
    total = public.encrypt([1.0])
    for _ in range(MAX_N - 1):
        total += public.encrypt([1.0])
    with pytest.raises(HECapacityError, match=f"capacity of {MAX_N}"):
        total += public.encrypt([1.0])
    assert total.summands == MAX_N
    reframed = wire.pack_ciphertext(
        "paillier",
        public.key_id,
        1,
        MAX_N + 1,
        wire.unpack_ciphertext(total.serialize(), "paillier", public.key_id).payload,
    )
    with pytest.raises(HECapacityError):
        public.deserialize_vector(reframed)


def test_raw_sum_equals_phe_encrypted_number_sum(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    """Our raw product mod n² is exactly phe's EncryptedNumber addition."""
    public, _ = keys
    a, b = public.encrypt([0.5]), public.encrypt([-0.25])
    phe_key = phe.PaillierPublicKey(public.modulus)
    expected = phe.EncryptedNumber(phe_key, int(a.ciphertexts[0])) + phe.EncryptedNumber(
        phe_key, int(b.ciphertexts[0])
    )
    a += b
    assert gmpy2.mpz(expected.ciphertext(be_secure=False)) == a.ciphertexts[0]


def test_sealed_secret_key_round_trip(keys: tuple[PaillierPublicKey, PaillierSecretKey]) -> None:
    public, secret = keys
    wrapping = os.urandom(32)
    sealed = secret.export_sealed(wrapping)
    key = secret._key
    assert key.p.to_bytes(public.params.key_bits // 8, "big") not in sealed
    restored = paillier.load_secret_key(sealed, wrapping)
    vector = public.encrypt([0.75, -0.5])
    np.testing.assert_allclose(restored.decrypt(vector), [0.75, -0.5], atol=1e-6)
    with pytest.raises(TamperedMessageError):
        paillier.load_secret_key(sealed, os.urandom(32))
    with pytest.raises(CryptoError, match="AES-GCM keys"):
        paillier.load_secret_key(sealed, os.urandom(7))


def test_generic_loader_dispatches_on_the_frame(
    keys: tuple[PaillierPublicKey, PaillierSecretKey],
) -> None:
    loaded = secagg.he.load_public_key(keys[0].serialize())
    assert isinstance(loaded, PaillierPublicKey) and loaded.key_id == keys[0].key_id
    with pytest.raises(HEError, match="scheme 'paillier', expected 'ckks'"):
        secagg.he.backend("ckks").load_public_key(keys[0].serialize())
