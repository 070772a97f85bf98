"""Issue 18 item 3: every HE decoder checks each declared length against the bytes present
before it allocates or loops, so a frame costs work in proportion to its own size and a bad
one is refused by name.

Each decoder is fed its own valid frame with one length or count field inflated (its digest
recomputed, as anyone can) and truncations of it; the work is counted in Python steps
(:mod:`support.work_budget`), never timed.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frames import BUDGET, NAMED, Decoder, check_inflated, check_truncated
from support.work_budget import WorkBudgetExceeded, python_steps

import secagg.he
from secagg.crypto import aead
from secagg.errors import TamperedMessageError
from secagg.he import ckks, paillier, wire
from secagg.he.ckks import CKKSPublicKey


def _key_frame_fields(frame: bytes) -> tuple[tuple[int, int], ...]:
    (params_len,) = struct.unpack_from(">I", frame, 7)
    return ((7, 4), (11 + params_len, 8))


_VECTOR = 7 + wire.KEY_ID_BYTES  # ciphertext frames: length u64 | summands u32 | payload u64


def _decoders() -> list[Decoder]:
    ckks_key, _ = ckks.generate_keys(ckks.choose_params(1.0, 4, 1e-6))
    paillier_key, _ = paillier.generate_keys(paillier.choose_params(1.0, 4, 1e-6))
    ckks_frame = ckks_key.encrypt(np.linspace(-1, 1, 2100)).serialize()  # two chunks
    (first,) = struct.unpack_from(">Q", ckks_frame, _VECTOR + 24)
    paillier_frame = paillier_key.encrypt(np.linspace(-1, 1, 100)).serialize()
    vector_fields = ((_VECTOR, 8), (_VECTOR + 12, 8))  # length, payload length
    return [
        Decoder(
            "CKKS public key",
            ckks_key.serialize(),
            _key_frame_fields(ckks_key.serialize()),
            ckks.load_public_key,
            True,
        ),
        Decoder(
            "Paillier public key",
            paillier_key.serialize(),
            _key_frame_fields(paillier_key.serialize()),
            secagg.he.load_public_key,
            True,
        ),
        Decoder(
            "CKKS ciphertext",
            ckks_frame,
            (*vector_fields, (_VECTOR + 20, 4), (_VECTOR + 24, 8), (_VECTOR + 32 + first, 8)),
            ckks_key.deserialize_vector,
            True,
        ),
        Decoder(
            "Paillier ciphertext",
            paillier_frame,
            vector_fields,
            paillier_key.deserialize_vector,
            True,
        ),
    ]


DECODERS = _decoders()


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.name)
def test_every_decoder_reads_its_own_frame(decoder: Decoder) -> None:
    with python_steps(BUDGET):
        decoder.decode(decoder.frame)


@settings(max_examples=120)
@given(data=st.data())
def test_an_inflated_length_or_count_is_refused_by_name_with_bounded_work(
    data: st.DataObject,
) -> None:
    check_inflated(DECODERS, data)


@settings(max_examples=120)
@given(data=st.data())
def test_a_truncated_frame_is_refused_by_name_with_bounded_work(data: st.DataObject) -> None:
    check_truncated(DECODERS, data)


def _listing_every_chunk_first(self: CKKSPublicKey, data: bytes) -> Any:
    """The CKKS decoder before the fix: it listed every chunk's length from the declared
    length before reading a byte of the chunks."""
    frame = wire.unpack_ciphertext(data, "ckks", self.key_id)
    slots = self.params.slots_per_ciphertext
    lengths = [min(slots, frame.length - start) for start in range(0, frame.length, slots)]
    raise TamperedMessageError(f"CKKS ciphertext must hold {len(lengths)} chunks")


def test_an_83_byte_ckks_frame_declaring_2_to_the_44_values_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frame of issue 18: parsing it ran for more than 40 s before the fix."""
    key: CKKSPublicKey = ckks.generate_keys(ckks.choose_params(1.0, 4, 1e-6))[0]
    frame = wire.pack_ciphertext("ckks", key.key_id, 2**44, 1, struct.pack(">II", 1, 0))
    assert len(frame) == 83
    with python_steps(BUDGET), pytest.raises(TamperedMessageError, match="declares"):
        key.deserialize_vector(frame)

    monkeypatch.setattr(CKKSPublicKey, "deserialize_vector", _listing_every_chunk_first)
    with python_steps(BUDGET), pytest.raises(WorkBudgetExceeded):
        key.deserialize_vector(frame)


def test_a_sealed_secret_key_declaring_more_than_it_holds_is_refused_by_name() -> None:
    """Only the wrapping key's holder can write inside a sealed key; it is checked anyway."""
    public, secret = paillier.generate_keys(paillier.choose_params(1.0, 4, 1e-6))
    wrapping = bytes(range(32))
    sealed = secret.export_sealed(wrapping)
    header = sealed[: 7 + wire.KEY_ID_BYTES]
    ad = b"secagg/he/sealed-secret-key/v1" + header
    for declared in (2**64 - 1, 2**44, len(sealed)):
        plaintext = struct.pack(">Q", declared) + public.serialize()
        inflated = header + aead.encrypt(wrapping, plaintext, ad)
        with python_steps(BUDGET), pytest.raises(NAMED):
            paillier.load_secret_key(inflated, wrapping)
    for cut in (0, 6, 7 + wire.KEY_ID_BYTES, len(sealed) // 2, len(sealed) - 1):
        with python_steps(BUDGET), pytest.raises(NAMED):
            paillier.load_secret_key(sealed[:cut], wrapping)


def test_public_key_parameters_nested_beyond_any_depth_are_refused_by_name() -> None:
    """JSON nesting past Python's recursion limit raised a bare RecursionError (and where a
    program raised that limit, the parser can overflow the C stack)."""
    key, _ = ckks.generate_keys(ckks.choose_params(1.0, 4, 1e-6))
    frame = wire.unpack_public_key(key.serialize(), "ckks")
    params = b"[" * 100_000 + b"]" * 100_000
    body = wire.pack_public_key("ckks", {}, frame.key)[: -wire.DIGEST_BYTES]
    forged = body[:7] + struct.pack(">I", len(params)) + params + body[7 + 4 + 2 :]
    forged += hashlib.sha256(forged).digest()
    with pytest.raises(TamperedMessageError, match="nested too deeply"):
        ckks.load_public_key(forged)
