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


class PolicyError(SecAggError):
    """A hospital node refuses a request that its own local policy does not allow: a weaker
    privacy setting, a contract or chain it does not trust, a round it already trained, or
    more ε than its budget holds. The coordinator cannot lift the policy; the hospital edits it."""


class QuantizationError(SecAggError):
    """Values cannot be encoded in the modular group without risking overflow, or are invalid."""


class CryptoError(SecAggError):
    """A cryptographic operation failed (bad key, bad share set, failed authentication)."""


class UnregisteredWeightError(SecAggError):
    """A client declared a FedAvg weight its registration does not cover: more training
    samples than it registered, a count that is not a positive number, or no registration."""


class AggregateRejectedError(SecAggError):
    """A decoded aggregate fails its checks (declared weights, value range): the round is
    rejected and the model kept, because a malicious client can encode anything it likes."""


class WrapError(AggregateRejectedError):
    """A decoded integer sum leaves the range an honest sum stays in (distributed DP): it
    wrapped mod 2^b or a client sent an out-of-range value, so the round is rejected."""


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


class LedgerError(SecAggError):
    """A ledger operation failed: the contract refused it, or the chain could not be used.

    When the contract refused, ``error_name`` is its custom error (e.g. ``AlreadyCommitted``)
    and ``error_args`` the decoded arguments; both also appear in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        error_name: str | None = None,
        error_args: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_name = error_name
        self.error_args = dict(error_args or {})


class LedgerAccessError(LedgerError):
    """The caller lacks the role, or is not in the round / survivor set / included set."""


class LedgerDeadlineError(LedgerError):
    """A round deadline has passed, or the phase it closes has not ended yet."""


class LedgerReplayError(LedgerError):
    """Something allowed once happened again (double commit/claim/advert, an old round id)."""


class LedgerBudgetError(LedgerError):
    """A commit's cumulative ε exceeds the cap or is below the participant's recorded ε."""


class LedgerPartitionError(LedgerError):
    """A posted survivor/dropped set is not a partition of the round's active participants."""


class LedgerStateError(LedgerError):
    """The round is unknown or in another phase, or evidence refers to something not posted."""


class LedgerInputError(LedgerError):
    """An argument is malformed (bad deadlines, empty or duplicate list, wrong byte length)."""


class LedgerConnectionError(LedgerError):
    """The node cannot be reached or lacks a needed method (e.g. time travel)."""


class LedgerRecordError(LedgerError):
    """A ledger record read back is malformed or false: an event log that does not decode, a
    chain file that is truncated, inflated or edited, or whose blocks do not re-execute."""


class HEError(CryptoError):
    """A homomorphic-encryption key, parameter set or ciphertext cannot be used as asked."""


class HECapacityError(HEError):
    """An HE parameter set cannot hold the sum asked for: it would overflow or lose precision."""


class HEValueRangeError(HEError):
    """A value to encrypt lies outside the declared bound: refused, never silently wrapped."""


class StorageError(SecAggError):
    """A blob cannot be stored or fetched (bad identifier, unreachable node, I/O failure)."""


class BlobNotFoundError(StorageError):
    """No blob with this CID is in the store: never put there, deleted, or not yet synced."""


class TamperedBlobError(StorageError):
    """A stored blob no longer hashes to its CID: the bytes were modified or corrupted."""


class InvalidCidError(StorageError):
    """Text that is not a CIDv1 of a raw sha2-256 blob, the only kind this store issues."""
