"""CKKS backend: sums decrypt within the stated bound; the aggregator's context cannot decrypt;
bad bytes, out-of-range values and over-capacity configurations are refused by name."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tenseal.sealapi as sealapi

import secagg.he
from secagg.errors import (
    HECapacityError,
    HEError,
    HEValueRangeError,
    SecAggError,
    TamperedMessageError,
)
from secagg.he import ckks, wire
from secagg.he.ckks import CKKSParams, CKKSPublicKey, CKKSSecretKey

BOUND = 1.0
MAX_N = 12
PRECISION = 1e-6


@pytest.fixture(scope="module")
def keys() -> tuple[CKKSPublicKey, CKKSSecretKey]:
    return ckks.generate_keys(ckks.choose_params(BOUND, MAX_N, PRECISION))


@pytest.fixture(scope="module")
def aggregator(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> CKKSPublicKey:
    """What the aggregator holds: the public key, rebuilt from its bytes."""
    return ckks.load_public_key(keys[0].serialize())


def _updates(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-BOUND, BOUND, (n, d))
    updates[:, 0], updates[:, -1] = BOUND, -BOUND  # at the bound, both signs
    return updates


@pytest.mark.parametrize(
    ("n", "d"),
    [(1, 1), (2, 2048), (5, 2049), (MAX_N, 3 * 2048 + 17)],
    ids=["one value", "exactly one ciphertext", "one past a ciphertext", "full capacity"],
)
def test_sum_decrypts_within_the_stated_bound(
    keys: tuple[CKKSPublicKey, CKKSSecretKey], aggregator: CKKSPublicKey, n: int, d: int
) -> None:
    public, secret = keys
    assert public.params.slots_per_ciphertext == 2048  # the ids above assume N = 4096
    updates = _updates(n, d, seed=n * 1000 + d)
    total = aggregator.sum_serialized(public.encrypt(u).serialize() for u in updates)
    assert total.summands == n
    wire_total = aggregator.deserialize_vector(total.serialize())  # aggregator -> key holder
    decrypted = secret.decrypt(wire_total)
    assert decrypted.shape == (d,)
    error = np.max(np.abs(decrypted - updates.sum(axis=0)))
    assert error <= public.params.error_bound(n)
    assert public.params.error_bound(n) <= public.capacity.max_abs_error <= PRECISION


def test_released_error_is_the_flooding_noise(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> None:
    """Raw decryption is far more precise than what is released: the difference is fresh
    Gaussian flooding noise of the stated sigma, which hides the RLWE noise (and the key)."""
    public, secret = keys
    params = public.params
    updates = _updates(MAX_N, 2048, seed=7)
    total = public.encrypt(updates[0])
    for update in updates[1:]:
        total += public.encrypt(update)
    exact = updates.sum(axis=0)
    raw_error = np.abs(secret._decrypt_raw(total) - exact)
    assert raw_error.max() <= params.encryption_error_bound(MAX_N)
    released = secret.decrypt(total) - exact
    again = secret.decrypt(total) - exact
    assert np.abs(released).max() <= params.error_bound(MAX_N)
    assert 0.9 < released.std() / params.flood_sigma < 1.1
    assert abs(released.mean()) < 5 * params.flood_sigma / np.sqrt(released.size)
    assert raw_error.max() < params.flood_sigma / 1000
    assert not np.array_equal(released, again)  # fresh noise per decryption


def test_key_refuses_to_release_beyond_its_budget() -> None:
    params = ckks.choose_params(1.0, 2, 1e-4, release_budget=10)
    public, secret = ckks.generate_keys(params)
    secret.decrypt(public.encrypt(np.zeros(6)))
    assert secret.released_values == 6
    with pytest.raises(HECapacityError, match="released 6 of its 10 values"):
        secret.decrypt(public.encrypt(np.zeros(5)))
    secret.decrypt(public.encrypt(np.zeros(4)))
    wrapping = os.urandom(32)
    restored = ckks.load_secret_key(secret.export_sealed(wrapping), wrapping)
    assert restored.released_values == 10  # the count travels with the sealed key
    with pytest.raises(HECapacityError, match="generate a new key pair"):
        restored.decrypt(public.encrypt(np.zeros(1)))


def test_flooding_costs_scale_bits_not_precision() -> None:
    flooded = ckks.choose_params(1.0, 10, 1e-6)
    light = ckks.choose_params(1.0, 10, 1e-6, flood_bits=0, release_budget=1)
    assert flooded.error_bound(10) <= 1e-6 and light.error_bound(10) <= 1e-6
    assert flooded.scale_bits - light.scale_bits >= 30


@pytest.mark.parametrize(
    ("n", "precision"), [(1, 1e-3), (10, 1e-6), (100, 1e-9), (1000, 1e-6), (10_000, 1e-4)]
)
def test_chosen_parameters_meet_precision_and_128_bit_security(n: int, precision: float) -> None:
    params = ckks.choose_params(2.0, n, precision)
    assert params.error_bound(n) <= precision
    assert sum(params.coeff_mod_bit_sizes) <= ckks.MAX_COEFF_BITS_128[params.poly_modulus_degree]
    assert params.capacity.max_summands == n


def test_security_table_matches_seal() -> None:
    for degree, bits in ckks.MAX_COEFF_BITS_128.items():
        assert sealapi.CoeffModulus.MaxBitCount(degree, sealapi.SEC_LEVEL_TYPE.TC128) == bits


def test_modulus_beyond_the_security_table_is_refused() -> None:
    with pytest.raises(HEError, match="128-bit security"):
        CKKSParams(8192, (60, 60, 60, 60), 40, 1.0, 10)


def test_the_aggregators_key_refuses_to_decrypt_with_the_librarys_error(
    keys: tuple[CKKSPublicKey, CKKSSecretKey], aggregator: CKKSPublicKey
) -> None:
    """What the aggregator holds cannot decrypt, and trying says why with a named error (issue
    18, smaller: TenSEAL's public context answered with a bare ValueError)."""
    vector = aggregator.encrypt([0.5, -0.25])
    with pytest.raises(HEError, match="holds no secret key"):
        aggregator.decrypt(vector)
    context = aggregator._context  # TenSEAL's, underneath: no secret key in it either
    assert not context.is_private() and not context.has_secret_key()
    np.testing.assert_allclose(keys[1].decrypt(vector), [0.5, -0.25], atol=1e-6)


def test_public_key_bytes_hold_no_secret_key(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> None:
    public, secret = keys
    with_secret = secret._context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    middle = len(with_secret) // 2
    window = with_secret[middle : middle + 64]  # inside the serialised secret key
    assert window in with_secret
    assert window not in public.serialize()


def test_public_key_frame_carrying_the_secret_key_is_refused(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    public, secret = keys
    leaked = wire.pack_public_key(
        "ckks", public.params.to_fields(), secret._context.serialize(save_secret_key=True)
    )
    with pytest.raises(HEError, match="secret key"):
        ckks.load_public_key(leaked)


def test_public_key_with_other_parameters_is_refused(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    public, _ = keys
    other = CKKSParams(8192, (50, 60), 30, BOUND, MAX_N)
    frame = wire.unpack_public_key(public.serialize(), "ckks")
    forged = wire.pack_public_key("ckks", other.to_fields(), frame.key)
    with pytest.raises(HEError, match="parameters"):
        ckks.load_public_key(forged)


def test_truncated_ciphertext_raises_tampered(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> None:
    public, _ = keys
    blob = public.encrypt(_updates(1, 3000, seed=1)[0]).serialize()
    for cut in (0, 5, 40, len(blob) // 2, len(blob) - 1):
        with pytest.raises(TamperedMessageError):
            public.deserialize_vector(blob[:cut])
    with pytest.raises(TamperedMessageError):
        public.deserialize_vector(blob + b"\0")


def test_altered_ciphertext_raises_a_named_error(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    public, _ = keys
    blob = public.encrypt(_updates(1, 3000, seed=2)[0]).serialize()
    for position in (0, 4, 5, 6, 10, 40, len(blob) // 3, len(blob) - 40, len(blob) - 1):
        altered = bytearray(blob)
        altered[position] ^= 0x01
        with pytest.raises(SecAggError) as caught:
            public.deserialize_vector(bytes(altered))
        assert isinstance(caught.value, TamperedMessageError | HEError)
        if position >= 7:  # past the fixed header: always the digest
            assert isinstance(caught.value, TamperedMessageError)


def test_reframed_malformed_payload_raises_tampered(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    """Even with a recomputed digest, payloads TenSEAL cannot parse are named, not crashes."""
    public, _ = keys
    vector = public.encrypt(_updates(1, 10, seed=3)[0])
    payload = wire.unpack_ciphertext(vector.serialize(), "ckks", public.key_id).payload
    chunk_len = int.from_bytes(payload[4:12], "big")
    for bad in (
        payload[:4] + (5).to_bytes(8, "big") + payload[12:17],  # chunk cut to 5 bytes
        payload[:12] + bytes(chunk_len),  # zeros where the chunk was
        (2).to_bytes(4, "big") + payload[4:],  # wrong chunk count
    ):
        reframed = wire.pack_ciphertext("ckks", public.key_id, 10, 1, bad)
        with pytest.raises(TamperedMessageError):
            public.deserialize_vector(reframed)


def test_ciphertext_under_another_key_is_refused(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    public, secret = keys
    other_public, _ = ckks.generate_keys(public.params)
    foreign = other_public.encrypt([0.1])
    with pytest.raises(HEError, match="encrypted under key"):
        public.deserialize_vector(foreign.serialize())
    with pytest.raises(HEError):
        secret.decrypt(foreign)
    with pytest.raises(HEError, match="different schemes or keys"):
        public.encrypt([0.1]).add_(foreign)


@pytest.mark.parametrize("bad", [BOUND * (1 + 1e-12), -2.0, float("nan"), float("inf")])
def test_out_of_range_values_are_refused_with_value_and_index(
    keys: tuple[CKKSPublicKey, CKKSSecretKey], bad: float
) -> None:
    values = np.zeros(10)
    values[7] = bad
    with pytest.raises(HEValueRangeError, match=r"at index 7 .*protection\.clip_range"):
        keys[0].encrypt(values)


def test_empty_or_multidimensional_input_is_refused(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    with pytest.raises(HEError, match="1-D"):
        keys[0].encrypt([])
    with pytest.raises(HEError, match="1-D"):
        keys[0].encrypt(np.zeros((2, 2)))


def test_unreachable_precision_is_refused_before_any_round() -> None:
    with pytest.raises(HECapacityError, match=r"protection\.he_precision = 1e-14"):
        ckks.choose_params(1.0, 1000, 1e-14)


def test_parameters_whose_sum_overflows_are_refused() -> None:
    # a sum of 10^4 values of 1.0 at scale 2^28 needs 28 + 14 bits, + 1 sign, + 1 because a
    # 40-bit prime is only >= 2^39: 44 > 40
    with pytest.raises(HECapacityError, match=r"protection\.clip_range"):
        CKKSParams(4096, (40, 60), 28, 1.0, 10_000)
    CKKSParams(4096, (40, 60), 28, 1.0, 100)  # 28 + 7 + 2 = 37 bits: fits


def test_adding_beyond_capacity_is_refused() -> None:
    public, _ = ckks.generate_keys(ckks.choose_params(1.0, 2, 1e-5))
    total = public.encrypt([1.0])
    total += public.encrypt([1.0])
    with pytest.raises(HECapacityError, match="capacity of 2"):
        total += public.encrypt([1.0])
    assert total.summands == 2


def test_length_mismatch_is_refused(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> None:
    with pytest.raises(HEError, match="length"):
        keys[0].encrypt([0.1, 0.2]).add_(keys[0].encrypt([0.1]))


def test_sealed_secret_key_round_trip(keys: tuple[CKKSPublicKey, CKKSSecretKey]) -> None:
    public, secret = keys
    wrapping = os.urandom(32)
    sealed = secret.export_sealed(wrapping)
    restored = ckks.load_secret_key(sealed, wrapping)
    assert restored.public_key.key_id == public.key_id
    assert repr(restored) == f"CKKSSecretKey(key_id={public.key_id.hex()})"  # no key material
    vector = public.encrypt([0.75, -0.5])
    np.testing.assert_allclose(restored.decrypt(vector), [0.75, -0.5], atol=1e-6)
    with pytest.raises(TamperedMessageError):
        ckks.load_secret_key(sealed, os.urandom(32))
    with pytest.raises(TamperedMessageError):
        ckks.load_secret_key(sealed[:-1], wrapping)


def test_generic_loader_dispatches_on_the_frame(
    keys: tuple[CKKSPublicKey, CKKSSecretKey],
) -> None:
    loaded = secagg.he.load_public_key(keys[0].serialize())
    assert isinstance(loaded, CKKSPublicKey) and loaded.key_id == keys[0].key_id
    with pytest.raises(HEError, match="unknown HE scheme"):
        secagg.he.backend("bfv")
