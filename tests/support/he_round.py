"""An attested HE round driven step by step in memory, and the attacker's tools against it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from secagg.he import wire
from secagg.he.attest import DecryptRequest, KeyHolderGate, Submission, digest
from secagg.he.base import EncryptedVector
from secagg.protection.he import HESum


def submit(
    he_sum: HESum, encodings: Mapping[int, np.ndarray], round_idx: int = 0
) -> dict[int, bytes]:
    """Every client's signed ciphertext of ``round_idx``."""
    return {c: he_sum.client(c).submit(round_idx, v) for c, v in sorted(encodings.items())}


def attested_request(
    he_sum: HESum,
    sent: Mapping[int, bytes],
    round_idx: int = 0,
    cosigners: Iterable[int] | None = None,
) -> bytes:
    """An honest aggregator's decrypt request for ``sent``, co-signed by ``cosigners``
    (default: everyone whose ciphertext is in it)."""
    aggregator = he_sum.aggregator(round_idx)
    for c, message in sent.items():
        aggregator.receive(c, message)
    board = aggregator.board()
    for c in aggregator.included if cosigners is None else cosigners:
        aggregator.receive_attestation(c, he_sum.client(c).attest(board))
    return aggregator.decrypt_request()


def ciphertext(message: bytes) -> bytes:
    return Submission.from_bytes(message).ciphertext


def padded_with_zeros(he_sum: HESum, victim_ciphertext: bytes, summands: int) -> EncryptedVector:
    """The victim's ciphertext plus ``summands - 1`` encryptions of zero the aggregator made
    with the public key: a "sum of ``summands``" that decrypts to the victim's update."""
    key = he_sum.public_key
    total = key.deserialize_vector(victim_ciphertext)
    for _ in range(summands - 1):
        total.add_(key.encrypt(np.zeros(he_sum.dim)))
    return total


def with_summands(he_sum: HESum, frame: bytes, summands: int) -> bytes:
    """``frame`` claiming ``summands`` summands, its unkeyed digest recomputed."""
    parsed = wire.unpack_ciphertext(frame, he_sum.mode, he_sum.public_key.key_id)
    return wire.pack_ciphertext(
        he_sum.mode, he_sum.public_key.key_id, parsed.length, summands, parsed.payload
    )


def forged_requests(
    he_sum: HESum, sent: Mapping[int, bytes], victim: int, fake: bytes
) -> dict[str, bytes]:
    """The best requests an aggregator can make around the sum ``fake`` of its own making."""
    t = he_sum.threshold
    honest = DecryptRequest.from_bytes(attested_request(he_sum, sent))
    victims = [e for e in honest.entries if e[0] == victim]
    others = [c for c in he_sum.client_ids if c != victim][: t - 1]
    made_up = tuple(
        (c, digest(he_sum.public_key.encrypt(np.zeros(he_sum.dim)).serialize()), bytes(64))
        for c in others
    )
    return {
        # the victim's signed digest, t - 1 digests of its own zeros, no co-signature
        "made-up entries": replace(
            honest, entries=tuple(sorted(victims + list(made_up))), signers=(), total=fake
        ).to_bytes(),
        # a genuinely attested list of t or more, with its own sum in place of the real one
        "borrowed attestation": replace(honest, total=fake).to_bytes(),
        # the victim's signed digest alone, claimed as a sum of t
        "victim alone": replace(honest, entries=tuple(victims), signers=(), total=fake).to_bytes(),
    }


def switch_off_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key holder as it was before attestation: decrypt any sum it is handed."""

    def verify(self: KeyHolderGate, data: bytes) -> tuple[None, bytes]:
        return None, DecryptRequest.from_bytes(data).total

    def admit(self: KeyHolderGate, attested: object, total: bytes, key: Any) -> EncryptedVector:
        return key.deserialize_vector(total)

    monkeypatch.setattr(KeyHolderGate, "verify_request", verify)
    monkeypatch.setattr(KeyHolderGate, "admit", admit)
