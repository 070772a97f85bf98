"""HE protection modes: the aggregator adds what it cannot read, the key holder decrypts
attested sums only.

Each test plays one party that misbehaves or one input that is wrong: a tampered ciphertext,
an aggregator that passes one client's ciphertext off as a sum, replays a statement or asks
for two sums of one round, a configuration that cannot hold the sum. Each attack runs twice:
against the defence, and with the defence switched off, where it gains what it asserts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support.he_round import (
    attested_request,
    ciphertext,
    forged_requests,
    padded_with_zeros,
    submit,
    switch_off_the_gate,
    with_summands,
)

from secagg.aggregation import FedAvg
from secagg.config import CHOICES, load_config
from secagg.crypto.identity import PublicIdentity
from secagg.errors import ConfigError, HEError, SecAggError, TamperedMessageError, WrongRoundError
from secagg.he import wire
from secagg.he.attest import Attestation, AttestedAggregator, Submission, _Rounds
from secagg.he.base import HESecretKey
from secagg.protection import MODES, HiddenFedAvg, make_protection
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.he import HESum
from secagg.simulation import run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
IDS = list(range(6))
DIM = 12  # encodings: 11 update values and the weight coordinate


def _he_sum(mode: str, *overrides: str) -> HESum:
    config = load_config(EXAMPLE, [f"protection.mode={mode}", "ledger.enabled=false", *overrides])
    return HESum(config, IDS, DIM, seed=1)


def _encodings(seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    rule = FedAvg()
    return {c: rule.encode(rng.uniform(-2, 2, DIM - 1), rng.uniform(0.1, 1), 1.0) for c in IDS}


def test_the_registry_serves_every_mode_the_configuration_accepts() -> None:
    assert set(MODES) == set(CHOICES["protection.mode"])


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_the_sum_is_exact_within_the_stated_bound_and_over_whoever_sent(mode: str) -> None:
    he_sum = _he_sum(mode)
    encodings = _encodings()
    schedule = DropoutSchedule({"masked_input": [2], "unmasking": [4]})
    outcome = he_sum.sum(encodings, schedule, round_idx=0)
    assert outcome.included == [0, 1, 3, 4, 5]  # dropping after sending costs nothing
    expected = sum(encodings[c] for c in outcome.included)
    assert np.abs(outcome.total - expected).max() <= outcome.error
    assert outcome.error <= 1e-6 * 1.01  # protection.he_precision
    assert outcome.stats["bytes_sent_per_client"] > 0


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_nothing_the_aggregator_holds_can_decrypt(mode: str) -> None:
    he_sum = _he_sum(mode)
    aggregator = he_sum.aggregator(0)
    assert not any(isinstance(v, HESecretKey) for v in vars(aggregator).values())
    with pytest.raises(HEError, match="holds no secret key"):
        aggregator.public_key.decrypt(aggregator.public_key.encrypt(np.zeros(DIM)))
    # The public bytes it was built from are the only thing it ever got from the key holder.
    secret = he_sum.key_holder.secret_key
    assert secret.public_key.serialize() == he_sum.key_holder.public_bytes


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_truncated_or_flipped_submission_costs_its_client_and_not_the_round(mode: str) -> None:
    he_sum = _he_sum(mode)
    encodings = _encodings(1)
    sent = submit(he_sum, encodings)
    flipped = bytearray(sent[3])
    flipped[len(flipped) // 2] ^= 0x01
    sent[3] = bytes(flipped)
    sent[5] = sent[5][:-10]  # truncated
    aggregator = he_sum.aggregator(0)
    for c, message in sent.items():
        aggregator.receive(c, message)
    assert aggregator.included == [0, 1, 2, 4]
    assert set(aggregator.rejected) == {3, 5}
    assert all(why.startswith("TamperedMessageError") for why in aggregator.rejected.values())
    values = he_sum.key_holder.decrypt_request(
        attested_request(he_sum, {c: sent[c] for c in aggregator.included})
    )
    expected = sum(encodings[c] for c in aggregator.included)
    assert np.abs(values - expected).max() <= he_sum.key_holder.params.error_bound(4)


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_victims_ciphertext_padded_with_encryptions_of_zero_is_never_decrypted(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 item 1: the aggregator holds the public key, so it adds t - 1 encryptions of
    zero to the victim's ciphertext and asks the key holder to decrypt that "sum of t"."""
    he_sum = _he_sum(mode)  # t = 4 of 6
    encodings, victim, t = _encodings(4), 2, he_sum.threshold
    sent = submit(he_sum, encodings)
    fake = padded_with_zeros(he_sum, ciphertext(sent[victim]), t).serialize()
    forgeries = forged_requests(he_sum, sent, victim, fake)
    for name, forged in forgeries.items():
        with pytest.raises(SecAggError):  # TamperedMessageError or BelowThresholdError
            he_sum.key_holder.decrypt_request(forged)
            pytest.fail(f"the key holder decrypted the {name!r} forgery")

    switch_off_the_gate(monkeypatch)  # the key holder decrypts any sum it is handed
    recovered = he_sum.key_holder.decrypt_request(forgeries["made-up entries"])
    assert np.abs(recovered - encodings[victim]).max() <= he_sum.public_key.params.error_bound(t)


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_victims_ciphertext_with_its_summand_count_rewritten_is_never_decrypted(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 item 1: the aggregator rewrites the ``summands`` field of the victim's own
    ciphertext to t (only an unkeyed SHA-256 covers it) and sends it as a sum of t."""
    he_sum = _he_sum(mode)
    encodings, victim, t = _encodings(5), 4, he_sum.threshold
    sent = submit(he_sum, encodings)
    fake = with_summands(he_sum, ciphertext(sent[victim]), t)
    forgeries = forged_requests(he_sum, sent, victim, fake)
    for name, forged in forgeries.items():
        with pytest.raises(SecAggError):
            he_sum.key_holder.decrypt_request(forged)
            pytest.fail(f"the key holder decrypted the {name!r} forgery")

    switch_off_the_gate(monkeypatch)
    values = he_sum.key_holder.decrypt_request(forgeries["victim alone"])
    # Paillier decodes every slot as a sum of t, shifted by (t - 1) offsets: undone publicly.
    params = he_sum.public_key.params
    shift = (t - 1) * params.offset / 2**params.fraction_bits if mode == "paillier" else 0.0
    assert np.abs(values + shift - encodings[victim]).max() <= params.error_bound(t)


@pytest.mark.parametrize(
    ("mode", "edit"), [("ckks", "add"), ("paillier", "add"), ("paillier", "flip")]
)
def test_a_ciphertext_altered_with_its_digest_recomputed_costs_only_its_client(
    mode: str, edit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 item 2: whoever relays client 3's ciphertext alters it and recomputes the
    frame's unkeyed digest: adds an encryption of its own (the sum moves where it likes), or
    flips a bit (the decryption is garbage). The signature no longer verifies, so client 3 is
    left out like a dropout and the round decrypts the others' sum."""
    encodings, delta, others = _encodings(6), np.full(DIM, 0.75), [0, 1, 2, 4, 5]

    def altered_in_transit(he_sum: HESum) -> dict[int, bytes]:
        honest = submit(he_sum, encodings)
        target = Submission.from_bytes(honest[3])
        if edit == "add":  # (Paillier decodes one summand's offset fewer: added back)
            key = he_sum.public_key
            offset = key.params.offset / 2**key.params.fraction_bits if mode == "paillier" else 0
            vector = key.deserialize_vector(target.ciphertext)
            altered = vector.add_(key.encrypt(delta - offset)).serialize()
            altered = with_summands(he_sum, altered, 1)
        else:
            frame = wire.unpack_ciphertext(target.ciphertext, mode, he_sum.public_key.key_id)
            payload = bytearray(frame.payload)
            payload[len(payload) // 3] ^= 0x10
            altered = wire.pack_ciphertext(mode, he_sum.public_key.key_id, DIM, 1, bytes(payload))
        return {**honest, 3: replace(target, ciphertext=altered).to_bytes()}

    he_sum = _he_sum(mode)
    sent = altered_in_transit(he_sum)
    aggregator = he_sum.aggregator(0)
    for c, message in sent.items():
        aggregator.receive(c, message)
    assert aggregator.included == others
    assert aggregator.rejected[3].startswith("TamperedMessageError")
    values = he_sum.key_holder.decrypt_request(
        attested_request(he_sum, {c: sent[c] for c in others})
    )
    expected = sum(encodings[c] for c in others)
    assert np.abs(values - expected).max() <= he_sum.public_key.params.error_bound(5)

    # Without the signature check the altered ciphertext is summed: the round is lost.
    monkeypatch.setattr(PublicIdentity, "verify", lambda self, signature, message, what: None)
    he_sum = _he_sum(mode)
    request = attested_request(he_sum, altered_in_transit(he_sum))
    everyone = sum(encodings.values())
    if edit == "add":  # the aggregate lands where the attacker put it
        moved = he_sum.key_holder.decrypt_request(request) - everyone
        np.testing.assert_allclose(moved, delta, atol=he_sum.public_key.params.error_bound(6))
    else:  # the key holder finds garbage: nothing of the round is decrypted
        with pytest.raises(TamperedMessageError, match="altered"):
            he_sum.key_holder.decrypt_request(request)


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_two_attested_sums_of_one_round_are_never_both_decrypted(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aggregator gets two boards of one round attested, all six clients and all but the
    victim: each a genuine sum of at least t = 4, their difference the victim's update. Two
    groups of t co-signers share 2t - n = 2 clients, who must sign twice: two colluders do.
    The key holder decrypts one sum per round."""
    victim, colluders = 2, (1, 5)

    def two_sums(he_sum: HESum, encodings: dict[int, np.ndarray]) -> tuple[bytes, bytes]:
        sent = submit(he_sum, encodings)
        everyone = attested_request(he_sum, sent, cosigners=[0, 1, 3, 5])
        for c in colluders:  # a colluder keeps no record of what it signed
            he_sum._clients.pop(c)
        rest = {c: m for c, m in sent.items() if c != victim}
        return everyone, attested_request(he_sum, rest, cosigners=[1, 2, 4, 5])

    he_sum = _he_sum(mode)
    everyone, rest = two_sums(he_sum, _encodings(7))
    he_sum.key_holder.decrypt_request(everyone)
    with pytest.raises(WrongRoundError, match="strictly increase"):
        he_sum.key_holder.decrypt_request(rest)

    he_sum = _he_sum(mode)
    encodings = _encodings(8)
    everyone, rest = two_sums(he_sum, encodings)
    monkeypatch.setattr(he_sum.key_holder.gate, "_rounds", _Rounds("a forgetful key holder"))
    first = he_sum.key_holder.decrypt_request(everyone)
    monkeypatch.setattr(he_sum.key_holder.gate, "_rounds", _Rounds("a forgetful key holder"))
    difference = first - he_sum.key_holder.decrypt_request(rest)
    bound = he_sum.public_key.params.error_bound(6) + he_sum.public_key.params.error_bound(5)
    assert np.abs(difference - encodings[victim]).max() <= bound


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_an_honest_client_cosigns_one_board_per_round(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aggregator shows client 0 a second board of the same round (all but the victim):
    a second co-signature would let fewer colluders get two sums of one round attested."""
    he_sum = _he_sum(mode)
    sent = submit(he_sum, _encodings(10))
    rest = {c: m for c, m in sent.items() if c != 2}

    def board(messages: dict[int, bytes]) -> bytes:
        aggregator = he_sum.aggregator(0)
        for c, message in messages.items():
            aggregator.receive(c, message)
        return aggregator.board()

    he_sum.client(0).attest(board(sent))
    with pytest.raises(WrongRoundError, match="strictly increase"):
        he_sum.client(0).attest(board(rest))

    monkeypatch.setattr(he_sum.client(0), "_attested", _Rounds("a forgetful client"))
    assert Attestation.from_bytes(he_sum.client(0).attest(board(rest))).round_id == 0


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_submission_from_an_earlier_round_never_counts_in_a_later_one(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aggregator replays client 1's signed ciphertext of round 0 in round 1, where
    client 1 sent nothing: its old update would count twice."""
    he_sum = _he_sum(mode)
    old = submit(he_sum, _encodings(9), round_idx=0)[1]
    aggregator = he_sum.aggregator(1)
    assert not aggregator.receive(1, old)
    assert aggregator.rejected[1].startswith("WrongRoundError")

    monkeypatch.setattr(AttestedAggregator, "_check_statement", lambda self, s, r: None)
    aggregator = he_sum.aggregator(1)
    assert aggregator.receive(1, old) and aggregator.included == [1]


@pytest.mark.parametrize(
    ("mode", "override", "key"),
    [
        ("ckks", "protection.he_precision=1e-30", "protection.he_precision"),
        ("paillier", "protection.he_key_bits=1024", "protection.he_key_bits"),
        ("paillier", "protection.he_precision=1e-30", "protection.he_precision"),
        ("ckks", "protection.he_precision=-1.0", "protection.he_precision must be > 0"),
        ("paillier", "protection.he_workers=0", "protection.he_workers must be >= 1"),
    ],
)
def test_a_configuration_that_cannot_hold_the_sum_is_refused_before_any_round(
    mode: str, override: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        _he_sum(mode, override)


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_weight_liar_is_rejected_under_encryption_as_under_masking(mode: str) -> None:
    config = load_config(EXAMPLE, [f"protection.mode={mode}", "ledger.enabled=false"])
    honest = make_protection(config, FedAvg(), IDS, DIM - 1, seed=1)
    assert isinstance(honest, HiddenFedAvg)

    class Liar(HiddenFedAvg):
        def encode(self, client: int, update: np.ndarray, weight: float, r: int) -> np.ndarray:
            if client:
                return super().encode(client, update, weight, r)
            forged = np.zeros(update.size + 1)
            forged[-1] = -0.5 * self.clip  # declares its weight, encodes a negative one
            return forged

    liar = Liar(mode, honest.rule, honest.secure_sum, honest.clip)
    updates = {c: np.full(DIM - 1, 1e-3) for c in IDS}
    outcome = liar.aggregate(updates, dict.fromkeys(IDS, 10.0), DropoutSchedule({}), 0)
    assert outcome.update is None
    assert outcome.aborted_reason.startswith("AggregateRejectedError")


def test_hospitals_under_ckks_and_paillier_reach_the_plaintext_model() -> None:
    # Same seed, same dropouts: only the encryption's error separates the models.
    base = ["run.rounds=4", "ledger.enabled=false"]
    plain = run_simulation(load_config(EXAMPLE, [*base, "protection.mode=none"]))
    for mode in ("ckks", "paillier"):
        result = run_simulation(load_config(EXAMPLE, [*base, f"protection.mode={mode}"]))
        assert not any(r.aborted for r in result.rounds)
        assert [r.included for r in result.rounds] == [r.included for r in plain.rounds]
        assert [r.epsilon for r in result.rounds] == [r.epsilon for r in plain.rounds]
        np.testing.assert_allclose(result.params, plain.params, atol=1e-4)
        assert abs(result.final["accuracy"] - plain.final["accuracy"]) <= 0.005
        stats = result.rounds[-1].protection
        assert stats["bytes_sent_per_client"] > 4 * plain.params.size  # ciphertexts
        assert {"server_seconds", "key_holder_seconds", "client_seconds"} <= set(stats)
