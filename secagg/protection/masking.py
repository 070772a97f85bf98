"""``protection.mode = "secagg" | "secagg+"``: pairwise masking (:mod:`secagg.masking`).

Encodings are quantised into Z_2^b (:mod:`secagg.quantize`), masked, summed by the server and
dequantised; the rounding error of n summands is at most n / scale per coordinate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from secagg.config import Config
from secagg.crypto.identity import IdentityDirectory, IdentityKey
from secagg.errors import ConfigError, ProtocolError, QuantizationError
from secagg.masking.driver import run_round
from secagg.masking.params import MaskingParams
from secagg.masking.session import Session, SessionClient, establish_session
from secagg.protection.base import SumOutcome
from secagg.protection.dropout import DropoutSchedule

if TYPE_CHECKING:
    from secagg.ledger.session import LedgerSession
from secagg.quantize import QuantizationSpec, dequantize, error_bound, quantize


class MaskingSum:
    """SecAgg (complete graph) or SecAgg+ (sparse graph) over the run's clients."""

    MODES: ClassVar[tuple[str, ...]] = ("secagg", "secagg+")

    def __init__(
        self,
        config: Config,
        client_ids: list[int],
        dim: int,
        seed: int,
        ledger: LedgerSession | None = None,
        identities: IdentityDirectory | None = None,
        session: Session | None = None,
    ) -> None:
        """``identities``: the clients' registered identities, when their keys live
        elsewhere (a deployment: each node holds its own private key); by default a signed
        run generates every client's key pair here (a simulation). ``session``: the run's
        session when the clients agreed it elsewhere (a deployment); by default the clients
        agree one here (:func:`~secagg.masking.session.establish_session`)."""
        pt = config.protection
        self.ledger = ledger
        self.client_ids = client_ids
        self.dim = dim  # of the encodings: the update plus the weight coordinate
        self.seed = seed
        n = len(client_ids)
        self.neighbors = (n - 1) if pt.mode == "secagg" else pt.neighbors
        self.threshold: float | int = pt.threshold if pt.threshold < 1 else int(pt.threshold)
        self.colluding_fraction = pt.max_colluding_fraction
        try:
            self.spec = QuantizationSpec(bits=pt.bits, clip=pt.clip_range, max_clients=n)
        except QuantizationError as exc:
            raise ConfigError(f"protection.bits / protection.clip_range: {exc}") from None
        # Identity keys, registered once for the whole run (out of band in a deployment).
        self.directory: IdentityDirectory | None = None
        self.identity_keys: dict[int, IdentityKey] = {}
        # With a ledger the chain is the PKI and the broadcast channel: clients read keys and
        # the survivor set from the contract, which replaces the signed consistency round.
        if pt.consistency == "signatures" and ledger is None:
            if identities is not None:
                self.directory = identities
            else:
                self.directory, self.identity_keys = IdentityDirectory.generate(client_ids)
        # The run's session: every client of the simulation takes part in the set-up, and each
        # round is opened through its own SessionClient (one round id once, in order).
        self.session_clients: dict[int, SessionClient] = {}
        if session is None:
            self.session_clients, session = establish_session(client_ids)
        self.session = session
        # Size the SecAgg+ graph for the dropout this run will see: the expected rate, or the
        # simulated one compounded over its phases, whichever is larger.
        simulated = 1 - (1 - pt.dropout) ** len(pt.dropout_phases)
        self.dropout_rate = max(pt.expected_dropout, simulated)
        try:  # the protocol's own checks of t and k against n, before any client trains
            self.params(0)
        except ProtocolError as exc:
            raise ConfigError(f"protection: {exc}") from None

    def params(self, round_idx: int) -> MaskingParams:
        """Round ``round_idx``'s public parameters: the same wherever the run's session is."""
        return MaskingParams.create(
            self.client_ids,
            self.dim,
            threshold=self.threshold,
            neighbors=self.neighbors,
            bits=self.spec.bits,
            round_id=round_idx,
            session=self.session.value,
            dropout_rate=self.dropout_rate,
            colluding_fraction=self.colluding_fraction,
            broadcast=self.ledger is not None,
            identities=self.directory,
        )

    def public_record(self, round_idx: int) -> dict[str, Any]:
        """What an auditor needs to replay the round's unmasking: the public parameters."""
        p = self.params(round_idx)
        return {
            "client_ids": list(p.client_ids),
            "dim": p.dim,
            "threshold": p.threshold,
            "neighbors": p.neighbors,
            "bits": p.bits,
            "round_id": p.round_id,
            "colluders": p.colluders,
            "broadcast": p.broadcast,
            "session": self.session.record(),
            "clip": self.spec.clip,
        }

    def client_input(self, client: int, encoding: np.ndarray, round_idx: int) -> np.ndarray:
        """What ``client`` masks: its encoding quantised into Z_2^b (the client's side)."""
        # Stochastic rounding is not secret: a seeded generator keeps runs reproducible.
        rng = np.random.default_rng([self.seed, round_idx, client, 0x5EC])
        return quantize(encoding, self.spec, rng)

    def outcome(self, total: np.ndarray, included: list[int], stats: dict[str, Any]) -> SumOutcome:
        """The dequantised sum of the ``included`` clients' inputs (the server's side)."""
        return SumOutcome(
            dequantize(total, self.spec),
            included,
            error_bound(self.spec, len(included)),
            stats={
                **stats,
                "consistency": "chain"
                if self.ledger is not None
                else ("signatures" if self.directory is not None else "none"),
            },
        )

    def sum(
        self, encodings: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> SumOutcome:
        inputs = {c: self.client_input(c, v, round_idx) for c, v in encodings.items()}
        total, included, stats = self.sum_group(inputs, schedule, round_idx)
        return self.outcome(total, included, stats)

    def sum_group(
        self, inputs: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> tuple[np.ndarray, list[int], dict[str, Any]]:
        """The masked round over inputs already in Z_2^b: their sum mod 2^b, who is in it,
        and the round's costs (the noisy sum of distributed DP encodes its own inputs)."""
        params = self.params(round_idx)
        board = None if self.ledger is None else self.ledger.masking_board(round_idx, params.graph)
        result = run_round(
            inputs,
            params,
            dropouts=schedule.by_phase,
            identities=self.identity_keys,
            board=board,
            sessions=self.session_clients or None,
        )
        sent = list(result.bytes_sent.values())
        return (
            result.total,
            result.included,
            {
                "bytes_sent_per_client": float(np.mean(sent)) if sent else 0.0,
                "bytes_sent_max": max(sent) if sent else 0,
                "client_seconds": result.client_seconds,
                "server_seconds": sum(result.server_seconds.values()),
                "server_seconds_by_phase": result.server_seconds,
                "neighbors": params.neighbors,
                "threshold": params.threshold,
                "inconsistent_holders": {
                    str(h): owners for h, owners in result.inconsistent_holders.items()
                },
            },
        )
