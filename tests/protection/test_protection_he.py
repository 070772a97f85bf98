"""HE protection modes: the aggregator adds what it cannot read, the key holder decrypts sums only.

Each test plays one party that misbehaves or one input that is wrong: a tampered ciphertext,
an aggregator that misreports who it included, a configuration that cannot hold the sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.aggregation import FedAvg
from secagg.config import CHOICES, load_config
from secagg.errors import BelowThresholdError, ConfigError, ProtocolError
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
    aggregator = he_sum.aggregator
    assert not any(isinstance(v, HESecretKey) for v in vars(aggregator).values())
    assert not hasattr(aggregator.public_key, "decrypt")
    # The public bytes it was built from are the only thing it ever got from the key holder.
    secret = he_sum.key_holder.secret_key
    assert secret.public_key.serialize() == he_sum.key_holder.public_bytes


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_a_tampered_ciphertext_costs_its_client_and_not_the_round(mode: str) -> None:
    he_sum = _he_sum(mode)
    encodings = _encodings(1)
    blobs = {c: he_sum.client_key.encrypt(v).serialize() for c, v in encodings.items()}
    flipped = bytearray(blobs[3])
    flipped[len(flipped) // 2] ^= 0x01
    blobs[3] = bytes(flipped)
    blobs[5] = blobs[5][:-10]  # truncated
    total, included, rejected = he_sum.aggregator.sum(blobs)
    assert included == [0, 1, 2, 4]
    assert set(rejected) == {"3", "5"}
    assert all(reason.startswith("TamperedMessageError") for reason in rejected.values())
    values = he_sum.key_holder.decrypt_sum(total, len(included))
    expected = sum(encodings[c] for c in included)
    assert np.abs(values - expected).max() <= he_sum.key_holder.params.error_bound(4)


@pytest.mark.parametrize("mode", ["ckks", "paillier"])
def test_the_key_holder_decrypts_only_the_announced_sum_of_at_least_t(mode: str) -> None:
    he_sum = _he_sum(mode)  # t = 0.6 * 6 -> 4
    key = he_sum.client_key
    blobs = {c: key.encrypt(v).serialize() for c, v in _encodings(2).items()}
    total, _, _ = he_sum.aggregator.sum(blobs)
    with pytest.raises(ProtocolError, match="6 summand"):
        he_sum.key_holder.decrypt_sum(total, 5)  # an aggregator misreporting who is in it
    pair, _, _ = he_sum.aggregator.sum({c: blobs[c] for c in (0, 1)})
    with pytest.raises(BelowThresholdError, match="sum of 2 client"):
        he_sum.key_holder.decrypt_sum(pair, 2)  # too few to hide behind
    assert he_sum.key_holder.decrypt_sum(total, 6).shape == (DIM,)


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
