"""Secure aggregation by masking: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).

Sans-I/O state machines: :class:`MaskingClient` and :class:`MaskingServer` consume decoded
messages and return the messages to send; transports and deadlines belong to the runner.
:func:`run_round` is the in-process runner used by simulations and benchmarks.
"""

from secagg.masking.client import MaskingClient
from secagg.masking.driver import MaskedRoundResult, run_round
from secagg.masking.params import PHASES, MaskingParams
from secagg.masking.server import MaskingServer, UnmaskedSum

__all__ = [
    "PHASES",
    "MaskedRoundResult",
    "MaskingClient",
    "MaskingParams",
    "MaskingServer",
    "UnmaskedSum",
    "run_round",
]
