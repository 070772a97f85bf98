"""Wire format: every message round-trips; anything that is not a valid encoding is refused."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from secagg.crypto import shamir
from secagg.errors import TamperedMessageError
from secagg.masking.messages import (
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyDirectory,
    MaskedInput,
    Message,
    PublicKeys,
    SessionCommit,
    SessionCommitments,
    SessionNonces,
    SessionReveal,
    ShareDelivery,
    ShareKeys,
    ShareTable,
    UnmaskingRequest,
    UnmaskingResponse,
    _Reader,
    decode_client_message,
    decode_message,
    decode_server_message,
)
from secagg.masking.params import SERVER_ID

KEYS = PublicKeys(b"\x01" * 32, b"\x02" * 32, b"\x05" * 32)
TAG = b"\x06" * 16
SHARE = b"\x00" * (shamir.VALUE_BYTES - 1) + b"\x07"

EXAMPLES: list[Message] = [
    AdvertiseKeysRequest(5, SERVER_ID, 3, b"\xaa" * 32),
    AdvertiseKeys(5, 3, KEYS),
    AdvertiseKeys(5, 3, KEYS, (TAG, b"\x07" * 16)),
    KeyDirectory(5, SERVER_ID, 3, {1: KEYS, 9: PublicKeys(b"\x03" * 32, b"\x04" * 32)}),
    KeyDirectory(5, SERVER_ID, 3, {1: KEYS}, {1: TAG}),
    ShareKeys(5, 3, {1: b"ciphertext-1", 9: b"ciphertext-9"}),
    ShareKeys(5, 3, {}),
    ShareDelivery(5, SERVER_ID, 3, {1: b"from-1", 9: b"from-9"}),
    ConsistencyRequest(5, SERVER_ID, 3, (1, 3, 9)),
    ConsistencyResponse(5, 3, b"\x08" * 96),
    UnmaskingRequest(5, SERVER_ID, 3, (1, 3, 9), (1, 3), b"\x08" * 96),
    UnmaskingRequest(5, SERVER_ID, 3, (1, 3, 9)),
    UnmaskingResponse(5, 3, {1: SHARE, 3: SHARE}, {4: SHARE}, {4: bytes(range(16))}),
    MaskedInput(5, 3, 32, np.arange(6, dtype=np.uint32)),
    MaskedInput(5, 3, 20, np.arange(6, dtype=np.uint32)),
    SessionCommit(0, 3, b"\x09" * 32),
    SessionCommitments(0, SERVER_ID, 3, {1: b"\x0a" * 32, 3: b"\x0b" * 32}),
    SessionReveal(0, 3, b"\x0c" * 32),
    SessionNonces(0, SERVER_ID, 3, {1: b"\x0d" * 32, 3: b"\x0e" * 32}),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    data = message.to_bytes()
    if isinstance(message, MaskedInput):  # arrays compare element-wise
        decoded = decode_message(data)
        assert isinstance(decoded, MaskedInput) and decoded.bits == message.bits
        np.testing.assert_array_equal(decoded.masked, message.masked)
        return
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
    header = KeyDirectory(5, SERVER_ID, 3, {}).to_bytes()[:-8]  # two empty tables
    duplicated = header + struct.pack(">I", 2) + entry + entry + struct.pack(">I", 0)
    with pytest.raises(TamperedMessageError, match="duplicated or out of order"):
        decode_message(duplicated)
    request = UnmaskingRequest(5, SERVER_ID, 3, ()).to_bytes()[:-9]  # ids, ids, signature
    unsorted = request + struct.pack(">I2Q", 2, 9, 1) + struct.pack(">IB", 0, 0)
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


@pytest.mark.parametrize(
    "masked",
    [np.zeros(4, np.float64), np.zeros(4, np.int64), np.zeros(4, np.uint64), np.zeros((2, 2))],
    ids=["float", "int64", "wider word", "2-D"],
)
def test_a_masked_input_of_the_wrong_type_is_a_named_error_not_a_numpy_crash(
    masked: np.ndarray,
) -> None:
    with pytest.raises(TamperedMessageError, match="masked input is a 1-D uint32 vector"):
        MaskedInput(5, 3, 32, masked).to_bytes()


@pytest.mark.parametrize(
    "entry", [b"\x01" * 64, (b"\x01" * 32, b"\x02" * 32), None], ids=["bytes", "tuple", "None"]
)
def test_a_key_directory_with_wrong_value_types_is_a_named_error(entry: object) -> None:
    with pytest.raises(TamperedMessageError, match="must be PublicKeys"):
        KeyDirectory(5, SERVER_ID, 3, {1: entry}).to_bytes()  # type: ignore[dict-item]


def test_public_keys_of_the_wrong_size_are_refused_before_encoding() -> None:
    with pytest.raises(TamperedMessageError, match="seed_commitment must be 32 bytes"):
        AdvertiseKeys(5, 3, PublicKeys(b"\x01" * 32, b"\x02" * 32, b"short")).to_bytes()
    with pytest.raises(TamperedMessageError, match="MAC 1 is not 16 bytes"):
        AdvertiseKeys(5, 3, KEYS, (TAG, b"x")).to_bytes()
    with pytest.raises(TamperedMessageError, match=r"KeyDirectory\.tags: MAC 1 is not 16 bytes"):
        KeyDirectory(5, SERVER_ID, 3, {1: KEYS}, {1: b"x"}).to_bytes()
    with pytest.raises(TamperedMessageError, match="aggregate signature is 96 bytes"):
        UnmaskingRequest(5, SERVER_ID, 3, (1,), (1,), b"\x01" * 64).to_bytes()


def test_an_aggregate_signature_length_other_than_absent_or_96_is_refused_when_parsing() -> None:
    data = bytearray(UnmaskingRequest(5, SERVER_ID, 3, (1,), (1,), b"\x01" * 96).to_bytes())
    data[-97] = 64  # the signature length byte
    with pytest.raises(TamperedMessageError, match="aggregate signature is 96 bytes or absent"):
        decode_message(bytes(data[:-32]))


def test_revealed_shares_are_packed_and_parsed_as_arrays() -> None:
    other = b"\x00" * (shamir.VALUE_BYTES - 4) + b"\x00\x00\x01\x00"
    message = UnmaskingResponse(5, 3, {9: other, 1: SHARE}, {})
    data = message.to_bytes()
    # header + two share tables: count, ids, then the values back to back (no per-entry
    # framing); then the (empty) table of pair-mask keys
    assert len(data) == 18 + (4 + 2 * (8 + shamir.VALUE_BYTES)) + 4 + 4
    decoded = UnmaskingResponse.from_bytes(data)
    table = decoded.seed_shares
    assert isinstance(table, ShareTable) and table == {1: SHARE, 9: other}
    assert table.ids.tolist() == [1, 9] and table.limbs[1, -1] == 256
    assert sorted(table.values()) == sorted([SHARE, other])
    assert UnmaskingResponse.from_bytes(decoded.to_bytes()) == message  # re-encodes canonically
    assert "hidden" in repr(table)


def test_pair_mask_keys_are_sixteen_bytes_each_and_anything_else_is_refused() -> None:
    key = bytes(range(16))
    data = UnmaskingResponse(5, 3, {}, {4: SHARE}, {4: key}).to_bytes()
    assert len(data) == 18 + 4 + (4 + 8 + shamir.VALUE_BYTES) + (4 + 8 + 16)
    assert UnmaskingResponse.from_bytes(data).pair_keys == {4: key}
    with pytest.raises(TamperedMessageError, match="16 bytes"):
        UnmaskingResponse(5, 3, {}, {4: SHARE}, {4: key[:15]}).to_bytes()
    with pytest.raises(TamperedMessageError):  # a truncated key
        decode_message(data[:-1])


def test_revealed_shares_that_are_not_field_elements_or_unsorted_are_refused() -> None:
    data = bytearray(UnmaskingResponse(5, 3, {1: SHARE}, {}).to_bytes())
    data[18 + 4 + 8 : 18 + 4 + 12] = (2**31 - 1).to_bytes(4, "big")  # a limb equal to p
    with pytest.raises(TamperedMessageError, match="field element"):
        decode_message(bytes(data))
    two = UnmaskingResponse(5, 3, {1: SHARE, 2: SHARE}, {}).to_bytes()
    swapped = two[:22] + two[30:38] + two[22:30] + two[38:]
    with pytest.raises(TamperedMessageError, match="duplicated or out of order"):
        decode_message(swapped)


def test_bundle_tables_have_one_entry_size() -> None:
    data = ShareKeys(5, 3, {1: b"a" * 88, 2: b"b" * 88}).to_bytes()
    assert len(data) == 18 + 8 + 2 * (8 + 88)  # count, size, then id + bundle per entry
    with pytest.raises(TamperedMessageError, match="same size"):
        ShareKeys(5, 3, {1: b"a" * 88, 2: b"b" * 87}).to_bytes()
    with pytest.raises(TamperedMessageError, match="more than the message can hold"):
        decode_message(data[:-1])


def _inflate_every_field(message: Message, width: int) -> None:
    """Set every ``width``-byte window of the message to 0xff..ff and decode it: it must parse
    or raise TamperedMessageError, allocating at most a few times the bytes given."""
    data = message.to_bytes()
    for at in range(len(data) - width + 1):
        inflated = data[:at] + b"\xff" * width + data[at + width :]
        tracemalloc.start()
        try:
            decode_message(inflated)
        except TamperedMessageError:
            pass
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 8 * len(data) + 64 * 1024, (type(message).__name__, at, peak)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("width", [4, 8])
def test_an_inflated_length_field_is_refused_before_anything_is_allocated(
    message: Message, width: int
) -> None:
    """Every 4- and 8-byte window of every message set to a huge number (a length of 2^32 - 1
    or 2^64 - 1 where the window is a length field): no declared length is trusted before it
    is checked against the bytes present."""
    _inflate_every_field(message, width)


def test_a_reader_that_trusts_a_declared_length_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check against a reader that allocates what the frame declares, then reads."""
    real = _Reader.array

    def trusting(self: _Reader, dtype: np.dtype, count: int) -> np.ndarray:
        np.ones(min(count, 2**27), dtype=dtype)  # what a decoder sized by the header does
        return real(self, dtype, count)

    monkeypatch.setattr(_Reader, "array", trusting)
    with pytest.raises(AssertionError):
        _inflate_every_field(MaskedInput(5, 3, 32, np.arange(6, dtype=np.uint32)), 8)
