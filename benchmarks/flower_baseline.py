"""Flower's SecAgg+ primitives doing the same protocol work as one secagg masking round.

This is the baseline of ratio (c) in ``benchmarks.secagg``. It is not Flower's workflow (that
needs a SuperLink and SuperNodes); it calls Flower's own primitive functions, in the order
Flower's client mod (``flwr.client.mod.secure_aggregation.secaggplus_mod``) and server
workflow (``flwr.server.workflow.secure_aggregation.secaggplus_workflow``) call them:

- advertise_keys: two SECP384R1 key pairs per client, PEM-serialised
  (``flwr.supercore.primitives.asymmetric``);
- share_keys: ``create_shares`` (pycryptodome Shamir over GF(2^128)) of the 32-byte mask seed
  and of the PEM private key; per neighbour ``generate_shared_key`` (ECDH + HKDF) and Fernet
  ``encrypt`` of ``share_keys_plaintext_concat``;
- masked_input: Fernet ``decrypt`` of every neighbour's bundle; self-mask and one pairwise
  mask per neighbour from ``pseudo_rand_gen`` (NumPy MT19937 seeded with a 32-bit fold of
  the key), ``parameters_addition``/``subtraction``/``mod``; ``ndarray_to_bytes``;
- server: ``bytes_to_ndarray`` + ``parameters_addition`` per masked vector; for unmasking
  ``combine_shares`` per secret, ``pseudo_rand_gen`` per mask to remove, ``parameters_mod``.

Same workload as ours: the same client ids, neighbour graph (our Harary graph), share
threshold t_s, vectors (d values mod 2^32, the first carrying Flower's weight factor) and
the same clients dropping before they send their masked input. Like-for-like choices, both
documented in benchmarks/README.md: the server combines exactly t_s shares per secret, and
regenerates only the masks between a dropped client and its *surviving* neighbours (Flower's
workflow also redoes masks between two dropped neighbours, which cancel). Quantisation and
dequantisation are outside both measurements (our round also takes quantized inputs).

Sampling. Flower's Shamir and MT PRG are slow enough that running every client of a
100-client, 10^6-value round takes minutes, so only ``timed`` clients run their full client
work under the clock (every survivor does identical work, so their mean is the per-client
figure); the others prepare just what the server and the timed clients need, off the clock.
The server's work is always complete and always timed. With ``exact_sum=True`` the other
survivors' masked vectors are built so that the masked sum is exactly the protocol's (masks
between two untimed survivors cancel and are skipped), and the unmasked result is checked
against the plaintext sum; otherwise timed clients' vectors stand in for them (same cost for
the server, meaningless sum, ``sum_verified`` is None).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PHASES = ("advertise_keys", "share_keys", "masked_input", "unmasking")
#: Flower's SecAgg+ group is Z_{2^32} at most ("modulus_range" <= 2^32).
MOD_RANGE = 2**32
_ID_BYTES = 8  # a node id in a message list
_DUMMY_FERNET_KEY = b"A" * 43 + b"="  # only to learn a ciphertext's length


@dataclass(frozen=True)
class _Flower:
    """The Flower functions the baseline calls, resolved once (flwr is optional)."""

    version: str
    generate_key_pairs: Callable[..., Any]
    private_key_to_bytes: Callable[..., Any]
    public_key_to_bytes: Callable[..., Any]
    bytes_to_private_key: Callable[..., Any]
    bytes_to_public_key: Callable[..., Any]
    generate_shared_key: Callable[..., Any]
    encrypt: Callable[..., Any]
    decrypt: Callable[..., Any]
    create_shares: Callable[..., Any]
    combine_shares: Callable[..., Any]
    pseudo_rand_gen: Callable[..., Any]
    share_keys_plaintext_concat: Callable[..., Any]
    share_keys_plaintext_separate: Callable[..., Any]
    parameters_addition: Callable[..., Any]
    parameters_subtraction: Callable[..., Any]
    parameters_mod: Callable[..., Any]
    factor_combine: Callable[..., Any]
    factor_extract: Callable[..., Any]
    ndarray_to_bytes: Callable[..., Any]
    bytes_to_ndarray: Callable[..., Any]


def load_flower() -> tuple[_Flower | None, str]:
    """Flower's primitives, or None and the reason they are unavailable."""
    try:
        from importlib.metadata import version

        from flwr.common import bytes_to_ndarray, ndarray_to_bytes
        from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
        from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
            decrypt,
            encrypt,
            generate_shared_key,
        )
        from flwr.common.secure_aggregation.ndarrays_arithmetic import (
            factor_combine,
            factor_extract,
            parameters_addition,
            parameters_mod,
            parameters_subtraction,
        )
        from flwr.common.secure_aggregation.secaggplus_utils import (
            pseudo_rand_gen,
            share_keys_plaintext_concat,
            share_keys_plaintext_separate,
        )
        from flwr.supercore.primitives.asymmetric import (
            bytes_to_private_key,
            bytes_to_public_key,
            generate_key_pairs,
            private_key_to_bytes,
            public_key_to_bytes,
        )
    except ImportError as exc:
        return None, (
            f"flwr is not importable ({exc}); install it with `pip install -e .[bench]` "
            "to measure the Flower baseline"
        )
    return (
        _Flower(
            version("flwr"),
            generate_key_pairs,
            private_key_to_bytes,
            public_key_to_bytes,
            bytes_to_private_key,
            bytes_to_public_key,
            generate_shared_key,
            encrypt,
            decrypt,
            create_shares,
            combine_shares,
            pseudo_rand_gen,
            share_keys_plaintext_concat,
            share_keys_plaintext_separate,
            parameters_addition,
            parameters_subtraction,
            parameters_mod,
            factor_combine,
            factor_extract,
            ndarray_to_bytes,
            bytes_to_ndarray,
        ),
        "",
    )


@dataclass(frozen=True)
class FlowerWorkload:
    """One round's work, described exactly as our masking round sees it."""

    inputs: Mapping[int, np.ndarray]  # client id -> d values in [0, 2^32)
    neighbors: Mapping[int, frozenset[int]]  # client id -> its neighbours (not itself)
    share_threshold: int  # t_s: shares needed to rebuild one secret
    dropped: frozenset[int]  # clients that go silent before sending their masked input
    timed: frozenset[int]  # surviving clients whose client-side work is timed
    exact_sum: bool = True


@dataclass
class FlowerRoundResult:
    """CPU seconds (time.process_time) per phase, payload bytes, and what was checked."""

    client_seconds: dict[str, float]  # phase -> mean over timed clients
    server_seconds: dict[str, float]  # phase -> whole server
    bytes_sent_per_client: float  # mean over timed clients; payload only, no protobuf framing
    clients_timed: int
    masks_regenerated: int
    sum_verified: bool | None


@dataclass
class _Client:
    """One Flower client's state (mirrors ``SecAggPlusState``)."""

    nid: int
    sk1: bytes = b""
    pk1: bytes = b""
    sk2: bytes = b""
    pk2: bytes = b""
    rd_seed: bytes = b""
    b_shares: list[bytes] = field(default_factory=list)  # shares of rd_seed, by holder index
    sk1_shares: list[bytes] = field(default_factory=list)
    ss2: dict[int, bytes] = field(default_factory=dict)
    rd_seed_share_dict: dict[int, bytes] = field(default_factory=dict)  # owner -> share held
    sk1_share_dict: dict[int, bytes] = field(default_factory=dict)
    sent: int = 0


class _Clock:
    """Accumulates CPU seconds per phase for one party."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._phase = ""
        self._start = 0.0

    def __enter__(self) -> _Clock:
        self._start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._phase] += time.process_time() - self._start

    def __call__(self, phase: str) -> _Clock:
        self._phase = phase
        return self


def run_flower_round(flwr: _Flower, work: FlowerWorkload) -> FlowerRoundResult:
    """Run the round with Flower's primitives; time the timed clients and the whole server."""
    ids = sorted(work.inputs)
    t = work.share_threshold
    survivors = [c for c in ids if c not in work.dropped]
    holders = {c: sorted(work.neighbors[c] | {c}) for c in ids}  # Flower's neighbour set
    index = {c: {h: i for i, h in enumerate(holders[c])} for c in ids}  # holder -> share idx
    clients = {c: _Client(c) for c in ids}
    client_clock = {c: _Clock() for c in work.timed}
    server = _Clock()

    def clock(c: int, phase: str) -> _Clock:
        return client_clock[c](phase) if c in work.timed else _Clock()(phase)

    # ---- advertise_keys: every client (cheap), the server builds each key directory ------
    for c in ids:
        with clock(c, "advertise_keys"):
            me = clients[c]
            sk1, pk1 = flwr.generate_key_pairs()
            sk2, pk2 = flwr.generate_key_pairs()
            me.sk1, me.pk1 = flwr.private_key_to_bytes(sk1), flwr.public_key_to_bytes(pk1)
            me.sk2, me.pk2 = flwr.private_key_to_bytes(sk2), flwr.public_key_to_bytes(pk2)
            me.sent += len(me.pk1) + len(me.pk2)
    with server("advertise_keys"):
        public = {c: (clients[c].pk1, clients[c].pk2) for c in ids}
        directory = {c: {h: public[h] for h in holders[c]} for c in ids}

    # ---- share_keys ---------------------------------------------------------------------
    bundles: dict[int, dict[int, bytes]] = {}  # sender -> recipient -> ciphertext
    sk_share_len = 0
    for c in ids:
        me, keys = clients[c], directory[c]
        if c in work.timed:
            with clock(c, "share_keys"):
                me.rd_seed = os.urandom(32)
                me.b_shares = flwr.create_shares(me.rd_seed, t, len(holders[c]))
                me.sk1_shares = flwr.create_shares(me.sk1, t, len(holders[c]))
                out = {}
                for i, h in enumerate(holders[c]):
                    if h == c:
                        me.rd_seed_share_dict[c] = me.b_shares[i]
                        me.sk1_share_dict[c] = me.sk1_shares[i]
                        continue
                    key = flwr.generate_shared_key(
                        flwr.bytes_to_private_key(me.sk2), flwr.bytes_to_public_key(keys[h][1])
                    )
                    me.ss2[h] = key
                    plaintext = flwr.share_keys_plaintext_concat(
                        c, h, me.b_shares[i], me.sk1_shares[i]
                    )
                    out[h] = flwr.encrypt(key, plaintext)
                me.sent += sum(len(x) + _ID_BYTES for x in out.values())
            bundles[c] = out
            sk_share_len = len(me.sk1_shares[0])
        else:
            # Off the clock: only what the server and the timed clients will read.
            me.rd_seed = os.urandom(32)
            me.b_shares = flwr.create_shares(me.rd_seed, t, len(holders[c]))
            if c in work.dropped:  # the server rebuilds only dropped clients' mask keys
                me.sk1_shares = flwr.create_shares(me.sk1, t, len(holders[c]))
            bundles[c] = {h: b"" for h in holders[c] if h != c}  # filled below
    if not sk_share_len:
        sk_share_len = len(flwr.create_shares(clients[ids[0]].sk1, t, t)[0])
    bundle_len = 0  # every bundle has the same plaintext length, hence ciphertext length
    for c in ids:
        if c in work.timed:
            continue
        me = clients[c]
        for h in bundles[c]:
            i = index[c][h]
            sk_share = me.sk1_shares[i] if me.sk1_shares else os.urandom(sk_share_len)
            plaintext = flwr.share_keys_plaintext_concat(c, h, me.b_shares[i], sk_share)
            if h in work.timed:  # a real ciphertext: the timed holder decrypts it
                key = flwr.generate_shared_key(
                    flwr.bytes_to_private_key(me.sk2), flwr.bytes_to_public_key(public[h][1])
                )
                clients[h].ss2[c] = key
                bundles[c][h] = flwr.encrypt(key, plaintext)
            else:  # same length, for the server's routing; never opened
                if not bundle_len:
                    bundle_len = len(flwr.encrypt(_DUMMY_FERNET_KEY, plaintext))
                bundles[c][h] = os.urandom(bundle_len)
    with server("share_keys"):
        forward: dict[int, list[tuple[int, bytes]]] = {c: [] for c in ids}
        for sender, out in bundles.items():
            for recipient, ciphertext in out.items():
                forward[recipient].append((sender, ciphertext))
    del bundles

    # ---- masked_input: survivors only; the server sums as vectors arrive ----------------
    def vector(c: int) -> list[np.ndarray]:
        x = work.inputs[c].astype(np.int64)
        return flwr.factor_combine(x[0], [x[1:]])  # [weight factor] + parameters

    shapes: list[tuple[int, ...]] = [(1,), (next(iter(work.inputs.values())).size - 1,)]
    masked_total: list[np.ndarray] | None = None
    stand_ins: list[list[bytes]] = []
    timed_first = sorted(survivors, key=lambda c: c not in work.timed)
    for c in timed_first:
        me = clients[c]
        if c in work.timed:
            params = vector(c)
            with clock(c, "masked_input"):
                for src, ciphertext in forward[c]:
                    plaintext = flwr.decrypt(me.ss2[src], ciphertext)
                    actual, dst, b_share, sk_share = flwr.share_keys_plaintext_separate(plaintext)
                    if actual != src or dst != c:
                        raise RuntimeError(f"bundle {src}->{c} names {actual}->{dst}")
                    me.rd_seed_share_dict[src], me.sk1_share_dict[src] = b_share, sk_share
                params = flwr.parameters_addition(
                    params, flwr.pseudo_rand_gen(me.rd_seed, MOD_RANGE, shapes)
                )
                for v in sorted(work.neighbors[c]):
                    key = flwr.generate_shared_key(
                        flwr.bytes_to_private_key(me.sk1), flwr.bytes_to_public_key(public[v][0])
                    )
                    mask = flwr.pseudo_rand_gen(key, MOD_RANGE, shapes)
                    if c > v:
                        params = flwr.parameters_addition(params, mask)
                    else:
                        params = flwr.parameters_subtraction(params, mask)
                params = flwr.parameters_mod(params, MOD_RANGE)
                payload = [flwr.ndarray_to_bytes(a) for a in params]
                me.sent += sum(map(len, payload))
            if not work.exact_sum and len(stand_ins) < 4:
                stand_ins.append(payload)
        elif work.exact_sum:
            payload = _untimed_masked_input(flwr, work, c, me, public, vector(c), shapes)
        else:  # timed clients come first, so there is always a stand-in
            payload = stand_ins[c % len(stand_ins)]
        with server("masked_input"):
            arrays = [flwr.bytes_to_ndarray(b) for b in payload]
            if masked_total is None:
                masked_total = arrays
            else:
                masked_total = flwr.parameters_addition(masked_total, arrays)
    if masked_total is None:
        raise RuntimeError("no client survived to send a masked input")
    with server("masked_input"):
        masked_total = flwr.parameters_mod(masked_total, MOD_RANGE)

    # ---- unmasking ------------------------------------------------------------------------
    alive = set(survivors)
    responses: dict[int, dict[int, bytes]] = {}  # owner -> holder -> share
    for c in survivors:
        me = clients[c]
        active = [h for h in holders[c] if h in alive]
        dead = [h for h in holders[c] if h in work.dropped]
        if c in work.timed:
            with clock(c, "unmasking"):
                shares = [me.rd_seed_share_dict[o] for o in active]
                shares += [me.sk1_share_dict[o] for o in dead]
                me.sent += sum(map(len, shares)) + _ID_BYTES * len(shares)
        else:  # an untimed holder's share of owner o is simply o's share list entry
            shares = [clients[o].b_shares[index[o][c]] for o in active]
            shares += [clients[o].sk1_shares[index[o][c]] for o in dead]
        for owner, share in zip(active + dead, shares, strict=True):
            responses.setdefault(owner, {})[c] = share

    regenerated = 0
    with server("unmasking"):
        total = masked_total
        for owner in sorted(responses):
            share_list = list(responses[owner].values())
            if len(share_list) < t:
                raise RuntimeError(f"only {len(share_list)} shares of client {owner}'s secret")
            secret = flwr.combine_shares(share_list[:t])
            if owner in alive:
                total = flwr.parameters_subtraction(
                    total, flwr.pseudo_rand_gen(secret, MOD_RANGE, shapes)
                )
                regenerated += 1
                continue
            private = flwr.bytes_to_private_key(secret)
            for v in sorted(work.neighbors[owner] & alive):
                key = flwr.generate_shared_key(private, flwr.bytes_to_public_key(public[v][0]))
                mask = flwr.pseudo_rand_gen(key, MOD_RANGE, shapes)
                if owner > v:
                    total = flwr.parameters_addition(total, mask)
                else:
                    total = flwr.parameters_subtraction(total, mask)
                regenerated += 1
        total = flwr.parameters_mod(total, MOD_RANGE)
        factor, params_sum = flwr.factor_extract(total)

    verified: bool | None = None
    if work.exact_sum:
        expected = np.zeros(shapes[1][0] + 1, dtype=np.uint32)
        for c in survivors:
            np.add(expected, work.inputs[c], out=expected)
        got = np.concatenate([[factor], params_sum[0]]).astype(np.uint32)
        verified = bool(np.array_equal(got, expected))

    timed = sorted(work.timed)
    return FlowerRoundResult(
        client_seconds={
            p: float(np.mean([client_clock[c].seconds[p] for c in timed])) for p in PHASES
        },
        server_seconds=server.seconds,
        bytes_sent_per_client=float(np.mean([clients[c].sent for c in timed])),
        clients_timed=len(timed),
        masks_regenerated=regenerated,
        sum_verified=verified,
    )


def _untimed_masked_input(
    flwr: _Flower,
    work: FlowerWorkload,
    c: int,
    me: _Client,
    public: Mapping[int, tuple[bytes, bytes]],
    params: list[np.ndarray],
    shapes: list[tuple[int, ...]],
) -> list[bytes]:
    """An untimed survivor's masked vector, exact in the sum: masks between two untimed
    survivors cancel there, so only the self-mask and masks towards timed or dropped
    neighbours are added."""
    params = flwr.parameters_addition(params, flwr.pseudo_rand_gen(me.rd_seed, MOD_RANGE, shapes))
    for v in sorted(work.neighbors[c]):
        if v not in work.timed and v not in work.dropped:
            continue
        key = flwr.generate_shared_key(
            flwr.bytes_to_private_key(me.sk1), flwr.bytes_to_public_key(public[v][0])
        )
        mask = flwr.pseudo_rand_gen(key, MOD_RANGE, shapes)
        if c > v:
            params = flwr.parameters_addition(params, mask)
        else:
            params = flwr.parameters_subtraction(params, mask)
    return [flwr.ndarray_to_bytes(a) for a in flwr.parameters_mod(params, MOD_RANGE)]


def pick_timed(survivors: Collection[int], count: int, seed: int) -> frozenset[int]:
    """``count`` survivors chosen at random (all of them when count >= len(survivors))."""
    pool = sorted(survivors)
    if count >= len(pool):
        return frozenset(pool)
    rng = np.random.default_rng(seed)
    return frozenset(int(c) for c in rng.choice(pool, size=count, replace=False))
