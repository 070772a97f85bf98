"""Distributed DP on Flower: what the coordinator and the nodes agree on about the noisy sum.

``privacy.mode = "distributed-dp"`` runs on nodes over masking (``secagg`` / ``secagg+``,
record or client unit): each node adds an integer discrete-Gaussian noise share, from its
own CSPRNG, to its encoded clipped vector before masking it, and the coordinator decodes the
noisy sum (:class:`~secagg.protection.noisy_sum.NoisySumProtection`). The plan (scale, z,
share variance, t − c) is built by every party from the config and the clients' training-set
sizes; each node reports its own size at setup, and the coordinator sends the table to every
node with each round (meta ``sizes``).

What a node trusts the coordinator for, and what it checks itself:

- **Its own size** in the table must be the one it has; the others' it cannot check. A
  coordinator that misreports them changes the plan's z: the node builds the plan itself and
  refuses a run whose ε, at its own sampling rate, over all planned rounds, charged for the
  ``min_shares`` honest shares only, passes its ``max_epsilon``
  (:meth:`~secagg.flower.policy.NodePolicy.check_sum_plan`).
- **That the other nodes add their shares under the same plan.** Its guarantee counts on
  ``min_shares`` honest shares of the variance *its* plan says; a coordinator that gave
  another node another table (or another config) would have that node add a smaller share.
  So the plan is bound into every round's parameters (:func:`bind_plan`: the run's session
  value, hashed with the config and the sizes, is what the masking round's digest covers):
  nodes told different plans derive different round digests, and under signed masking
  (``protection.consistency = "signatures"``) their MACs and signatures fail against each
  other and the round aborts before anything is unmasked. Without signatures the masking
  protocol trusts the coordinator to relay honestly anyway, and so does this.
- **The colluders.** At most c of a round's survivors collude with the coordinator; the node
  refuses a run assuming fewer than its ``[protection] min_colluding_fraction`` floor.
- **Nothing about its noise**: the share comes from the node's own key, which nothing the
  coordinator sends enters, and each round's share is charged on the node's disk before its
  masked input leaves (:mod:`secagg.flower.budget`).

Not built yet on nodes: distributed DP over HE (``ckks`` / ``paillier``) and with the ledger;
both run in ``secagg simulate``. Central DP is refused outright: a node cannot check that a
coordinator adds the noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from secagg.config import Config
from secagg.crypto.kdf import encode_context
from secagg.errors import ConfigError
from secagg.masking.session import Session

#: The train message's meta key holding the clients' sizes ("id:count,...").
SIZES = "sizes"
_PLAN = b"secagg/flower/ddp-plan"
_MASKING = ("secagg", "secagg+")


def refuse_unsupported(config: Config) -> None:
    """Refuse, by name, the DP-on-the-sum runs a Flower deployment does not run."""
    pr = config.privacy
    if pr.mode == "central-dp":
        raise ConfigError(
            "privacy.mode = 'central-dp' trusts the coordinator to add the noise to the sum, "
            "and a node cannot check that it does: a Flower node refuses it (use "
            "'distributed-dp': each node adds its own noise share)"
        )
    if pr.mode != "distributed-dp":
        return
    mode = config.protection.mode
    if mode not in _MASKING:
        raise ConfigError(
            f"privacy.mode = 'distributed-dp' over protection.mode = {mode!r} is not built yet "
            "on Flower nodes (it runs in secagg simulate): use protection.mode = 'secagg' or "
            "'secagg+'"
        )
    if config.ledger.enabled:
        raise ConfigError(
            "privacy.mode = 'distributed-dp' with ledger.enabled is not built yet on Flower "
            "nodes (it runs in secagg simulate): run it without the ledger"
        )


def plan_digest(config_text: str, sizes: Mapping[int, int]) -> bytes:
    """What fixes a run's noisy-sum plan besides the model: its config and the sizes."""
    h = hashlib.sha256(encode_context(_PLAN, len(sizes)))
    h.update(hashlib.sha256(config_text.encode()).digest())
    for client in sorted(sizes):
        h.update(client.to_bytes(8, "big") + int(sizes[client]).to_bytes(8, "big"))
    return h.digest()


def bind_plan(session: Session, config_text: str, sizes: Mapping[int, int]) -> Session:
    """The session the run's masking rounds open under: the agreed one's value hashed with the
    plan (:func:`plan_digest`), so every MAC and signature of a round binds the plan too."""
    value = hashlib.sha256(
        encode_context(_PLAN, 0) + session.value + plan_digest(config_text, sizes)
    ).digest()
    return Session(session.participants, value, session.nonces)
