"""One exception hierarchy for the whole library.

Every error a user can cause derives from :class:`SecAggError`, so callers (and the CLI) can
catch one type and print its message. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of every error secagg raises on purpose."""


class ConfigError(SecAggError):
    """A run configuration is malformed: unknown key, wrong type, value out of range."""


class DataError(SecAggError):
    """Input data is missing, malformed, or cannot be partitioned as asked."""


class PrivacyError(SecAggError):
    """A differential-privacy setting cannot be honoured (e.g. a target ε is unreachable)."""


class QuantizationError(SecAggError):
    """Values cannot be encoded in the modular group without risking overflow, or are invalid."""


class CryptoError(SecAggError):
    """A cryptographic operation failed (bad key, bad share set, failed authentication)."""


class ProtocolError(SecAggError):
    """A secure-aggregation protocol rule was violated; the offending message is ignored."""


class WrongRoundError(ProtocolError):
    """A message carries a round id other than the current one (cross-round reuse)."""


class UnknownSenderError(ProtocolError):
    """A message comes from a participant that is not part of this round (or not a neighbour)."""


class ReplayError(ProtocolError):
    """A message of this phase from this sender was already accepted."""


class TamperedMessageError(ProtocolError):
    """An authenticated ciphertext or a message encoding failed verification."""


class PhaseError(ProtocolError):
    """A message arrived in a phase where it is not expected."""


class UnmaskingPolicyError(ProtocolError):
    """The server asked a client for both the self-mask share and the key share of one peer."""


class BelowThresholdError(ProtocolError):
    """Fewer than the threshold of clients remain; the round aborts and reveals nothing."""
