"""Protocol constants and the public parameters of one masking round.

Everything both sides must agree on lives here: phase names, the server's sender id, the
parameters of a round (:class:`MaskingParams`), and the key-derivation contexts that bind every
derived key to its round and client pair.

Thresholds (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", CCS 2020). In SecAgg+ each client's secrets (the self-mask seed b_u and the mask key
s_u) are Shamir-shared only within its neighbourhood: itself plus its ``k`` neighbours, k + 1
holders. The per-neighbourhood threshold is a strict majority of that neighbourhood,

    t_s = floor((k + 1) / 2) + 1,

because that is what keeps b_u and s_u apart: a holder answers at most one unmasking request
and reveals either its share of b_u or its share of s_u, never both, so two disjoint groups of
t_s holders cannot exist and even a server that tells different holders different stories
about one client cannot gather t_s shares of both of its secrets. (With c colluding clients in
a neighbourhood the split needs c >= 2 t_s - (k + 1); the signed consistency round, or the
chain, is what stops the split then: every honest holder answers for the same survivor set.
Without any split, reconstruction of s_u for a survivor needs c >= t_s colluders.) On the
complete graph (k + 1 = n) t_s is the global threshold t: the original SecAgg.

The global threshold ``t`` (``threshold``) no longer sizes anything below the complete graph.
It is a consequence of the deployment's choices and a floor the clients enforce on their own:
the server learns only sums of at least t inputs (a client refuses a survivor set smaller
than t), and in a signed round t > n/2 signatures on one survivor set make it unique. Below
the complete graph that needs one more check, because the security bound below is for clients
lost at random. A server that picks whom to drop could silence the k/2 ring neighbours on
either side of an arc of t_s clients: every arc member keeps t_s of its neighbourhood, yet the
arc's sum unmasks alone. So clients also refuse a survivor set whose subgraph is not connected
(:meth:`NeighborGraph.connects`; tests/masking/test_masking_attacks.py), which random loss
triggers with probability at most the security bound's 2^-sigma. It must be a
strict majority (t > n/2); it enters the degree only through rho below (the largest loss a
completed round can have had) and through the hopeless case p >= 1 - t/n.

Degree. ``neighbors=0`` chooses ``k`` for both security and correctness (Bell et al. show
k = O(log n) suffices on a random Harary graph). All the bounds live in this module:

Security: the server learns partial sums only if the surviving clients' graph disconnects,
which on the ring requires two disjoint runs of k/2 consecutive lost clients. If each client
is lost (dropped or colluding) independently with probability at most rho, that happens with
probability <= n^2 rho^k. Requiring <= 2^-sigma:

    k >= k_sec = 2 * ceil((sigma + 2 log2 n) / (2 log2(1 / rho))),  rho = max(1 - t/n, 1/n),
    sigma = 40

rho = 1 - t/n is the largest loss the round tolerates. This is a union bound, not the paper's
exact constants; it is deliberately conservative. It needs the ring to be unpredictable when
clients are chosen: the ring is laid from the run's session (:mod:`secagg.masking.session`),
a commit-reveal of fresh client nonces agreed after registration, which no party chooses.

Colluders. A fraction gamma of the clients (``colluding_fraction``; C = floor(gamma n) stored
as :attr:`MaskingParams.colluders`) may collude with the server. Two things they could do:

- Read one input. If t_s - 1 of an honest client u's neighbours collude, the server drops u's
  honest neighbours: u still sees t_s of its neighbourhood survive (itself and the
  colluders), so it answers; b_u comes from the colluders' shares and u's own, the pair masks
  with the dropped from the revealed keys, those with the colluders from the colluders
  (tests/masking/test_masking_colluders.py; 21 colluders at n = 100, k = 42 on a ring they
  could predict). Since the session fixes the ring only after the colluders are fixed, u's
  colluding neighbours are hypergeometric (k draws from n - 1 holding C); the degree is
  sized so that

      (n - C) * P[Hypergeom(n - 1, C, k) >= t_s - 1]  <=  2^-sigma

  (:func:`collusion_failure_bound`; on the complete graph: C <= t - 2). The automatic degree
  meets it, and an explicit degree that does not is refused.
- Sign two survivor sets. In a signed round colluders sign both of two sets that split the
  honest clients; two sets gather t signatures when C >= 2t - n. Signed rounds refuse such
  parameters (raise t).

What colluders still get, by design of the ring: a server that picks who drops can cut an
arc of t_s honest clients off the rest by dropping the honest clients of its two k/2-wide
margins, while a colluder in each margin keeps the survivors connected: it learns that arc's
sum, t_s honest inputs instead of t (tests/masking/test_masking_colluders.py). Closing that
needs every holder to check the owner's neighbourhood against a threshold above
k/2 + 1 + (colluders in any k/2 consecutive positions), which at gamma = 0.1 and 30 % loss
costs several times the degree; it is not built.

Correctness: the round completes only if every neighbourhood whose secret must be recovered
(b_u of each survivor, s_u of each dropped client) keeps at least t_s alive holders, which is
implied by "every one of the n neighbourhoods keeps >= t_s survivors". If each client is lost
independently with probability ``dropout_rate`` = p over the whole round, a union bound over
the n neighbourhoods gives the failure probability

    n * P[Bin(k + 1, 1 - p) < t_s(k)]  +  P[Bin(n, 1 - p) < t]  <=  2^-eta,   eta = 20

(exact binomial tails; the second term, fewer than t survivors overall, aborts a round on any
graph, so when it alone exceeds the target no degree qualifies).

``auto_degree`` returns the smallest even k >= k_sec meeting this (t_s depends on k, so it is
searched, not solved), or n - 1 (the complete graph) when no k < n - 1 does. On the complete
graph completion is exactly "at least t clients survive", which no degree can improve. When
p >= 1 - t/n no degree makes completion likely: the result is n - 1 and the round completes
only when at least t clients happen to survive. p = 0 gives k_sec alone.

E.g. t = 0.6 n and no colluders (k_sec = 42 for n = 100, 46 for n = 1000, 52 for n = 10^4):

    ============  ========  ========  ========
    dropout_rate  n = 100   n = 1000  n = 10^4
    ============  ========  ========  ========
    0             42        46        52
    0.1 (default) 42        46        52
    0.2           99        80        90
    0.3           99        206       232
    ============  ========  ========  ========

With a majority t_s a neighbourhood surviving at rate 1 - p has a margin of (1 - p) - 1/2 over
its threshold, so k grows like log(n) / ((1 - p) - 1/2)^2: 30 % loss costs k = 206 at n = 1000
(t_s = 104), where tying t_s to t = 0.6 n left a margin of 0.1 and needed k = 792. Up to 10 %
loss the security degree alone suffices. (At n = 100 and 20 % or 30 % loss fewer than t = 60
clients survive too often for the 2^-20 target, on any graph; the complete graph is used.)

Consistency round. In a signed round a client must be convinced that t clients signed the
survivor set it was shown before it reveals anything: with t > n/2 and honest clients signing
one set each, two different sets can gather t signatures only if at least 2t - n clients
collude with the server. Every survivor signs the set with its BLS identity key; the server
adds the signatures up, and each client checks the sum against the sum of the named signers'
public keys in one pairing check (:mod:`secagg.crypto.aggregate`). That checks all t of them,
so the guarantee is Bonawitz et al.'s, for any number of colluders below 2t - n, at about the
cost of one signature check. (An earlier version verified a random sample of Ed25519
signatures; its bound counted forgeries only, and colluders' signatures on both sets are
genuine, so it held only with no colluders, the one case where the consistency round is not
needed at all.)

Advertised keys. The server relays each client's round keys to its neighbours; a neighbour
accepts them only with the owner's MAC under the pair key of their two identities
(:meth:`secagg.crypto.identity.IdentityKey.pair_key`, :func:`advert_tag`), which the server
does not know.

Share points. A holder's Shamir x-coordinate is 1 + its index among the round's sorted client
ids (:meth:`MaskingParams.share_point`): distinct, non-zero and below n + 1 whatever the ids
are, which keeps them in the small field of :mod:`secagg.crypto.shamir`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from numbers import Integral, Real

import numpy as np
from scipy.special import bdtr
from scipy.stats import hypergeom

from secagg.crypto import prg
from secagg.crypto.identity import IdentityDirectory
from secagg.crypto.kdf import derive_key, encode_context
from secagg.errors import ProtocolError
from secagg.masking.graph import NeighborGraph, harary_graph

ADVERTISE_KEYS = "advertise_keys"
SHARE_KEYS = "share_keys"
MASKED_INPUT = "masked_input"
CONSISTENCY_CHECK = "consistency_check"
UNMASKING = "unmasking"
#: Every phase in order; :attr:`MaskingParams.phases` drops ``consistency_check`` when the
#: round runs without identity keys.
PHASES = (ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASKING)
#: The two phases of the run's session set-up (:mod:`secagg.masking.session`), before any round.
SESSION_COMMIT = "session_commit"
SESSION_REVEAL = "session_reveal"
#: State of a party once the round is over (successfully or not).
FINISHED = "finished"

#: Sender id of the server; client ids are the non-negative integers below it.
SERVER_ID = 2**64 - 1
#: Statistical security parameter sigma of the automatic degree choice.
SECURITY_BITS = 40
#: Correctness parameter eta: the automatic degree lets a round abort with probability at most
#: 2^-eta when clients drop independently at the expected ``dropout_rate``.
CORRECTNESS_BITS = 20
#: Fraction of clients a deployment expects to lose over the whole round (all phases).
DEFAULT_DROPOUT_RATE = 0.1
#: Fraction gamma of the clients assumed to collude with the server (docstring, "Colluders").
DEFAULT_COLLUDING_FRACTION = 0.1
#: Bytes of the MAC on relayed round keys (HMAC-SHA256, truncated: 128-bit forgery bound).
TAG_BYTES = 16
#: Bits of the masked group are limited by the mask word (uint64).
MAX_BITS = prg.MAX_BITS


def security_degree(n: int, threshold: int) -> int:
    """k_sec: even degree keeping the surviving graph connected, capped at n - 1 (docstring)."""
    rho = max(1 - threshold / n, 1 / n)
    half = math.ceil((SECURITY_BITS + 2 * math.log2(n)) / (2 * math.log2(1 / rho)))
    return min(2 * half, n - 1)


def completion_failure_bound(n: int, threshold: int, degree: int, dropout_rate: float) -> float:
    """Bound on the abort probability when each client is lost with prob. ``dropout_rate``.

    Below the complete graph: the union bound n * P[Bin(k + 1, 1 - p) < t_s] over the n
    neighbourhoods plus P[Bin(n, 1 - p) < t] (fewer than t survivors abort any round),
    capped at 1. On the complete graph: exactly P[Bin(n, 1 - p) < t].
    """
    _check_fraction("dropout_rate", dropout_rate)
    too_few = float(bdtr(threshold - 1, n, 1 - dropout_rate))  # fewer than t survive at all
    if degree >= n - 1:
        return too_few
    t_s = share_threshold(n, threshold, degree)
    return min(1.0, n * float(bdtr(t_s - 1, degree + 1, 1 - dropout_rate)) + too_few)


def colluder_count(n: int, colluding_fraction: float) -> int:
    """C = floor(gamma * n): the colluding clients a round is sized against."""
    _check_fraction("colluding_fraction", colluding_fraction)
    return math.floor(round(colluding_fraction * n, 9))


def collusion_failure_bound(n: int, threshold: int, degree: int, colluders: int) -> float:
    """Bound on the probability that some honest client has t_s - 1 colluding neighbours.

    With that many (and the server dropping its honest neighbours) the colluders read its
    input alone (module docstring, "Colluders"). The graph is drawn from the run's session,
    which no party chooses, so the C colluders are a uniform C-subset of the other n - 1
    clients as seen from each honest client: its colluding neighbours are hypergeometric.
    Union bound over the n - C honest clients. On the complete graph every colluder is a
    neighbour: 0 if C <= t - 2, else 1.
    """
    if degree >= n - 1:
        return 0.0 if colluders <= threshold - 2 else 1.0
    need = share_threshold(n, threshold, degree) - 1
    tail = float(hypergeom.sf(need - 1, n - 1, colluders, degree))  # P[X >= need]
    return min(1.0, (n - colluders) * tail)


def auto_degree(
    n: int,
    threshold: int,
    dropout_rate: float = DEFAULT_DROPOUT_RATE,
    colluders: int = 0,
) -> int:
    """The SecAgg+ degree for n clients, threshold t, expected loss and C colluders.

    The smallest even k >= k_sec whose union-bound abort probability at ``dropout_rate`` is
    at most 2^-CORRECTNESS_BITS and whose collusion bound is at most 2^-SECURITY_BITS; n - 1
    (the complete graph) if none below n - 1 is (module docstring).
    """
    _check_fraction("dropout_rate", dropout_rate)
    k_sec = security_degree(n, threshold)
    if k_sec >= n - 1 or dropout_rate >= 1 - threshold / n:
        return n - 1
    ks = np.arange(max(k_sec, 2), n - 1, 2)
    t_s = (ks + 1) // 2 + 1
    too_few = bdtr(threshold - 1, n, 1 - dropout_rate)  # no degree helps with this term
    failure = n * bdtr(t_s - 1, ks + 1, 1 - dropout_rate) + too_few  # binomial CDFs
    exposed = (n - colluders) * hypergeom.sf(t_s - 2, n - 1, colluders, ks)
    ok = np.flatnonzero(
(failure <= 2.0**-CORRECTNESS_BITS) & (exposed <= 2.0**-SECURITY_BITS))
    return int(ks[ok[0]]) if ok.size else n - 1


def share_threshold(n: int, threshold: int, degree: int) -> int:
    """t_s: shares needed to rebuild a secret shared among a neighbourhood of k + 1 holders.

    A strict majority of the neighbourhood (module docstring); on the complete graph, t.
    """
    if degree >= n - 1:
        return threshold
    return (degree + 1) // 2 + 1


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise ProtocolError(f"{name} must be a fraction in [0, 1), got {value!r}")


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ProtocolError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _resolve_threshold(threshold: float | int, n: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, Real):
        raise ProtocolError(f"threshold must be a fraction in (0, 1) or a count, got {threshold!r}")
    if 0 < threshold < 1:
        # round() first: 0.6 * 10 is 6.000000000000001 in binary floating point.
        return math.ceil(round(float(threshold) * n, 9))
    if threshold >= 1 and float(threshold).is_integer():
        return int(threshold)
    raise ProtocolError(
        f"threshold must be a fraction in (0, 1) or a whole count >= 1, got {threshold!r}"
    )


@dataclass(frozen=True)
class MaskingParams:
    """The public parameters of one round; every client and the server hold the same copy.

    Build it with :meth:`create`; direct construction takes the resolved values (absolute
    threshold, explicit degree, colluder count) and validates them the same way.
    """

    client_ids: tuple[int, ...]
    dim: int
    threshold: int
    neighbors: int
    bits: int = 32
    round_id: int = 0
    #: The run's session (:mod:`secagg.masking.session`): fresh randomness no party chose. It
    #: seeds the graph and enters :attr:`digest`, so every MAC and signature of the round
    #: binds it and nothing signed in one run counts in another.
    session: bytes = field(default=b"", repr=False)
    #: C: clients assumed to collude with the server; the degree and t are checked against it.
    colluders: int = 0
    #: The survivor set reaches every client through a reliable broadcast channel (the chain),
    #: so no client can be shown another set: the round may reveal pair-mask keys then.
    broadcast: bool = False
    #: Identities of the clients (registered out of band). With them the round authenticates
    #: relayed keys and runs the signed consistency round; without them (None) the server is
    #: trusted not to tell different clients different survivor sets (honest-but-curious).
    identities: IdentityDirectory | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        client_ids: Iterable[int],
        dim: int,
        *,
        threshold: float | int = 0.6,
        neighbors: int = 0,
        bits: int = 32,
        round_id: int = 0,
        session: bytes = b"",
        dropout_rate: float = DEFAULT_DROPOUT_RATE,
        colluding_fraction: float = DEFAULT_COLLUDING_FRACTION,
        broadcast: bool = False,
        identities: IdentityDirectory | None = None,
    ) -> MaskingParams:
        """Resolve a fractional threshold and an automatic degree, then validate.

        ``threshold < 1`` is a fraction of the clients (rounded up), ``>= 1`` a count;
        ``neighbors = 0`` picks k = O(log n) (see the module docstring), ``n - 1`` gives the
        complete graph of the original SecAgg. ``dropout_rate``, the fraction of clients the
        deployment expects to lose over the round, only affects the automatic degree; it is
        not stored (the resulting k is, and the digest covers it). ``colluding_fraction`` is
        gamma: floor(gamma n) colluders are stored, and both the degree and t must hold
        against them.
        """
        ids = tuple(sorted(_int("client id", c) for c in client_ids))
        n = len(ids)
        if n < 2:
            raise ProtocolError(f"secure aggregation needs at least 2 clients, got {n}")
        t = _resolve_threshold(threshold, n)
        _check_fraction("dropout_rate", dropout_rate)
        colluders = colluder_count(n, colluding_fraction)
        k = _int("neighbors", neighbors)
        if k == 0:
            _check_threshold(t, n)
            k = auto_degree(n, t, dropout_rate, colluders)
        return cls(ids, dim, t, k, bits, round_id, session, colluders, broadcast, identities)

    def __post_init__(self) -> None:
        ids = self.client_ids
        if not isinstance(ids, tuple):
            raise ProtocolError("client_ids must be a tuple (use MaskingParams.create)")
        for c in ids:
            if _int("client id", c) < 0 or c >= SERVER_ID:
                raise ProtocolError(f"client ids must be integers in [0, 2^64 - 1), got {c}")
        if list(ids) != sorted(set(ids)):
            raise ProtocolError("client ids must be distinct (and sorted; use create())")
        n = len(ids)
        if n < 2:
            raise ProtocolError(f"secure aggregation needs at least 2 clients, got {n}")
        if _int("dim", self.dim) < 1:
            raise ProtocolError(f"dim must be a positive integer, got {self.dim}")
        _check_threshold(_int("threshold", self.threshold), n)
        k = _int("neighbors", self.neighbors)
        if not (k == n - 1 or (2 <= k < n - 1 and k % 2 == 0)):
            raise ProtocolError(
                f"neighbors must be even and in [2, {n - 2}], or {n - 1} for the complete graph "
                f"(or 0 in create() to choose automatically); got {k}"
            )
        if not 1 <= _int("bits", self.bits) <= MAX_BITS:
            raise ProtocolError(f"bits must be in [1, {MAX_BITS}], got {self.bits}")
        if not 0 <= _int("round_id", self.round_id) < 2**64:
            raise ProtocolError(f"round_id must be in [0, 2^64), got {self.round_id}")
        if not isinstance(self.session, bytes):
            raise ProtocolError(f"session must be bytes, got {type(self.session).__name__}")
        if not isinstance(self.broadcast, bool):
            raise ProtocolError(f"broadcast must be a bool, got {self.broadcast!r}")
        self._check_colluders(n, k)
        if self.identities is not None:
            if not isinstance(self.identities, IdentityDirectory):
                raise ProtocolError(
                    "identities must be an IdentityDirectory (client id -> registered identity), "
                    f"got {type(self.identities).__name__}"
                )
            unknown = [c for c in ids if c not in self.identities]
            if unknown:
                raise ProtocolError(
                    f"the identity directory has no key for client(s) {unknown[:10]}; every "
                    "client of a signed round must be registered"
                )

    def _check_colluders(self, n: int, k: int) -> None:
        """Refuse parameters under which C colluders could read one input (docstring)."""
        c, t = _int("colluders", self.colluders), self.threshold
        if not 0 <= c < n:
            raise ProtocolError(f"colluders must be in [0, {n}), got {c}")
        if self.identities is not None and c >= 2 * t - n:
            raise ProtocolError(
                f"{c} colluders can sign two survivor sets: with t = {t} of n = {n} the signed "
                f"consistency round needs C < 2t - n = {2 * t - n}; raise the threshold to at "
                f"least {(n + c) // 2 + 1} or lower the colluding fraction"
            )
        bound = collusion_failure_bound(n, t, k, c)
        if bound > 2.0**-SECURITY_BITS:
            raise ProtocolError(
                f"with degree {k}, {c} colluders sit on t_s - 1 neighbours of some honest "
                f"client with probability up to {bound:.3g} (> 2^-{SECURITY_BITS}), enough to "
                "read its input; use neighbors = 0 (automatic) or a larger degree"
                + ("" if k < n - 1 else f", or a threshold t >= {c + 2}")
            )

    @property
    def signed(self) -> bool:
        """Whether the round runs the signed consistency round (identity keys are set)."""
        return self.identities is not None

    @property
    def reveals_pair_keys(self) -> bool:
        """Whether survivors reveal their pair-mask keys with dropped neighbours.

        Only where every client answers for one survivor set (signed, or read from a
        broadcast channel): a server free to show different sets could ask a victim for its
        keys with the neighbours it calls dropped and the others for b_victim.
        """
        return self.signed or self.broadcast

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this round runs, in order."""
        return PHASES if self.signed else tuple(p for p in PHASES if p != CONSISTENCY_CHECK)

    @property
    def n(self) -> int:
        return len(self.client_ids)

    @property
    def share_threshold(self) -> int:
        """t_s: shares needed per reconstruction (see the module docstring)."""
        return share_threshold(self.n, self.threshold, self.neighbors)

    @cached_property
    def share_points(self) -> dict[int, int]:
        """client id -> its Shamir x-coordinate (1 + index among the sorted ids)."""
        return {c: i + 1 for i, c in enumerate(self.client_ids)}

    def share_point(self, client: int) -> int:
        """The Shamir x-coordinate of ``client``'s shares in this round (module docstring)."""
        try:
            return self.share_points[client]
        except KeyError:
            raise ProtocolError(f"client {client} is not one of this round's clients") from None

    @property
    def dtype(self) -> np.dtype:
        """Word type of inputs and masked vectors: uint32 for bits <= 32, else uint64."""
        return prg.word_dtype(self.bits)

    @cached_property
    def members(self) -> frozenset[int]:
        """The client ids as a set, for O(1) membership checks on every message."""
        return frozenset(self.client_ids)

    @cached_property
    def graph(self) -> NeighborGraph:
        return harary_graph(self.client_ids, self.neighbors, self.session, self.round_id)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the parameters, so parties can check they run the same round."""
        h = hashlib.sha256(
            encode_context(
                b"secagg/v2/params",
                self.n,
                self.dim,
                self.threshold,
                self.neighbors,
                self.bits,
                self.round_id,
                self.colluders,
                int(self.broadcast),
                len(self.session),
            )
        )
        h.update(self.session)
        h.update(b"".join(c.to_bytes(8, "big") for c in self.client_ids))
        # The PKI is part of the round: a client never signs for a round run under other keys.
        if self.identities is not None:
            h.update(b"".join(self.identities.raw(c) for c in self.client_ids))
        return h.digest()


def _check_threshold(t: int, n: int) -> None:
    if not n // 2 < t <= n:
        raise ProtocolError(
            f"threshold t = {t} must be a strict majority of the {n} clients "
            f"({n // 2 + 1} <= t <= {n}): with t <= n/2 a server could gather both secrets "
            "of one client from two disjoint halves of its share holders"
        )


# --------------------------------------------------------------------------------------------
# Key-derivation contexts. Client and server must derive identical keys, so both use these.
# --------------------------------------------------------------------------------------------

_SHARE_KEY = b"secagg/v2/share-bundle-key"
_SHARE_AD = b"secagg/v1/share"
_PAIR_MASK = b"secagg/v1/pair-mask"
_SELF_MASK = b"secagg/v1/self-mask"
_SEED_COMMITMENT = b"secagg/v1/seed-commitment"
_ADVERT_TAG = b"secagg/v2/advert-tag"
_ADVERT_TAG_PREFIX = encode_context(_ADVERT_TAG)
_ADVERT_TAG_FIELDS = struct.Struct(">QQQ")
_SURVIVORS_SIGNATURE = b"secagg/v1/survivors-signature"


def share_x(client_id: int) -> int:
    """A positive label for a holder's share in the nested-mapping form (owner -> holder ->
    :class:`~secagg.crypto.shamir.Share`) that auditors build.

    Interpolation never trusts it: :func:`secagg.masking.unmask.remove_masks` takes every
    holder's point from :meth:`MaskingParams.share_point`, which equals this label when the
    client ids are 0..n-1.
    """
    return client_id + 1


def share_encryption_keys(agreed: bytes, round_id: int, a: int, b: int) -> tuple[bytes, bytes]:
    """AES-256-GCM keys of the two share bundles between a and b: (a -> b, b -> a).

    Directional: each key seals exactly one bundle, so the bundle can use a fixed nonce
    (:func:`secagg.crypto.aead.seal_once`). One HKDF call gives both (64 bytes, split).
    """
    lo, hi = min(a, b), max(a, b)
    both = derive_key(agreed, info=encode_context(_SHARE_KEY, round_id, lo, hi), length=64)
    upward, downward = both[:32], both[32:]
    return (upward, downward) if a < b else (downward, upward)


def share_encryption_key(agreed: bytes, round_id: int, sender: int, recipient: int) -> bytes:
    """The key of the one share bundle ``sender`` sends ``recipient`` in this round."""
    return share_encryption_keys(agreed, round_id, sender, recipient)[0]


def share_associated_data(round_id: int, sender: int, recipient: int) -> bytes:
    """AES-GCM associated data: a share only decrypts in its own round and direction."""
    return encode_context(_SHARE_AD, round_id, sender, recipient)


def pair_mask_key(agreed: bytes, round_id: int, a: int, b: int) -> bytes:
    """PRG key of the pairwise mask between a and b (symmetric in a, b; fresh per round)."""
    lo, hi = min(a, b), max(a, b)
    info = encode_context(_PAIR_MASK, round_id, lo, hi)
    return derive_key(agreed, info=info, length=prg.KEY_BYTES)


def self_mask_key(seed: bytes, round_id: int, client: int) -> bytes:
    """PRG key of a client's self-mask, from its secret seed b_u."""
    return derive_key(seed, info=encode_context(_SELF_MASK, round_id, client), length=prg.KEY_BYTES)


def seed_commitment(seed: bytes, round_id: int, client: int) -> bytes:
    """H(b_u): published with the keys, so the server can tell a rebuilt seed from a forged one.

    b_u is 32 random bytes, so the hash hides it; the context binds it to one round and client.
    """
    return hashlib.sha256(encode_context(_SEED_COMMITMENT, round_id, client) + seed).digest()


def advert_tag(
    pair_key: bytes,
    params: MaskingParams,
    owner: int,
    recipient: int,
    encryption: bytes,
    masking: bytes,
    commitment: bytes,
) -> bytes:
    """The MAC ``owner`` puts on its round keys for ``recipient`` (bound to this round's
    digest, the pair and the direction), under their identities' pair key."""
    # = encode_context(_ADVERT_TAG, round, owner, recipient), built without its generic
    # checks: a client makes and checks one tag per neighbour.
    context = _ADVERT_TAG_PREFIX + _ADVERT_TAG_FIELDS.pack(params.round_id, owner, recipient)
    message = b"".join((context, params.digest, encryption, masking, commitment))
    return hmac.digest(pair_key, message, "sha256")[:TAG_BYTES]


def survivors_signature_message(params: MaskingParams, survivors: Iterable[int]) -> bytes:
    """What every client signs in the consistency round: this round's survivor set, exactly."""
    ordered = sorted(survivors)
    context = encode_context(_SURVIVORS_SIGNATURE, params.round_id, len(ordered))
    return context + params.digest + b"".join(c.to_bytes(8, "big") for c in ordered)


def share_digest(value: bytes) -> bytes:
    """SHA-256 of one share value: what a public commitment to a share holds.

    Share values are uniform field elements, so the digest hides them; a holder that later
    reveals a share can be checked against the owner's commitment (the ledger's Merkle tree).
    """
    return hashlib.sha256(b"secagg/v1/share" + value).digest()
