"""Removing the masks that do not cancel, from the shares the holders revealed.

Shared by the server (at the end of a round) and by anyone who audits a round from its
public record: given the round's public keys, the sum of the survivors' masked inputs and
the revealed shares, it rebuilds every needed secret, checks it (b_u against the commitment
H(b_u) its owner published, s_u against its public key), and subtracts

- the self-mask PRG(b_u) of every survivor u;
- the pairwise masks between each dropped client d (whose s_d it rebuilds) and d's surviving
  neighbours, which those survivors added but d never will.

A rebuilt secret that fails its check is decoded again from all of its shares with error
correction (:mod:`secagg.crypto.reed_solomon`), and the holders whose shares were wrong are
named; beyond what can be corrected, :class:`~secagg.errors.CryptoError` (never a wrong sum).
A secret that passes is used, and every other share of it is checked exactly against the
polynomial through the shares used (wrong ones are named too).

Pair-mask keys. A survivor v also reveals its own pair-mask key with each dropped
neighbour d (``pair_keys``: survivor -> dropped -> key), under the same condition as its
share of s_d. The server uses it instead of agreeing X25519(s_d, s_v) itself, and agrees
only for edges whose survivor gave no key (it went silent at unmasking, or an auditor who
rebuilds everything from shares). A wrong key from v is no new power: the mask it fails to
cancel sits in v's own masked input, so it is the same as v sending another input. What it
reveals: to read x_u the server needs b_u and every pair key of u. Honest holders that
reveal b_u (u survived, in their view) never reveal their key with u, and b_u needs a
strict majority of u's neighbourhood, so the keys of that majority must come from
rebuilding their own s_v, i.e. from a majority of *their* holders calling them dropped:
the attack of lying about whole neighbourhoods, which the signed survivor set stops
(tests/masking/test_masking_privacy.py, test_masking_attacks.py). Hence keys are revealed
only where every client answers for one survivor set (:attr:`MaskingParams.reveals_pair_keys`:
signed, or read from the chain). Unsigned, the victim itself would be the leak: told that
one side of its neighbours dropped, it reveals its keys with them, while that side is told
it survived (b_u) and the other side that it dropped (their keys with it): three views read
x_u (tests/masking/test_masking_session.py).

Cost. Shares are held as arrays (:class:`RevealedShares`: 36 bytes per share, no Python
object each); a secret is rebuilt with one Lagrange vector per distinct set of t_s holders
(cached, and the holder sets are chosen so that neighbouring owners share them). What
remains is one keystream per (dropped client, surviving neighbour) edge and per survivor,
plus one X25519 agreement and one HKDF per edge whose key was not revealed. The edges are
independent: with
``workers = 2`` (the default when there is enough of them) a second process rebuilds half of
them into its own accumulator, which is added at the end; memory stays O(d) per process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from secagg.crypto import reed_solomon, shamir
from secagg.crypto.agreement import agree, key_pair_from_private_bytes
from secagg.crypto.prg import MaskGenerator
from secagg.errors import CryptoError
from secagg.masking.graph import NeighborGraph
from secagg.masking.messages import PublicKeys
from secagg.masking.params import (
    MaskingParams,
    pair_mask_key,
    seed_commitment,
    self_mask_key,
)

#: owner -> holder -> the share of owner's secret that holder revealed
Shares = Mapping[int, Mapping[int, shamir.Share]]
#: Below this many mask words (edges x d) the pair masks are rebuilt in this process only.
PARALLEL_MIN_WORDS = 2 * 10**8


class RevealedShares:
    """The shares of one kind (b or s) revealed in a round, as arrays.

    :meth:`add` takes one holder's answer (owners and their share values); :meth:`grouped`
    sorts everything by owner once. Values are kept as uint32 limbs (36 bytes per share).
    """

    def __init__(self) -> None:
        self._holders: list[np.ndarray] = []
        self._owners: list[np.ndarray] = []
        self._values: list[np.ndarray] = []

    def add(self, holder: int, owners: Sequence[int] | np.ndarray, values: np.ndarray) -> None:
        owners = np.asarray(owners, dtype=np.uint64)
        if owners.size:
            self._holders.append(np.full(owners.size, holder, dtype=np.uint64))
            self._owners.append(owners)
            self._values.append(np.asarray(values, dtype=np.uint32).reshape(owners.size, -1))

    @classmethod
    def from_mapping(cls, shares: Shares) -> RevealedShares:
        """From the nested-mapping form (owner -> holder -> Share) an auditor builds."""
        revealed = cls()
        for owner, by_holder in shares.items():
            for holder, share in by_holder.items():
                revealed.add(holder, [owner], np.array([share.y], dtype=np.int64))
        return revealed

    def grouped(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """owner -> (holders, values) with holders in increasing order."""
        if not self._owners:
            return {}
        owners = np.concatenate(self._owners)
        holders = np.concatenate(self._holders)
        values = np.concatenate(self._values)
        order = np.lexsort((holders, owners))
        owners, holders, values = owners[order], holders[order], values[order]
        cuts = np.flatnonzero(np.diff(owners)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [owners.size]])
        return {
            int(owners[a]): (holders[a:b], values[a:b])
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        }

    def counts(self) -> dict[int, int]:
        """owner -> number of distinct holders that revealed a share of it."""
        if not self._owners:
            return {}
        owners, counts = np.unique(np.concatenate(self._owners), return_counts=True)
        return dict(zip(owners.tolist(), counts.tolist(), strict=True))


def remove_masks(
    params: MaskingParams,
    keys: Mapping[int, PublicKeys],
    total: np.ndarray,
    survivors: frozenset[int],
    to_recover: frozenset[int],
    seed_shares: Shares | RevealedShares,
    key_shares: Shares | RevealedShares,
    *,
    pair_keys: Mapping[int, Mapping[int, bytes]] | None = None,
    workers: int | None = None,
) -> dict[int, list[int]]:
    """Unmask ``total`` (the survivors' masked sum) in place; return holder -> wrong owners.

    Every count must already have been checked (at least t_s shares per secret). Holders'
    interpolation points come from ``params`` (:meth:`MaskingParams.share_point`), never from
    the shares. ``workers``: processes that regenerate the pair masks (None: 2 when the
    round has enough of them and the machine has two cores, else 1). ``pair_keys``: survivor
    -> dropped neighbour -> the pair-mask key the survivor revealed (see the module docstring).
    """
    graph, t_s = params.graph, params.share_threshold
    seeds = _as_arrays(seed_shares).grouped()
    secret_keys = _as_arrays(key_shares).grouped()
    wrong: dict[int, list[int]] = {}
    pick = _HolderPicker(graph, t_s)
    rebuild = _Rebuilder(params, pick, wrong)

    def seed_matches(owner: int, seed: bytes) -> bool:
        return seed_commitment(seed, params.round_id, owner) == keys[owner].seed_commitment

    def key_matches(owner: int, secret: bytes) -> bool:
        return key_pair_from_private_bytes(secret).public == keys[owner].masking

    self_masks = []
    for owner in _in_ring_order(graph, survivors):
        seed = rebuild(owner, "self-mask seed", seeds[owner], seed_matches)
        self_masks.append(self_mask_key(seed, params.round_id, owner))
    jobs: list[_PairJob] = []
    revealed = pair_keys or {}
    for dropped in _in_ring_order(graph, to_recover):
        secret = rebuild(dropped, "mask key", secret_keys[dropped], key_matches)
        peers = sorted(graph.neighbors(dropped) & survivors)
        held = tuple((v, keys[v].masking, revealed.get(v, {}).get(dropped)) for v in peers)
        jobs.append(_PairJob(dropped, secret, held))

    edges = sum(len(job.peers) for job in jobs)
    if workers is None:
        workers = 2 if edges * params.dim >= PARALLEL_MIN_WORDS and _cores() >= 2 else 1
    generator = MaskGenerator(params.bits)
    if workers <= 1 or len(jobs) < 2:
        add, subtract = _pair_keys(jobs, params.round_id)
        generator.apply(total, add=add, subtract=[*subtract, *self_masks], reduce=True)
        return wrong
    # Split the edges about evenly; the other process returns its partial sum of masks.
    half, running, split_at = edges / workers, 0, len(jobs)
    for i, job in enumerate(jobs):
        running += len(job.peers)
        if running >= half:
            split_at = i + 1
            break
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(
            _partial_masks, jobs[split_at:], params.round_id, params.bits, params.dim
        )
        add, subtract = _pair_keys(jobs[:split_at], params.round_id)
        generator.apply(total, add=add, subtract=[*subtract, *self_masks])
        partial = future.result()
    np.add(total, partial, out=total)
    generator.apply(total, reduce=True)
    return wrong


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _as_arrays(shares: Shares | RevealedShares) -> RevealedShares:
    return shares if isinstance(shares, RevealedShares) else RevealedShares.from_mapping(shares)


def _in_ring_order(graph: NeighborGraph, clients: frozenset[int]) -> list[int]:
    return [c for c in graph.ring if c in clients]


@dataclass(frozen=True, repr=False)
class _PairJob:
    """A dropped client's rebuilt mask key, and per surviving neighbour: its id, its public
    masking key and the pair-mask key it revealed (None: agree to get it)."""

    dropped: int
    private: bytes
    peers: tuple[tuple[int, bytes, bytes | None], ...]


def _pair_keys(jobs: Iterable[_PairJob], round_id: int) -> tuple[list[bytes], list[bytes]]:
    """PRG keys of the pair masks to add back and to subtract (survivor's sign undone)."""
    add: list[bytes] = []
    subtract: list[bytes] = []
    for job in jobs:
        private: X25519PrivateKey | None = None
        for survivor, raw, key in job.peers:
            if key is None:  # the survivor went silent: agree, as its key was never revealed
                if private is None:
                    private = X25519PrivateKey.from_private_bytes(job.private)
                key = pair_mask_key(agree(private, raw), round_id, job.dropped, survivor)
            # The survivor added +PRG(s) if dropped > survivor, else -PRG(s): undo it.
            (subtract if job.dropped > survivor else add).append(key)
    return add, subtract


def _partial_masks(jobs: list[_PairJob], round_id: int, bits: int, dim: int) -> np.ndarray:
    """In a worker process: sum of the pair masks of ``jobs`` to add to the total."""
    add, subtract = _pair_keys(jobs, round_id)
    partial = np.zeros(dim, dtype=MaskGenerator(bits).dtype)
    MaskGenerator(bits).apply(partial, add=add, subtract=subtract)
    return partial


class _Rebuilder:
    """Rebuilds one secret from its holders' shares, checks it, and names wrong holders.

    The fast path combines t_s shares (one cached Lagrange vector per holder set); once the
    secret passes its check those shares are known good, and the remaining ones are checked
    exactly against them. Only when the check fails are all the shares decoded with error
    correction.
    """

    def __init__(self, params: MaskingParams, pick: _HolderPicker, wrong: dict[int, list[int]]):
        self._points = params.share_points
        self._t_s = params.share_threshold
        self._pick = pick
        self._wrong = wrong
        # Lagrange rows predicting a share at x from the current basis, kept while owners
        # along the ring reuse that basis (their other holders are mostly the same too).
        self._basis: tuple[int, ...] = ()
        self._rows: dict[int, np.ndarray] = {}

    def _predictor(self, basis_xs: tuple[int, ...], xs: list[int]) -> np.ndarray:
        if basis_xs != self._basis:
            self._basis, self._rows = basis_xs, {}
        missing = [x for x in xs if x not in self._rows]
        if missing:
            self._rows.update(zip(missing, shamir.lagrange_matrix(basis_xs, missing), strict=True))
        return np.stack([self._rows[x] for x in xs])

    def __call__(
        self,
        owner: int,
        what: str,
        held: tuple[np.ndarray, np.ndarray],
        matches: Callable[[int, bytes], bool],
    ) -> bytes:
        holders_array, values = held
        holders = holders_array.tolist()
        points = [self._points[h] for h in holders]
        chosen = self._pick(owner, holders)
        basis_xs = tuple(points[i] for i in chosen)
        basis = values[chosen].astype(np.int64)
        try:
            limbs = shamir.combine_limbs(basis_xs, basis)
            secret = shamir.from_limbs(limbs, shamir.SECRET_BYTES)
            good = matches(owner, secret)
        except CryptoError:  # a wrong share can interpolate to limbs too large for a secret
            good = False
        if good:
            rest = np.setdiff1d(np.arange(len(holders)), chosen, assume_unique=True)
            rest_xs = [points[i] for i in rest]
            rows = reed_solomon.disagreeing_rows(
                basis_xs,
                basis,
                rest_xs,
                values[rest].astype(np.int64),
                matrix=self._predictor(basis_xs, rest_xs) if rest_xs else None,
            )
            bad = [holders[int(rest[r])] for r in rows]
        else:
            shares = [
                shamir.Share(x, tuple(int(v) for v in row))
                for x, row in zip(points, values.tolist(), strict=True)
            ]
            decoded = reed_solomon.decode(shares, self._t_s)
            if decoded is None or not matches(owner, decoded.secret):
                raise CryptoError(
                    f"the {len(holders)} shares of client {owner}'s {what} cannot be corrected "
                    f"into one that matches its commitment (t_s = {self._t_s}): too many "
                    "holders returned wrong shares, so the round aborts"
                )
            secret = decoded.secret
            wrong_points = set(decoded.wrong_xs)
            bad = [h for h, x in zip(holders, points, strict=True) if x in wrong_points]
        for holder in bad:
            self._wrong.setdefault(holder, []).append(owner)
        return secret


class _HolderPicker:
    """Chooses which t_s shares reconstruct each secret, so that many owners use the same set.

    Any t_s shares will do, but Lagrange coefficients depend only on the set of holders, and
    computing them is the costly part of a reconstruction. Owners are visited in ring order;
    an owner reuses the previous set whenever all of its holders answered, otherwise it takes
    the t_s available holders furthest ahead on the ring, which the next owners along the
    ring are most likely to share. With the complete graph one set serves every owner; on a
    ring, about one set per k + 1 - t_s owners.
    """

    def __init__(self, graph: NeighborGraph, threshold: int) -> None:
        self._graph = graph
        self._threshold = threshold
        self._previous: tuple[int, ...] = ()

    def __call__(self, owner: int, available: list[int]) -> np.ndarray:
        """Indices into ``available`` (sorted holder ids) of the t_s holders to use."""
        index = {h: i for i, h in enumerate(available)}
        chosen = self._previous
        if not chosen or not all(h in index for h in chosen):
            ahead = sorted(available, key=lambda h: self._graph.ring_offset(owner, h))
            chosen = tuple(sorted(ahead[-self._threshold :]))
            self._previous = chosen
        return np.array([index[h] for h in chosen], dtype=np.int64)
