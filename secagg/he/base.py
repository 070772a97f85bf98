"""The one interface both HE backends implement: keys, encrypted vectors, capacity.

Roles. A *key holder* (one client, or a separate key authority) calls ``generate_keys`` and
keeps the secret key; it publishes the public key as bytes. Clients encrypt their float update
under it. The *aggregator* loads the same public bytes: it can add ciphertexts but holds no
secret, so it cannot decrypt. Only the key holder decrypts, and only the sum.

Capacity. A parameter set is declared for at most ``max_summands`` vectors whose coordinates
all lie in ``[-value_bound, value_bound]``; it is refused at construction if that sum could
overflow (Paillier slot headroom, CKKS modulus) and it states ``max_abs_error``, the bound on
``|decrypt(sum) - exact sum|`` per coordinate. Encryption refuses any value outside the bound
and addition refuses to go beyond ``max_summands``, so the bound holds by construction.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike

from secagg.errors import HECapacityError, HEError, HEValueRangeError

#: Names proposed for the run configuration (the protection layer owns the wiring).
CONFIG_VALUE_BOUND = "protection.clip_range"
CONFIG_PRECISION = "protection.he_precision"
CONFIG_MAX_SUMMANDS = "data.clients"


@dataclass(frozen=True)
class Capacity:
    """What a parameter set guarantees: how many summands, of what size, with what error."""

    scheme: str
    max_summands: int
    value_bound: float
    max_abs_error: float  # per coordinate of a decrypted sum of max_summands vectors
    slots_per_ciphertext: int

    def describe(self) -> str:
        return (
            f"{self.scheme}: up to {self.max_summands} summands with |x| <= {self.value_bound:g}, "
            f"decrypted sum within {self.max_abs_error:.3g} per coordinate, "
            f"{self.slots_per_ciphertext} values per ciphertext"
        )


class HEParams(Protocol):
    """A validated parameter set (frozen dataclass in each backend)."""

    scheme: ClassVar[str]

    @property
    def value_bound(self) -> float: ...

    @property
    def max_summands(self) -> int: ...

    @property
    def slots_per_ciphertext(self) -> int: ...

    def error_bound(self, summands: int) -> float:
        """Bound on |decrypted - exact| per coordinate for a sum of ``summands`` vectors."""
        ...

    @property
    def capacity(self) -> Capacity: ...

    def to_fields(self) -> dict[str, Any]:
        """The fields written into the public key frame (JSON-compatible)."""
        ...


class CapacityFromBounds:
    """``capacity`` derived from the fields every parameter set has (mixed into both)."""

    scheme: ClassVar[str]
    value_bound: float
    max_summands: int

    @property
    def slots_per_ciphertext(self) -> int:
        raise NotImplementedError

    def error_bound(self, summands: int) -> float:
        raise NotImplementedError

    @property
    def capacity(self) -> Capacity:
        return Capacity(
            self.scheme,
            self.max_summands,
            self.value_bound,
            self.error_bound(self.max_summands),
            self.slots_per_ciphertext,
        )


def check_values(values: ArrayLike, bound: float) -> np.ndarray:
    """A 1-D float64 copy of ``values``; refuses empty input, NaN/inf and |x| > bound."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.size == 0:
        raise HEError(f"HE encrypts a non-empty 1-D vector, got shape {vector.shape}")
    bad = ~np.isfinite(vector) | (np.abs(vector) > bound)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise HEValueRangeError(
            f"value {vector[index]!r} at index {index} is outside [-{bound:g}, {bound:g}] "
            f"({int(bad.sum())} such values): clip the update to {CONFIG_VALUE_BOUND} before "
            "encrypting; out-of-range values are refused, never wrapped"
        )
    return vector


def check_count(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HEError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_bound(value_bound: object) -> float:
    if (
        isinstance(value_bound, bool)
        or not isinstance(value_bound, int | float)
        or not math.isfinite(value_bound)
        or value_bound <= 0
    ):
        raise HEError(
            f"value bound ({CONFIG_VALUE_BOUND}) must be a finite number > 0, got {value_bound!r}"
        )
    return float(value_bound)


class EncryptedVector(ABC):
    """A float vector encrypted under one public key, possibly already a sum of several."""

    def __init__(self, params: HEParams, key_id: bytes, length: int, summands: int) -> None:
        self.params, self.key_id, self.length, self.summands = params, key_id, length, summands

    def add_(self, other: EncryptedVector) -> Self:
        """Add ``other`` into this vector in place (the aggregator keeps one running sum)."""
        if type(other) is not type(self) or other.key_id != self.key_id:
            raise HEError("cannot add ciphertexts made under different schemes or keys")
        if other.length != self.length:
            raise HEError(f"cannot add vectors of length {self.length} and {other.length}")
        total = self.summands + other.summands
        if total > self.params.max_summands:
            raise HECapacityError(
                f"a sum of {total} vectors exceeds this parameter set's capacity of "
                f"{self.params.max_summands}; generate keys for more clients "
                f"({CONFIG_MAX_SUMMANDS})"
            )
        self._add_ciphertexts(other)
        self.summands = total
        return self

    def __iadd__(self, other: EncryptedVector) -> Self:
        return self.add_(other)

    @abstractmethod
    def _add_ciphertexts(self, other: Self) -> None: ...

    @abstractmethod
    def serialize(self) -> bytes:
        """The wire format (see :mod:`secagg.he.wire`)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key_id={self.key_id.hex()}, length={self.length}, "
            f"summands={self.summands})"
        )


class HEPublicKey(ABC):
    """What clients and the aggregator hold: encrypt, add, (de)serialise; never decrypt."""

    params: HEParams
    key_id: bytes

    @property
    def capacity(self) -> Capacity:
        return self.params.capacity

    @abstractmethod
    def encrypt(self, values: ArrayLike) -> EncryptedVector:
        """Encrypt a 1-D float vector whose entries all lie within ``params.value_bound``."""

    @abstractmethod
    def serialize(self) -> bytes:
        """The public key (with its parameter set) as bytes; contains no secret."""

    @abstractmethod
    def deserialize_vector(self, data: bytes) -> EncryptedVector:
        """Parse a ciphertext; truncated or altered bytes raise TamperedMessageError."""

    def decrypt(self, vector: EncryptedVector) -> NoReturn:
        """Always refused, by name: a public key holds no secret key (the backends' own
        objects would fail with a bare ValueError, or not at all)."""
        raise HEError(
            f"this {self.params.scheme} public key holds no secret key, so whoever holds it "
            "(the aggregator, a client) cannot decrypt: only the key holder decrypts, and "
            "only a sum attested by at least t clients"
        )

    def sum_serialized(self, blobs: Iterable[bytes]) -> EncryptedVector:
        """Streaming sum: parse each blob, add it, drop it (memory of one ciphertext set)."""
        total: EncryptedVector | None = None
        for blob in blobs:
            vector = self.deserialize_vector(blob)
            total = vector if total is None else total.add_(vector)
        if total is None:
            raise HEError("cannot sum zero ciphertexts")
        return total

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id.hex()}, {self.capacity.describe()})"


class HESecretKey(ABC):
    """What key holders hold. There is no threshold decryption: whoever holds this can decrypt
    any single ciphertext encrypted under the matching public key, not only sums."""

    public_key: HEPublicKey

    @abstractmethod
    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        """The float64 sum the (summed) vector encrypts, within ``params.error_bound``.

        The result is meant to be released (it is the aggregate). CKKS adds flooding noise so
        that releasing it does not reveal the secret key; Paillier decryption is exact.
        """

    @abstractmethod
    def export_sealed(self, wrapping_key: bytes) -> bytes:
        """The secret key sealed with AES-GCM under ``wrapping_key`` (16/24/32 bytes).

        This is the only way a secret key leaves memory: there is no unencrypted export.
        """

    def _check_own(self, vector: EncryptedVector) -> None:
        if vector.key_id != self.public_key.key_id:
            raise HEError(
                f"ciphertext was encrypted under key {vector.key_id.hex()}, this secret key "
                f"belongs to {self.public_key.key_id.hex()}"
            )

    def __repr__(self) -> str:  # never the secret itself
        return f"{type(self).__name__}(key_id={self.public_key.key_id.hex()})"


class HEBackend(Protocol):
    """What each backend module provides (``secagg.he.ckks``, ``secagg.he.paillier``)."""

    def choose_params(
        self, value_bound: float, max_summands: int, precision: float
    ) -> HEParams: ...

    def generate_keys(self, params: Any) -> tuple[HEPublicKey, HESecretKey]: ...

    def load_public_key(self, data: bytes) -> HEPublicKey: ...

    def load_secret_key(self, sealed: bytes, wrapping_key: bytes) -> HESecretKey: ...
