"""The attested-HE messages (:mod:`secagg.he.attest`): strict decoders with bounded work
(issue 18 item 3), and the key holder's signed public key, which no aggregator can replace
with its own."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frames import BUDGET, Decoder, check_inflated, check_truncated
from support.work_budget import python_steps

from secagg.crypto.identity import IdentityDirectory
from secagg.errors import TamperedMessageError, UnknownSenderError
from secagg.he import ckks
from secagg.he.attest import (
    Attestation,
    Board,
    DecryptRequest,
    SignedPublicKey,
    Submission,
)

SESSION = b"s" * 32
HEADER = 7 + len(SESSION) + 8  # magic, version, kind | session length, session | round


def _decoders() -> list[Decoder]:
    ciphertext = bytes(range(200))
    signed = SignedPublicKey(3, bytes(300), bytes(64))
    submission = Submission(SESSION, 5, 2, ciphertext, bytes(64))
    board = Board(SESSION, 5, (submission, Submission(SESSION, 5, 4, ciphertext, bytes(64))))
    request = DecryptRequest(SESSION, 5, ((2, bytes(32), bytes(64)),), (1, 2), bytes(96), b"xy")
    s = HEADER
    return [
        Decoder(
            "signed public key", signed.to_bytes(), ((14, 8),), SignedPublicKey.from_bytes, False
        ),
        Decoder(
            "submission", submission.to_bytes(), ((6, 1), (s + 8, 8)), Submission.from_bytes, False
        ),
        Decoder("board", board.to_bytes(), ((6, 1), (s, 4), (s + 76, 8)), Board.from_bytes, False),
        Decoder(
            "attestation",
            Attestation(SESSION, 5, 2, bytes(32), bytes(96)).to_bytes(),
            ((6, 1),),
            Attestation.from_bytes,
            False,
        ),
        Decoder(
            "decrypt request",
            request.to_bytes(),
            ((6, 1), (s, 4), (s + 108, 4), (s + 128 + 96, 8)),
            DecryptRequest.from_bytes,
            False,
        ),
    ]


DECODERS = _decoders()


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.name)
def test_every_message_decodes_to_what_was_encoded(decoder: Decoder) -> None:
    with python_steps(BUDGET):
        message = decoder.decode(decoder.frame)
    assert message.to_bytes() == decoder.frame


@settings(max_examples=100)
@given(data=st.data())
def test_an_inflated_length_or_count_is_refused_by_name_with_bounded_work(
    data: st.DataObject,
) -> None:
    check_inflated(DECODERS, data)


@settings(max_examples=100)
@given(data=st.data())
def test_a_truncated_message_is_refused_by_name_with_bounded_work(data: st.DataObject) -> None:
    check_truncated(DECODERS, data)


def test_a_board_or_request_listing_a_client_twice_is_refused() -> None:
    one = Submission(SESSION, 5, 2, b"c", bytes(64))
    with pytest.raises(TamperedMessageError, match="duplicated or out of order"):
        Board.from_bytes(Board(SESSION, 5, (one, one)).to_bytes())
    entries = ((2, bytes(32), bytes(64)), (2, bytes(32), bytes(64)))
    with pytest.raises(TamperedMessageError, match="duplicated or out of order"):
        DecryptRequest.from_bytes(
            DecryptRequest(SESSION, 5, entries, (), bytes(96), b"").to_bytes()
        )


def test_a_public_key_the_aggregator_made_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aggregator swaps the key holder's public key for one of its own (it would hold the
    secret and read every client's ciphertext): the key holder's signature does not cover
    it, and a forged signature names no registered identity."""
    directory, keys = IdentityDirectory.generate(range(4))
    genuine = ckks.generate_keys(ckks.choose_params(1.0, 4, 1e-6))[0].serialize()
    own_public, own_secret = ckks.generate_keys(ckks.choose_params(1.0, 4, 1e-6))
    signed = SignedPublicKey.sign(keys[0], 0, genuine)
    assert signed.verify(directory, key_holder=0) == genuine
    swapped = SignedPublicKey(0, own_public.serialize(), signed.signature)
    with pytest.raises(TamperedMessageError, match="does not verify"):
        swapped.verify(directory, key_holder=0)
    self_signed = SignedPublicKey.sign(keys[3], 3, own_public.serialize())
    with pytest.raises(UnknownSenderError, match="the key holder is client 0"):
        self_signed.verify(directory, key_holder=0)

    monkeypatch.setattr(type(directory[0]), "verify", lambda self, sig, message, what: None)
    accepted = ckks.load_public_key(swapped.verify(directory, key_holder=0))
    values = np.linspace(-1, 1, 8)  # what a client would encrypt under it: the aggregator reads
    np.testing.assert_allclose(own_secret.decrypt(accepted.encrypt(values)), values, atol=1e-6)
