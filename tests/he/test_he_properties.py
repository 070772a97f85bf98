"""Property: decrypt(sum of encryptions) is the plaintext sum within the stated bound.

Random vectors with negatives and values at the bound, up to 50 clients, lengths that span
several ciphertexts and lengths that leave the last one partly empty, for both backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.he import ckks, paillier
from secagg.he.base import HEPublicKey, HESecretKey

BOUND = 1.0
MAX_N = 50


@pytest.fixture(scope="module", params=["ckks", "paillier"])
def scheme(request: pytest.FixtureRequest) -> tuple[HEPublicKey, HESecretKey]:
    if request.param == "ckks":
        return ckks.generate_keys(ckks.choose_params(BOUND, MAX_N, 1e-6))
    return paillier.generate_keys(paillier.choose_params(BOUND, MAX_N, 1e-6, key_bits=2048))


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_decrypted_sum_is_the_plaintext_sum_within_the_bound(
    scheme: tuple[HEPublicKey, HESecretKey], data: st.DataObject
) -> None:
    public, secret = scheme
    slots = public.capacity.slots_per_ciphertext
    n = data.draw(st.integers(1, MAX_N), label="clients")
    ciphertexts = data.draw(st.integers(1, 3), label="ciphertexts")
    fill = data.draw(st.integers(1, slots), label="values in the last ciphertext")
    d = (ciphertexts - 1) * slots + fill
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    updates = rng.uniform(-BOUND, BOUND, (n, d))
    updates[:, 0] = BOUND * rng.choice([-1.0, 1.0])  # at the bound, either sign
    total = public.sum_serialized(public.encrypt(u).serialize() for u in updates)
    assert total.summands == n
    decrypted = secret.decrypt(total)
    assert decrypted.shape == (d,)
    assert np.max(np.abs(decrypted - updates.sum(axis=0))) <= public.params.error_bound(n)
