"""A client's masked input y = x + masks mod 2^bits reveals nothing about its input x.

Specification: the masked vector of one client is uniform over Z_{2^bits} and independent of
the input, so the server, holding y alone, learns nothing about x. Checked statistically on
long vectors (d = 200,000 coordinates, each 8-bit field of a coordinate bucketed separately):
  * goodness of fit to the uniform distribution, at 32 bits and at small widths;
  * the same distribution for two opposite inputs (all zeros, all 2^bits - 1);
  * no correlation and no dependence between the coordinates of x and of y;
and the round still sums the chosen inputs, so the uniformity is not that of noise which
ignores x.

The masks come from the OS CSPRNG (keys and seeds are not seeded), so these tests are random.
Each check asserts a p-value above 1e-6: a correct client fails one with probability 1e-6,
about 1e-4 for the whole file, while a bias large enough to matter gives p-values of 1e-30
and below at this length.
"""

from __future__ import annotations

import numpy as np
import pytest
import support.honest_round as honest_round
from scipy.stats import chi2_contingency, chisquare, pearsonr
from support.honest_round import HonestRound

from secagg.masking.client import MaskingClient
from secagg.masking.messages import ClientMessage, MaskedInput
from secagg.masking.params import MaskingParams

DIM = 200_000
MIN_P_VALUE = 1e-6
ZEROS, ONES = 0, 1  # the clients given all-zero and all-ones (2^bits - 1) inputs


def _round(monkeypatch: pytest.MonkeyPatch, bits: int, round_id: int) -> HonestRound:
    """An HonestRound of 5 clients at ``bits`` with client 0's input all zeros and client 1's
    all 2^bits - 1 (the others keep random inputs, cut to ``bits``).

    HonestRound always builds 32-bit rounds with random inputs, so while it is constructed
    its parameters get ``bits`` and each input vector is rewritten in place just before its
    client is created: ``r.inputs`` stays exactly what the clients hold.
    """
    create = MaskingParams.create
    top = np.uint32(2**bits - 1)

    class Params:
        @staticmethod
        def create(*args: object, **kwargs: object) -> MaskingParams:
            return create(*args, bits=bits, **kwargs)  # type: ignore[arg-type]

    def client(client_id: int, params: MaskingParams, x: np.ndarray, *rest: object) -> object:
        if client_id == ZEROS:
            x[:] = 0
        elif client_id == ONES:
            x[:] = top
        else:
            x &= top
        return MaskingClient(client_id, params, x, *rest)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(honest_round, "MaskingParams", Params)
        patch.setattr(honest_round, "MaskingClient", client)
        r = HonestRound(5, round_id=round_id, dim=DIM, seed=round_id, session=b"uniformity")
    assert r.params.bits == bits
    return r


def _masked_inputs(r: HonestRound) -> dict[int, ClientMessage]:
    """Run advertise_keys and share_keys; every client's reply in the masked_input phase."""
    r.advance()
    r.advance()
    replies = r.replies()
    assert set(replies) == set(range(r.params.n))
    return replies


def _finish(r: HonestRound, replies: dict[int, ClientMessage]) -> np.ndarray:
    """Deliver the masked inputs, run the remaining phases, return the server's sum."""
    for reply in replies.values():
        r.server.receive(reply)
    r.outbox = r.server.close_phase()
    while r.outbox:
        r.advance()
    return np.asarray(r.server.result.total)


def _fields(values: np.ndarray, bits: int) -> list[tuple[int, np.ndarray]]:
    """Each 8-bit field of the values (the top one narrower when 8 does not divide bits)."""
    words = values.astype(np.uint64)
    fields = []
    for shift in range(0, bits, 8):
        width = min(8, bits - shift)
        fields.append((width, (words >> np.uint64(shift)) & np.uint64(2**width - 1)))
    return fields


def _histograms(values: np.ndarray, bits: int) -> list[np.ndarray]:
    return [np.bincount(field, minlength=2**width) for width, field in _fields(values, bits)]


def _masked(reply: ClientMessage, r: HonestRound) -> np.ndarray:
    assert isinstance(reply, MaskedInput)
    assert reply.masked.dtype == r.params.dtype and reply.masked.shape == (DIM,)
    return reply.masked


@pytest.mark.parametrize("bits", [8, 13, 32])
def test_every_clients_masked_input_is_uniform_over_the_group(
    monkeypatch: pytest.MonkeyPatch, bits: int
) -> None:
    r = _round(monkeypatch, bits, round_id=bits)
    for client, reply in _masked_inputs(r).items():
        masked = _masked(reply, r)
        assert int(masked.max()) < 2**bits  # in the group Z_{2^bits}, whatever the word type
        for shift, counts in enumerate(_histograms(masked, bits)):
            p_value = chisquare(counts).pvalue
            assert p_value > MIN_P_VALUE, (client, 8 * shift, p_value)


@pytest.mark.parametrize("bits", [8, 13, 32])
def test_opposite_inputs_give_identically_distributed_masked_inputs(
    monkeypatch: pytest.MonkeyPatch, bits: int
) -> None:
    r = _round(monkeypatch, bits, round_id=100 + bits)
    replies = _masked_inputs(r)
    zeros, ones = _masked(replies[ZEROS], r), _masked(replies[ONES], r)
    for shift, (a, b) in enumerate(
        zip(_histograms(zeros, bits), _histograms(ones, bits), strict=True)
    ):
        p_value = chi2_contingency(np.stack([a, b])).pvalue
        assert p_value > MIN_P_VALUE, (8 * shift, p_value)
    # The masked vectors do carry the chosen inputs: the server's sum is exactly theirs.
    expected = sum(x.astype(np.uint64) for x in r.inputs.values()) % 2**bits
    assert np.array_equal(_finish(r, replies).astype(np.uint64), expected)


def test_masked_input_is_uncorrelated_with_and_independent_of_the_input() -> None:
    # Plain HonestRound: 32 bits, uniformly random inputs.
    r = HonestRound(5, round_id=7, dim=DIM, seed=7, session=b"uniformity")
    for client, reply in _masked_inputs(r).items():
        x, y = r.inputs[client], _masked(reply, r)
        correlation = pearsonr(x.astype(np.float64), y.astype(np.float64))
        assert correlation.pvalue > MIN_P_VALUE, (client, correlation)
        # Dependence of any shape between the top 4 bits of x and of y, and the low 4 bits.
        for shift in (28, 0):
            table = np.zeros((16, 16), dtype=np.int64)
            np.add.at(table, ((x >> shift) & 15, (y >> shift) & 15), 1)
            p_value = chi2_contingency(table).pvalue
            assert p_value > MIN_P_VALUE, (client, shift, p_value)
