"""``protection.mode = "secagg" | "secagg+"``: pairwise masking (:mod:`secagg.masking`).

Encodings are quantised into Z_2^b (:mod:`secagg.quantize`), masked, summed by the server and
dequantised; the rounding error of n summands is at most n / scale per coordinate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from secagg.config import Config
from secagg.crypto.signing import IdentityDirectory, SigningKey
from secagg.errors import ConfigError, ProtocolError, QuantizationError
from secagg.masking.driver import run_round
from secagg.masking.params import MaskingParams
from secagg.protection.base import SumOutcome
from secagg.protection.dropout import DropoutSchedule
from secagg.quantize import QuantizationSpec, dequantize, error_bound, quantize


class MaskingSum:
    """SecAgg (complete graph) or SecAgg+ (sparse graph) over the run's clients."""

    MODES: ClassVar[tuple[str, ...]] = ("secagg", "secagg+")

    def __init__(self, config: Config, client_ids: list[int], dim: int, seed: int) -> None:
        pt = config.protection
        self.client_ids = client_ids
        self.dim = dim  # of the encodings: the update plus the weight coordinate
        self.seed = seed
        n = len(client_ids)
        self.neighbors = (n - 1) if pt.mode == "secagg" else pt.neighbors
        self.threshold: float | int = pt.threshold if pt.threshold < 1 else int(pt.threshold)
        try:
            self.spec = QuantizationSpec(bits=pt.bits, clip=pt.clip_range, max_clients=n)
        except QuantizationError as exc:
            raise ConfigError(f"protection.bits / protection.clip_range: {exc}") from None
        # Identity keys, registered once for the whole run (out of band in a deployment).
        self.directory: IdentityDirectory | None = None
        self.identity_keys: dict[int, SigningKey] = {}
        if pt.consistency == "signatures":
            self.directory, self.identity_keys = IdentityDirectory.generate(client_ids)
        # Size the SecAgg+ graph for the dropout this run will see: the expected rate, or the
        # simulated one compounded over its phases, whichever is larger.
        simulated = 1 - (1 - pt.dropout) ** len(pt.dropout_phases)
        self.dropout_rate = max(pt.expected_dropout, simulated)
        try:  # the protocol's own checks of t and k against n, before any client trains
            self._params(0)
        except ProtocolError as exc:
            raise ConfigError(f"protection: {exc}") from None

    def _params(self, round_idx: int) -> MaskingParams:
        return MaskingParams.create(
            self.client_ids,
            self.dim,
            threshold=self.threshold,
            neighbors=self.neighbors,
            bits=self.spec.bits,
            round_id=round_idx,
            graph_seed=f"secagg-graph/{self.seed}".encode(),
            dropout_rate=self.dropout_rate,
            identities=self.directory,
        )

    def sum(
        self, encodings: Mapping[int, np.ndarray], schedule: DropoutSchedule, round_idx: int
    ) -> SumOutcome:
        inputs = {
            # Stochastic rounding is not secret: a seeded generator keeps runs reproducible.
            c: quantize(v, self.spec, np.random.default_rng([self.seed, round_idx, c, 0x5EC]))
            for c, v in encodings.items()
        }
        params = self._params(round_idx)
        result = run_round(
            inputs, params, dropouts=schedule.by_phase, identities=self.identity_keys
        )
        sent = list(result.bytes_sent.values())
        return SumOutcome(
            dequantize(result.total, self.spec),
            result.included,
            error_bound(self.spec, len(result.included)),
            stats={
                "bytes_sent_per_client": float(np.mean(sent)) if sent else 0.0,
                "bytes_sent_max": max(sent) if sent else 0,
                "client_seconds": result.client_seconds,
                "server_seconds": sum(result.server_seconds.values()),
                "server_seconds_by_phase": result.server_seconds,
                "neighbors": params.neighbors,
                "threshold": params.threshold,
                "consistency": "signatures" if params.signed else "none",
                "inconsistent_holders": {
                    str(h): owners for h, owners in result.inconsistent_holders.items()
                },
            },
        )
