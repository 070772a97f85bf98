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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

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
    share_x,
)

#: owner -> holder -> the share of owner's secret that holder revealed
Shares = Mapping[int, Mapping[int, shamir.Share]]


def remove_masks(
    params: MaskingParams,
    keys: Mapping[int, PublicKeys],
    total: np.ndarray,
    survivors: frozenset[int],
    to_recover: frozenset[int],
    seed_shares: Shares,
    key_shares: Shares,
) -> dict[int, list[int]]:
    """Unmask ``total`` (the survivors' masked sum) in place; return holder -> wrong owners.

    Every count must already have been checked (at least t_s shares per secret).
    """
    graph, t_s = params.graph, params.share_threshold
    wrong: dict[int, list[int]] = {}
    add: list[bytes] = []
    subtract: list[bytes] = []
    pick = _HolderPicker(graph, t_s)

    def seed_matches(owner: int, seed: bytes) -> bool:
        return seed_commitment(seed, params.round_id, owner) == keys[owner].seed_commitment

    def key_matches(owner: int, secret: bytes) -> bool:
        return key_pair_from_private_bytes(secret).public == keys[owner].masking

    # Collect every mask to remove first, then regenerate them all in one pass.
    for owner in _in_ring_order(graph, survivors):
        seed = _rebuild(owner, "self-mask seed", seed_shares[owner], t_s, pick, seed_matches, wrong)
        subtract.append(self_mask_key(seed, params.round_id, owner))
    for dropped in _in_ring_order(graph, to_recover):
        secret = _rebuild(dropped, "mask key", key_shares[dropped], t_s, pick, key_matches, wrong)
        key_pair = key_pair_from_private_bytes(secret)
        for survivor in sorted(graph.neighbors(dropped) & survivors):
            agreed = agree(key_pair.private, keys[survivor].masking)
            key = pair_mask_key(agreed, params.round_id, dropped, survivor)
            # The survivor added +PRG(s) if dropped > survivor, else -PRG(s): undo it.
            (subtract if dropped > survivor else add).append(key)
    MaskGenerator(params.bits).apply(total, add=add, subtract=subtract, reduce=True)
    return wrong


def _in_ring_order(graph: NeighborGraph, clients: frozenset[int]) -> list[int]:
    return [c for c in graph.ring if c in clients]


def _rebuild(
    owner: int,
    what: str,
    shares: Mapping[int, shamir.Share],
    t_s: int,
    pick: _HolderPicker,
    matches: Callable[[int, bytes], bool],
    wrong: dict[int, list[int]],
) -> bytes:
    """Rebuild one secret, check it, and name every holder whose share disagrees.

    The fast path combines t_s shares; once the secret passes its check those shares are
    known good, and the remaining ones are checked against them. Only when the check fails
    are all the shares decoded with error correction.
    """
    chosen = pick(owner, shares)
    try:
        secret = shamir.combine(chosen, t_s)
        good = matches(owner, secret)
    except CryptoError:  # a wrong share can interpolate to a value too large for a secret
        good = False
    if good:
        used = {s.x for s in chosen}
        bad_xs = reed_solomon.disagreeing(chosen, [s for s in shares.values() if s.x not in used])
    else:
        holders = sorted(shares)
        decoded = reed_solomon.decode([shares[h] for h in holders], t_s)
        if decoded is None or not matches(owner, decoded.secret):
            raise CryptoError(
                f"the {len(shares)} shares of client {owner}'s {what} cannot be corrected "
                f"into one that matches its commitment (t_s = {t_s}): too many holders "
                "returned wrong shares, so the round aborts"
            )
        secret, bad_xs = decoded.secret, decoded.wrong_xs
    for holder in shares:
        if share_x(holder) in bad_xs:
            wrong.setdefault(holder, []).append(owner)
    return secret


class _HolderPicker:
    """Chooses which t_s shares reconstruct each secret, so that many owners use the same set.

    Any t_s shares will do, but Lagrange coefficients depend only on the set of holders, and
    computing them is the costly part of a reconstruction (O(t_s^2) big-number operations).
    Owners are visited in ring order; an owner reuses the previous set whenever all of its
    holders answered, otherwise it takes the t_s available holders furthest ahead on the
    ring, which the next owners along the ring are most likely to share. With the complete
    graph one set serves every owner; on a ring, about one set per k + 1 - t_s owners.
    """

    def __init__(self, graph: NeighborGraph, threshold: int) -> None:
        self._graph = graph
        self._threshold = threshold
        self._previous: tuple[int, ...] = ()

    def __call__(self, owner: int, available: Mapping[int, shamir.Share]) -> list[shamir.Share]:
        chosen = self._previous
        if not chosen or not all(h in available for h in chosen):
            ahead = sorted(available, key=lambda h: self._graph.ring_offset(owner, h))
            chosen = tuple(sorted(ahead[-self._threshold :]))
            self._previous = chosen
        return [available[h] for h in chosen]
