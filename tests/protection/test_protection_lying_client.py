"""What lying clients can do to the mean under every hiding mode, measured through the real
protection objects (masking rounds, CKKS and Paillier key holders).

The server sees only the sum of the encodings, so its checks accept exactly the sums honest
clients could produce (:mod:`secagg.aggregation.fedavg`): the weight coordinate equal to the
declared total, the mean in [-c, c] (and, under norm bounding, in the ``max_norm`` ball). A
liar that knows the honest updates (the worst case) encodes ``target * W - honest sum`` and
puts the mean on any target inside that set, whatever its weight; nothing on the sum shows
that its own vector was out of range. Each liar below runs its own client code: the honest
client library clamps (masking) or refuses (HE) out-of-range values, a liar does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import phe
import pytest
import tenseal as ts

from secagg.aggregation import FedAvg, NormBound, rule_from_config
from secagg.config import load_config
from secagg.crypto.identity import IdentityKey
from secagg.he.attest import AttestingClient
from secagg.he.base import EncryptedVector, HEPublicKey
from secagg.he.ckks import CKKSEncryptedVector, CKKSPublicKey
from secagg.he.paillier import PaillierEncryptedVector, PaillierPublicKey
from secagg.protection import HiddenFedAvg, hiding_rule
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.he import HESum
from secagg.protection.masking import MaskingSum

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospitals.toml"
IDS = list(range(10))
DIM = 8  # update length; every encoding has DIM + 1 values (the weight coordinate last)
#: One large hospital, six of a tenth its size and three tiny clinics: one clinic's weight
#: share w/W is 16 / 8048 = 0.002, so an honest clinic moves the mean by at most 0.002 c.
COUNTS = {0: 5000.0, **dict.fromkeys(range(1, 7), 500.0), **dict.fromkeys((7, 8, 9), 16.0)}
NO_DROPOUTS = DropoutSchedule({})
MODES = ["secagg+", "ckks", "paillier"]


class _Liars(HiddenFedAvg):
    """FedAvg whose ``liars`` send ``forged`` (split evenly) instead of their encodings."""

    liars: tuple[int, ...] = ()
    forged: np.ndarray | None = None

    def encode(self, client: int, update: np.ndarray, weight: float, round_idx: int) -> np.ndarray:
        if client in self.liars and self.forged is not None:
            return self.forged / len(self.liars)
        return super().encode(client, update, weight, round_idx)

    def aim(self, liars: tuple[int, ...], updates: Mapping[int, np.ndarray], target: float) -> None:
        """Forge the liars' encodings so that the mean lands on ``target`` in every coordinate
        (+target on even, -target on odd ones), knowing every honest update: the worst case.
        Their weight coordinates stay honest, so the weight check passes."""
        declared = self.declared_weights(COUNTS)
        honest = sum(
            HiddenFedAvg.encode(self, c, updates[c], declared[c], 0) for c in IDS if c not in liars
        )
        assert isinstance(honest, np.ndarray)
        forged = np.empty(DIM + 1)
        forged[:-1] = _signs() * target * sum(declared.values()) - honest[:-1]
        forged[-1] = sum(declared[c] for c in liars) * self.clip
        self.liars, self.forged = liars, forged

    def honest(self) -> None:
        self.liars, self.forged = (), None


class _UnclampedMasking(MaskingSum):
    """The masking client code a liar runs: its vector becomes group elements unclamped."""

    def client_input(self, client: int, encoding: np.ndarray, round_idx: int) -> np.ndarray:
        if np.abs(encoding).max() <= self.spec.clip:
            return super().client_input(client, encoding, round_idx)
        signed = np.rint(encoding * self.spec.scale).astype(np.int64)
        return np.bitwise_and(signed, self.spec.modulus - 1).astype(self.spec.dtype)


class _UncheckedKey:
    """The encryption a liar runs: the real public key, minus the range check."""

    def __init__(self, key: HEPublicKey) -> None:
        self.key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.key, name)

    def encrypt(self, values: np.ndarray) -> EncryptedVector:
        encoding = np.asarray(values, dtype=np.float64)
        key = self.key
        if np.abs(encoding).max() <= key.params.value_bound:
            return key.encrypt(encoding)
        if isinstance(key, CKKSPublicKey):
            slots = key.params.slots_per_ciphertext
            chunks = [
                ts.ckks_vector(key._context, encoding[i : i + slots].tolist())
                for i in range(0, encoding.size, slots)
            ]
            return CKKSEncryptedVector(key.params, key.key_id, encoding.size, 1, chunks)
        assert isinstance(key, PaillierPublicKey)
        packed = paillier_borrowing_plaintexts(key, encoding)
        raw = phe.PaillierPublicKey(key.modulus)
        ciphertexts = [gmpy2.mpz(raw.raw_encrypt(m % key.modulus)) for m in packed]
        return PaillierEncryptedVector(
            key.params, key.key_id, encoding.size, 1, ciphertexts, gmpy2.mpz(key.modulus) ** 2
        )


class _UncheckedHE(HESum):
    """HE whose clients run the liar's encryption (the signing and attesting stay honest)."""

    def client(self, c: int, identity: IdentityKey | None = None) -> AttestingClient:
        found = super().client(c, identity)
        if not isinstance(found.public_key, _UncheckedKey):
            found.public_key = _UncheckedKey(found.public_key)  # type: ignore[assignment]
        return found


def paillier_slots(key: PaillierPublicKey, values: np.ndarray) -> list[int]:
    """The fixed-point slot integers ``round(x * 2^f) + offset`` of ``values``, unchecked."""
    params = key.params
    return [round(math.ldexp(float(x), params.fraction_bits)) + params.offset for x in values]


def paillier_borrowing_plaintexts(key: PaillierPublicKey, values: np.ndarray) -> list[int]:
    """Packed plaintexts whose slots may be negative or wider than one summand's range.

    Packing is integer addition, so a negative slot borrows from the slot above it and a
    large one carries into it; the *sum* of all clients' plaintexts then has exactly the
    slots of the sums, which is all the key holder's slot guard can look at.
    """
    params = key.params
    slots = paillier_slots(key, values)
    per = params.slots_per_ciphertext
    return [
        sum(s << (params.slot_bits * i) for i, s in enumerate(slots[start : start + per]))
        for start in range(0, len(slots), per)
    ]


def _signs() -> np.ndarray:
    return np.where(np.arange(DIM) % 2 == 0, 1.0, -1.0)


def _updates() -> dict[int, np.ndarray]:
    """Small honest updates (mean about +0.05 c per coordinate)."""
    rng = np.random.default_rng(18)
    return {c: rng.uniform(0.0, 0.1, DIM) for c in IDS}


def _protection(mode: str, *overrides: str) -> _Liars:
    config = load_config(
        EXAMPLE,
        [f"protection.mode={mode}", "ledger.enabled=false", "privacy.mode=none", *overrides],
    )
    secure: MaskingSum | HESum
    if mode in MaskingSum.MODES:
        secure = _UnclampedMasking(config, IDS, DIM + 1, seed=1)
    else:
        secure = _UncheckedHE(config, IDS, DIM + 1, seed=1)
    rule, norm_bound = hiding_rule(config, rule_from_config(config.aggregation))
    return _Liars(mode, rule, secure, config.protection.clip_range, norm_bound)


@pytest.fixture(scope="module", params=MODES)
def protection(request: pytest.FixtureRequest) -> Iterator[_Liars]:
    """One protection (one HE key pair) per mode for the module; each test resets the liars."""
    yield _protection(request.param)


def _share(liars: tuple[int, ...]) -> float:
    declared = HiddenFedAvg.declared_weights(COUNTS)
    return sum(declared[c] for c in liars) / sum(declared.values())


def _accepted(p: _Liars, round_idx: int) -> np.ndarray:
    outcome = p.aggregate(_updates(), COUNTS, NO_DROPOUTS, round_idx)
    assert outcome.update is not None, outcome.aborted_reason
    return outcome.update.astype(np.float64)


def _rejected(p: _Liars, round_idx: int) -> str:
    outcome = p.aggregate(_updates(), COUNTS, NO_DROPOUTS, round_idx)
    assert outcome.update is None
    return outcome.aborted_reason


#: The sums' error bounds over W are <= 1e-6 here; the update is float32.
ATOL = 1e-5


def test_one_lying_client_sets_the_mean_anywhere_in_the_clip_range_whatever_its_weight(
    protection: _Liars,
) -> None:
    """A clinic of weight share 0.002 puts every coordinate of the mean on ±c, a shift of
    0.92-1.06 c (461-531 times the c·w/W an honest clinic can cause), and is accepted: its
    vector is hundreds of times its own range, which nothing on the sum can see. Aiming
    0.1 % past ±c is rejected: the bound is exactly the clip range, whatever the weight."""
    p, c = protection, protection.clip
    p.honest()
    honest = _accepted(p, 0)

    p.aim((9,), _updates(), c)
    assert p.forged is not None
    own_range = p.declared_weights(COUNTS)[9] * c  # what an honest encoding of it can hold
    assert np.abs(p.forged[:-1]).min() > 400 * own_range
    lied = _accepted(p, 1)
    np.testing.assert_allclose(lied, _signs() * c, atol=ATOL * c)
    shift = np.abs(lied - honest)
    assert math.isclose(_share((9,)), 0.002, rel_tol=0.01)
    assert shift.min() >= 0.9 * c
    assert shift.min() / (c * _share((9,))) >= 450  # the README's former bound: c·w/W
    assert np.all(shift <= c + np.abs(honest) + ATOL * c)  # |shift| <= c + |honest mean|

    p.aim((9,), _updates(), 1.001 * c)
    assert "outside [-1, 1]" in _rejected(p, 2)


def test_f_lying_clients_are_held_to_the_clip_range_as_one_is_and_only_by_the_range_check(
    protection: _Liars, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three colluding clinics reach ±c as one does, and 3 c is refused; with the range check
    on the mean switched off, the same three get their 3 c (what the check stops)."""
    p, c, liars = protection, protection.clip, (7, 8, 9)
    p.aim(liars, _updates(), c)
    np.testing.assert_allclose(_accepted(p, 3), _signs() * c, atol=ATOL * c)
    p.aim(liars, _updates(), 3 * c)
    reason = _rejected(p, 4)
    assert reason.startswith("AggregateRejectedError") and "outside [-1, 1]" in reason

    monkeypatch.setattr(FedAvg, "check_mean", staticmethod(lambda mean, clip, error: None))
    np.testing.assert_allclose(_accepted(p, 5), _signs() * 3 * c, atol=ATOL * c)


@pytest.mark.parametrize("mode", ["secagg+", "paillier"])
def test_a_guard_on_the_sum_catches_a_naive_out_of_range_summand_but_not_an_adaptive_one(
    mode: str,
) -> None:
    """The carry/overflow guards a sum has (masking's headroom above n·c, Paillier's bound on
    each packed slot) look at the sum's slots. A naive liar that just sends 10.5 c is caught
    there (and only its round is lost, not the run). An adaptive one sends summands as far
    out of its own range (Paillier: negative slots that borrow from the next one), aimed so
    that the sum's slots look honest, and passes with the mean on ±c."""
    p = _protection(mode)
    c, declared = p.clip, p.declared_weights(COUNTS)
    naive = np.zeros(DIM + 1)
    naive[0], naive[-1] = 10.5 * c, declared[9] * c
    p.liars, p.forged = (9,), naive
    reason = _rejected(p, 0)
    if mode == "paillier":
        assert reason.startswith("TamperedMessageError: Paillier slot 0 exceeds")
    else:
        assert reason.startswith("AggregateRejectedError") and "first: index 0" in reason

    p.aim((9,), _updates(), c)
    assert p.forged is not None
    if isinstance(p.secure_sum, HESum):
        key = p.secure_sum.client_key
        assert isinstance(key, PaillierPublicKey)
        slots = paillier_slots(key, p.forged[:-1])
        one_summand = 2 * key.params.offset  # an honest slot lies in [0, 2·offset]
        assert min(slots) < 0 and max(slots) > one_summand  # borrows and carries
    else:
        assert isinstance(p.secure_sum, MaskingSum)
        levels = p.secure_sum.spec.levels  # an honest coordinate lies in [-levels, levels]
        assert np.abs(p.forged[:-1] * p.secure_sum.spec.scale).min() > 100 * levels * declared[9]
    np.testing.assert_allclose(_accepted(p, 1), _signs() * c, atol=ATOL * c)


def test_under_norm_bounding_a_liar_that_skips_its_clipping_is_stopped_at_max_norm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clients clip their own updates to max_norm; a liar that skips it can still put the mean
    anywhere in the max_norm ball, but a mean outside it is refused by name. With the norm
    check switched off, the liar gets its mean of norm 2.5 (5 x max_norm)."""
    p = _protection("secagg+", "aggregation.rule=norm-bound", "aggregation.max_norm=0.5")
    assert p.norm_bound is not None
    inside = 0.5 / math.sqrt(DIM) * 0.99  # a mean of norm 0.495
    p.aim((9,), _updates(), inside)
    np.testing.assert_allclose(_accepted(p, 0), _signs() * inside, atol=ATOL)
    p.aim((9,), _updates(), 0.9 * p.clip)  # norm 0.9 * sqrt(8) = 2.55
    reason = _rejected(p, 1)
    assert reason.startswith("AggregateRejectedError: the aggregated mean has L2 norm 2.54")

    monkeypatch.setattr(NormBound, "check_mean", lambda self, mean, error: None)
    mean = _accepted(p, 2)
    assert math.isclose(float(np.linalg.norm(mean)), 0.9 * math.sqrt(DIM), rel_tol=1e-4)
