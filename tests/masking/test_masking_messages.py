"""Wire format: every message round-trips; anything that is not a valid encoding is refused."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from secagg.crypto import shamir
from secagg.errors import TamperedMessageError
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    KeyDirectory,
    MaskedInput,
    Message,
    PublicKeys,
    ShareDelivery,
    ShareKeys,
    UnmaskingRequest,
    UnmaskingResponse,
    decode_client_message,
    decode_message,
    decode_server_message,
)
from secagg.masking.params import SERVER_ID

KEYS = PublicKeys(b"\x01" * 32, b"\x02" * 32)
SHARE = b"\x00" * (shamir.VALUE_BYTES - 1) + b"\x07"

EXAMPLES: list[Message] = [
    AdvertiseKeysRequest(5, SERVER_ID, 3, b"\xaa" * 32),
    AdvertiseKeys(5, 3, KEYS),
    KeyDirectory(5, SERVER_ID, 3, {1: KEYS, 9: PublicKeys(b"\x03" * 32, b"\x04" * 32)}),
    ShareKeys(5, 3, {1: b"ciphertext-1", 9: b"c9"}),
    ShareDelivery(5, SERVER_ID, 3, {1: b"from-1", 9: b""}),
    UnmaskingRequest(5, SERVER_ID, 3, 7, (1, 3, 9), (4,)),
    UnmaskingResponse(5, 3, {1: SHARE, 3: SHARE}, {4: SHARE}),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    data = message.to_bytes()
    assert decode_message(data) == message
    assert type(message).from_bytes(data) == message
    assert message.to_bytes() == data  # canonical


@pytest.mark.parametrize("bits", [1, 20, 32, 33, 64])
def test_masked_input_round_trips_as_raw_words(bits: int) -> None:
    dtype = np.uint32 if bits <= 32 else np.uint64
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, 1000, dtype=np.uint64, endpoint=False).astype(dtype)
    data = MaskedInput(5, 3, bits, values).to_bytes()
    assert len(data) == 18 + 9 + values.nbytes  # header + bits/dim + raw words: compact
    decoded = MaskedInput.from_bytes(data)
    assert (decoded.round_id, decoded.sender, decoded.bits) == (5, 3, bits)
    np.testing.assert_array_equal(decoded.masked, values)


def test_header_carries_round_and_sender() -> None:
    data = AdvertiseKeys(2**64 - 2, 2**63, KEYS).to_bytes()
    message = decode_message(data)
    assert (message.round_id, message.sender) == (2**64 - 2, 2**63)


def test_direction_is_checked() -> None:
    with pytest.raises(TamperedMessageError, match="not a server-to-client"):
        decode_server_message(AdvertiseKeys(1, 1, KEYS).to_bytes())
    with pytest.raises(TamperedMessageError, match="not a client-to-server"):
        decode_client_message(EXAMPLES[0].to_bytes())
    with pytest.raises(TamperedMessageError, match="expected a ShareKeys"):
        ShareKeys.from_bytes(AdvertiseKeys(1, 1, KEYS).to_bytes())


def _valid() -> bytes:
    return KeyDirectory(5, SERVER_ID, 3, {1: KEYS}).to_bytes()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d[:-1], "truncated|can hold"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: b"", "truncated"),
        (lambda d: bytes([9]) + d[1:], "version"),
        (lambda d: d[:1] + bytes([200]) + d[2:], "unknown message type"),
        (lambda d: d[:26] + struct.pack(">I", 10**6) + d[30:], "more than the message can hold"),
    ],
    ids=["truncated", "trailing", "empty", "version", "type", "huge count"],
)
def test_malformed_bytes_raise_tampered_message_error(
    mutate: Callable[[bytes], bytes], match: str
) -> None:
    with pytest.raises(TamperedMessageError, match=match):
        decode_message(mutate(_valid()))


def test_duplicate_or_unsorted_ids_are_refused() -> None:
    entry = struct.pack(">Q", 1) + KEYS.to_bytes()
    header = KeyDirectory(5, SERVER_ID, 3, {}).to_bytes()[:-4]
    duplicated = header + struct.pack(">I", 2) + entry + entry
    with pytest.raises(TamperedMessageError, match="duplicated or out of order"):
        decode_message(duplicated)
    request = UnmaskingRequest(5, SERVER_ID, 3, 0, (), ()).to_bytes()[:-8]
    unsorted = request + struct.pack(">I2Q", 2, 9, 1) + struct.pack(">I", 0)
    with pytest.raises(TamperedMessageError, match="strictly increasing"):
        decode_message(unsorted)


def test_masked_values_outside_the_bit_width_are_refused() -> None:
    data = bytearray(MaskedInput(5, 3, 20, np.zeros(4, np.uint32)).to_bytes())
    data[-1] = 0xFF  # last word now >= 2^20
    with pytest.raises(TamperedMessageError, match="do not fit in 20 bits"):
        decode_message(bytes(data))
    bad_bits = bytearray(MaskedInput(5, 3, 20, np.zeros(4, np.uint32)).to_bytes())
    bad_bits[18] = 65
    with pytest.raises(TamperedMessageError, match="bits"):
        decode_message(bytes(bad_bits))


def test_share_values_have_a_fixed_size() -> None:
    with pytest.raises(TamperedMessageError, match="share values"):
        UnmaskingResponse(5, 3, {1: b"short"}, {}).to_bytes()


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(TamperedMessageError, match="bytes"):
        decode_message("not bytes")  # type: ignore[arg-type]


def test_unencodable_header_is_refused() -> None:
    with pytest.raises(TamperedMessageError, match="round and sender"):
        AdvertiseKeys(-1, 3, KEYS).to_bytes()
