"""A hospital node's local policy: the rules it obeys, whatever the coordinator sends.

The coordinator sends each node the run's configuration. A node that obeyed it could be told
to train without DP, with less noise, a larger δ or clipping norm, to commit its ε to a
contract the coordinator deployed itself (with no cap), or to start its accountant afresh. So
each hospital writes its own policy, a TOML file its node reads at start and no message can
change, and the node refuses (:class:`~secagg.errors.PolicyError`, the coordinator sees a
dropout with that name) every run or round that would weaken it::

    # hospital.toml (paths are relative to this file)
    [identity]
    client_id = 3                       # its id in the protocol
    key = "keys/identity.key"           # identity seed: signed masking rounds, ledger registration
    directory = "keys/identities.json"  # the public identity directory, distributed out of band
    chain_key = "keys/chain.key"        # its Ethereum account key (ledger)
    he_key_holder = false               # this node generates and holds the HE secret key

    [data]
    path = "data/site3.csv"   # its own records (the run's data.path is replaced by this)
    partition = 3             # demo data only: which client of the run's built-in split it is

    [privacy]                 # the floor; a run that asks for less protection is refused
    mode = "local-dp"         # every run trains with DP-SGD; "distributed-dp": DP-SGD or a
                              # noise share of distributed DP; "none": runs without DP allowed
    max_epsilon = 3.0         # the most ε this node ever spends on its data: all runs, all rounds
    delta = 1e-5              # the largest δ a run may account at
    max_grad_norm = 1.0       # the largest per-record clipping norm a run may use
    accountant = "rdp"        # the accountant a run must use

    [protection]              # how its update may be hidden, at the least
    modes = ["secagg+", "ckks"]   # the protection modes it accepts ("none": in the clear)
    consistency = "signatures"    # masking rounds must sign the survivor set
    min_colluding_fraction = 0.1  # the gamma every masking round must be sized for, at least;
                                  # distributed-dp: the colluders its noise plan must assume
    min_threshold = 0.6           # t/n at least: fewer summands hide less
    he_key_holder = 0             # the one client whose signed HE public key it accepts

    [ledger]                  # only for runs with a ledger: the one contract it commits to
    rpc_url = "http://10.0.0.5:8545"   # its own chain node
    chain_id = 1337
    contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

    [state]
    folder = "state"          # its privacy budget on disk (secagg.flower.budget)

What the node does with it: :class:`~secagg.flower.node.HospitalNode`. The DP noise never
comes from the policy or the config: each node keys it from its own CSPRNG
(:meth:`secagg.privacy.noise.NoiseSource.fresh`).

Distributed DP (``privacy.mode = "distributed-dp"``, admitted by a ``[privacy]`` floor of
``distributed-dp`` or ``none``): the node adds its own integer noise share under masking, and
what it relies on is that at least ``min_shares`` = t − c survivors of a completed round are
honest. So the run's c (``privacy.colluding_clients``, or ⌊``max_colluding_fraction`` · n⌋)
must be at least ⌊``min_colluding_fraction`` · n⌋ of the ``[protection]`` floor, its δ and
(record unit) clipping norm within the floor's, its target within ``max_epsilon``; and the
noise plan the node builds itself from the config and the clients' sizes must spend at most
``max_epsilon`` for this node's own sampling rate over all planned rounds, charged for
``min_shares`` shares only (:meth:`NodePolicy.check_sum_plan`). Central DP is never admitted:
the node could not check that the coordinator adds the noise.

``flower-supernode --node-config`` names the file (``policy=hospital.toml``); the older keys
(``client-id``, ``partition-id``, ``data-path``, ``identity-key``, ``identities``,
``chain-key``, ``he-key-holder``, see :class:`NodeSettings`) still work and fill in what the
file leaves out; a key given both ways with different values is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secagg.config import (
    Config,
    PrivacySection,
    read_toml,
    section_from_dict,
    sections_to_toml,
)
from secagg.errors import ConfigError, PolicyError
from secagg.privacy.accounting import ACCOUNTANTS, epsilon_for
from secagg.privacy.sum_plan import colluding_clients

if TYPE_CHECKING:
    from secagg.flower.budget import BudgetState
    from secagg.privacy.sum_plan import SumPrivacyPlan
    from secagg.training import LocalTrainer

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class NodeSettings:
    """What the node was started with (``--node-config`` keys in brackets), as given.

    The policy file completes it: :meth:`NodePolicy.load`.
    """

    client_id: int | None = None  # [client-id] its id in the protocol
    partition_id: int | None = None  # [partition-id] its client of the run's split (= client id)
    data_path: str = ""  # [data-path] its own CSV, replacing the config's data.path
    identity_key: str = ""  # [identity-key] identity seed file (signed masking, ledger)
    identities: str = ""  # [identities] the public identity directory (JSON)
    chain_key: str = ""  # [chain-key] Ethereum account key file (ledger)
    he_key_holder: bool = False  # [he-key-holder] this node generates and holds the HE key
    policy: str = ""  # [policy] the hospital's policy file (TOML)

    @classmethod
    def from_node_config(cls, raw: Mapping[str, Any]) -> NodeSettings:
        if not {"client-id", "partition-id", "policy"} & set(raw):
            raise ConfigError(
                "the SuperNode's --node-config needs policy=<the hospital's policy file> (or "
                "client-id=<int> and optionally partition-id, data-path, identity-key, "
                "identities, chain-key, he-key-holder)"
            )

        def integer(key: str) -> int | None:
            if key not in raw:
                return None
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(f"node config {key} = {value!r}: expected an integer")
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"node config {key} = {value!r}: expected an integer") from None

        client_id = integer("client-id")
        return cls(
            client_id=client_id if client_id is not None else integer("partition-id"),
            partition_id=integer("partition-id"),
            data_path=str(raw.get("data-path", "")),
            identity_key=str(raw.get("identity-key", "")),
            identities=str(raw.get("identities", "")),
            chain_key=str(raw.get("chain-key", "")),
            he_key_holder=bool(raw.get("he-key-holder", False)),
            policy=str(raw.get("policy", "")),
        )


# ---- the policy file's sections ---------------------------------------------------------------


@dataclass
class IdentitySection:
    """[identity]"""

    client_id: int | None = None
    key: str = ""
    directory: str = ""
    chain_key: str = ""
    he_key_holder: bool = False


@dataclass
class DataSection:
    """[data]"""

    path: str = ""
    partition: int | None = None


@dataclass
class PrivacyFloor:
    """[privacy]: the least protection the node accepts from any run."""

    mode: str = "local-dp"  # local-dp | distributed-dp | none (the least DP a run may have)
    max_epsilon: float | None = None  # lifetime ε at delta; required unless mode = none
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    def validate(self, where: str) -> None:
        problems = []
        if self.mode not in FLOOR_MODES:
            problems.append(f"mode = {self.mode!r} is not one of: {', '.join(FLOOR_MODES)}")
        if self.mode != "none" and self.max_epsilon is None:
            problems.append(f"mode = {self.mode!r} needs max_epsilon (the node's lifetime budget)")
        if self.max_epsilon is not None and not self.max_epsilon > 0:
            problems.append(f"max_epsilon must be > 0, got {self.max_epsilon}")
        if not 0 < self.delta < 1:
            problems.append(f"delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            problems.append(f"accountant = {self.accountant!r} is not one of: {ACCOUNTANTS}")
        if problems:
            raise ConfigError(f"{where} [privacy]: " + "; ".join(problems))

    def refusals(self, privacy: PrivacySection) -> list[str]:
        """What in a run's [privacy] section is weaker than this floor (empty: nothing)."""
        if privacy.mode == "central-dp":
            return [
                "privacy.mode = 'central-dp' trusts the coordinator to add the noise, which "
                "this node cannot check"
            ]
        if privacy.mode not in ("local-dp", "distributed-dp"):
            return (
                [f"privacy.mode = {privacy.mode!r}, but this node trains only with {self._dp()}"]
                if self.mode != "none"
                else []
            )
        if privacy.mode == "distributed-dp" and self.mode == "local-dp":
            return ["privacy.mode = 'distributed-dp', but this node trains only with local-dp"]
        out = []
        if privacy.delta > self.delta:
            out.append(f"privacy.delta = {privacy.delta:g} > the node's {self.delta:g}")
        # The clip bounds one record's gradient (local-dp, and distributed-dp's record unit);
        # the client unit clips the whole update, another quantity: its ε does not depend on it.
        per_record = privacy.mode == "local-dp" or privacy.unit == "record"
        if per_record and privacy.max_grad_norm > self.max_grad_norm:
            out.append(
                f"privacy.max_grad_norm = {privacy.max_grad_norm:g} > the node's "
                f"{self.max_grad_norm:g}"
            )
        # The noisy sum is always accounted with RDP (secagg.privacy.distributed_accounting).
        if privacy.mode == "local-dp" and privacy.accountant != self.accountant:
            out.append(
                f"privacy.accountant = {privacy.accountant!r}, the node accounts with "
                f"{self.accountant!r}"
            )
        target = privacy.target_epsilon
        if target is not None and self.max_epsilon is not None and target > self.max_epsilon:
            out.append(
                f"privacy.target_epsilon = {target:g} > the node's max_epsilon {self.max_epsilon:g}"
            )
        return out

    def _dp(self) -> str:
        return "local-dp" if self.mode == "local-dp" else "DP (local-dp or distributed-dp)"


#: What a [privacy] floor may say, weakest last.
FLOOR_MODES = ("local-dp", "distributed-dp", "none")
#: Every hiding mode (protection.mode = "none" sends the update in the clear).
HIDING_MODES = ("secagg", "secagg+", "ckks", "paillier")


@dataclass
class ProtectionFloor:
    """[protection]: the least hiding the node accepts from any run."""

    modes: list[str] = field(default_factory=lambda: list(HIDING_MODES))
    consistency: str = "signatures"  # signatures | none (honest-but-curious masking allowed)
    min_colluding_fraction: float = 0.1
    min_threshold: float = 0.6  # a fraction of the run's clients
    he_key_holder: int | None = None  # None: any registered client that signed the HE key

    def validate(self, where: str) -> None:
        problems = []
        unknown = sorted(set(self.modes) - {"none", *HIDING_MODES})
        if unknown or not self.modes:
            problems.append(f"modes = {self.modes!r}: name some of none, {', '.join(HIDING_MODES)}")
        if self.consistency not in ("signatures", "none"):
            problems.append(f"consistency = {self.consistency!r} is not one of: signatures, none")
        if not 0 <= self.min_colluding_fraction < 0.5:
            problems.append(
                f"min_colluding_fraction must be in [0, 0.5), got {self.min_colluding_fraction}"
            )
        if not 0 < self.min_threshold <= 1:
            problems.append(f"min_threshold must be in (0, 1], got {self.min_threshold}")
        if self.he_key_holder is not None and self.he_key_holder < 0:
            problems.append(f"he_key_holder must be a client id >= 0, got {self.he_key_holder}")
        if problems:
            raise ConfigError(f"{where} [protection]: " + "; ".join(problems))

    def assumed_colluders(self, clients: int) -> int:
        """The fewest colluders a distributed-dp plan over ``clients`` clients must assume:
        ⌊min_colluding_fraction · n⌋, the library's own rule for its default c."""
        return math.floor(self.min_colluding_fraction * clients)

    def colluder_refusals(self, colluders: int, clients: int) -> list[str]:
        """A distributed-dp plan that assumes fewer colluders than this floor: the node's
        noise would be sized for more honest shares than it is willing to count on."""
        floor = self.assumed_colluders(clients)
        if colluders >= floor:
            return []
        return [
            f"privacy.colluding_clients = {colluders} < the {floor} colluders this node assumes "
            f"among {clients} clients (min_colluding_fraction {self.min_colluding_fraction:g}): "
            "its noise share would count on honest shares it does not trust"
        ]

    def refusals(self, config: Config, clients: int) -> list[str]:
        """What in a run's [protection] section (and, under distributed DP, its colluders),
        for ``clients`` clients, hides less than this floor (empty: nothing)."""
        pt = config.protection
        if pt.mode not in self.modes:
            return [f"protection.mode = {pt.mode!r}; this node accepts {', '.join(self.modes)}"]
        out = []
        masking = pt.mode in ("secagg", "secagg+")
        if masking and self.consistency == "signatures" and pt.consistency != "signatures":
            out.append(
                f"protection.consistency = {pt.consistency!r}; this node masks only in rounds "
                "that sign the survivor set"
            )
        if masking and pt.max_colluding_fraction < self.min_colluding_fraction:
            out.append(
                f"protection.max_colluding_fraction = {pt.max_colluding_fraction:g} < the "
                f"node's {self.min_colluding_fraction:g}"
            )
        if config.privacy.mode == "distributed-dp":
            out += self.colluder_refusals(colluding_clients(config, clients), clients)
        if pt.mode != "none":
            fraction = pt.threshold if pt.threshold < 1 else pt.threshold / max(clients, 1)
            if fraction < self.min_threshold:
                out.append(
                    f"protection.threshold = {pt.threshold:g} ({fraction:.3g} of {clients} "
                    f"clients) < the node's {self.min_threshold:g}"
                )
        return out


@dataclass
class LedgerTrust:
    """[ledger]: the chain and the contract the node commits to, and no other."""

    rpc_url: str = ""
    chain_id: int = 0
    contract: str = ""

    def validate(self, where: str) -> None:
        problems = []
        if not self.rpc_url:
            problems.append("rpc_url is empty (the node's own JSON-RPC endpoint of the chain)")
        if self.chain_id < 1:
            problems.append(f"chain_id must be >= 1, got {self.chain_id}")
        if not _ADDRESS.fullmatch(self.contract):
            problems.append(f"contract = {self.contract!r} is not a 0x-prefixed 20-byte address")
        if problems:
            raise ConfigError(f"{where} [ledger]: " + "; ".join(problems))


@dataclass
class StateSection:
    """[state]"""

    folder: str = ""


_POLICY_SECTIONS: dict[str, type] = {
    "identity": IdentitySection,
    "data": DataSection,
    "privacy": PrivacyFloor,
    "protection": ProtectionFloor,
    "ledger": LedgerTrust,
    "state": StateSection,
}


# ---- the resolved policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class NodePolicy:
    """A node's policy file, completed by its node-config keys; what the node obeys."""

    source: Path
    client_id: int
    partition_id: int
    data_path: str
    identity_key: str
    identities: str
    chain_key: str
    he_key_holder: bool
    privacy: PrivacyFloor
    protection: ProtectionFloor
    ledger: LedgerTrust | None
    state_folder: Path

    @property
    def node(self) -> NodeSettings:
        """The resolved settings, every key filled in."""
        return NodeSettings(
            client_id=self.client_id,
            partition_id=self.partition_id,
            data_path=self.data_path,
            identity_key=self.identity_key,
            identities=self.identities,
            chain_key=self.chain_key,
            he_key_holder=self.he_key_holder,
            policy=str(self.source),
        )

    @classmethod
    def load(cls, settings: NodeSettings) -> NodePolicy:
        """The policy file ``settings.policy`` merged with the node-config keys given."""
        if not settings.policy:
            raise PolicyError(
                "this node has no policy: write the hospital's policy (TOML: [identity], "
                "[data], [privacy], [ledger], [state]; see secagg.flower.policy) and start the "
                "SuperNode with --node-config 'policy=<its path>'"
            )
        source = Path(settings.policy).resolve()
        where = f"node policy {source}"
        raw = read_toml(source)
        unknown = sorted(set(raw) - set(_POLICY_SECTIONS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown section(s) {unknown}; allowed: {', '.join(_POLICY_SECTIONS)}"
            )
        identity = section_from_dict("identity", raw.get("identity", {}), IdentitySection)
        data = section_from_dict("data", raw.get("data", {}), DataSection)
        privacy = section_from_dict("privacy", raw.get("privacy", {}), PrivacyFloor)
        privacy.validate(where)
        protection = section_from_dict(
            "protection", raw.get("protection", {}), ProtectionFloor
        )
        protection.validate(where)
        ledger = None
        if "ledger" in raw:
            ledger = section_from_dict("ledger", raw["ledger"], LedgerTrust)
            ledger.validate(where)
        state = section_from_dict("state", raw.get("state", {}), StateSection)
        if not state.folder:
            raise ConfigError(
                f"{where}: [state] folder is required (where the node keeps its privacy budget)"
            )
        here = source.parent

        def path(value: str) -> str:
            return str((here / value).resolve()) if value else ""

        def stated(value: Any) -> bool:  # None, "" and False are the "not given" defaults
            return value is not None and value != "" and value is not False

        def merged(name: str, given: Any, written: Any, is_path: bool = False) -> Any:
            if stated(given) and stated(written):
                if is_path:
                    given = str(Path(given).resolve())
                if given != written:
                    raise PolicyError(
                        f"{where} says {name} = {written!r}, the node config {given!r}: "
                        "give it in one place"
                    )
            return written if stated(written) else given

        client_id = merged("[identity] client_id", settings.client_id, identity.client_id)
        if client_id is None or client_id < 0:
            raise ConfigError(f"{where}: [identity] client_id (an integer >= 0) is required")
        partition = merged("[data] partition", settings.partition_id, data.partition)
        return cls(
            source=source,
            client_id=client_id,
            partition_id=client_id if partition is None else partition,
            data_path=merged("[data] path", settings.data_path, path(data.path), True),
            identity_key=merged("[identity] key", settings.identity_key, path(identity.key), True),
            identities=merged(
                "[identity] directory", settings.identities, path(identity.directory), True
            ),
            chain_key=merged(
                "[identity] chain_key", settings.chain_key, path(identity.chain_key), True
            ),
            he_key_holder=merged(
                "[identity] he_key_holder", settings.he_key_holder, identity.he_key_holder
            ),
            privacy=privacy,
            protection=protection,
            ledger=ledger,
            state_folder=here / state.folder,
        )

    # ---- what the node checks ------------------------------------------------------------------

    def _refuse(self, what: str, problems: list[str]) -> PolicyError:
        return PolicyError(
            f"client {self.client_id} refuses {what}: " + "; ".join(problems) + f". Its policy "
            f"({self.source}) is the hospital's to change; no message from the coordinator can"
        )

    def check_run(self, config: Config) -> None:
        """Refuse a run whose configuration is weaker than this policy."""
        problems = self.privacy.refusals(config.privacy)
        if config.ledger.enabled and self.ledger is None:
            problems.append("the run uses a ledger, and this node's policy trusts none ([ledger])")
        if self.data_path and config.data.dataset != "csv":
            problems.append(
                f"data.dataset = {config.data.dataset!r}, but this node trains only on its own "
                "records ([data] path: a csv dataset)"
            )
        if problems:
            raise self._refuse("the run", problems)

    def check_protection(self, config: Config, clients: int) -> None:
        """Refuse a run that would hide this node's update less than the policy says."""
        problems = self.protection.refusals(config, clients)
        if problems:
            raise self._refuse("the run", problems)

    def check_trainer(self, trainer: LocalTrainer) -> None:
        """Refuse a run whose planned DP schedule alone would spend more than max_epsilon."""
        if trainer.noise_multiplier is None or self.privacy.max_epsilon is None:
            return
        planned = epsilon_for(
            noise_multiplier=trainer.noise_multiplier,
            sample_rate=trainer.sample_rate,
            steps=trainer.planned_steps,
            delta=trainer.privacy.delta,
            accountant=trainer.privacy.accountant,
        )
        if planned > self.privacy.max_epsilon:
            raise self._refuse(
                "the run",
                [
                    f"its schedule (σ = {trainer.noise_multiplier:.4g}, q = "
                    f"{trainer.sample_rate:.4g}, {trainer.planned_steps} steps) spends ε = "
                    f"{planned:.4g} > the node's max_epsilon {self.privacy.max_epsilon:g}"
                ],
            )

    def check_round(
        self, trainer: LocalTrainer, round_idx: int, state: BudgetState | None = None
    ) -> None:
        """Refuse a round that would take the node's lifetime ε past max_epsilon.

        ``state``: the node's budget; its noisy-sum releases compose with the trainer's
        DP-SGD history (:func:`~secagg.flower.budget.lifetime_epsilon`)."""
        after = trainer.epsilon_after_next_round()
        now = trainer.epsilon()
        if after is not None and state is not None and state.sum_releases:
            assert trainer.noise_multiplier is not None
            step = (float(trainer.noise_multiplier), trainer.sample_rate, trainer.steps_per_round)
            delta, accountant = trainer.privacy.delta, trainer.privacy.accountant
            after = state.epsilon(delta, accountant, history=[*trainer.history, step])
            now = state.epsilon(delta, accountant, history=trainer.history)
        self.check_spend(round_idx, now, after)

    def check_spend(self, round_idx: int, now: float | None, after: float | None) -> None:
        """Refuse round ``round_idx`` if it would take the lifetime ε from ``now`` to
        ``after`` > max_epsilon (None: the round spends nothing)."""
        cap = self.privacy.max_epsilon
        if after is not None and cap is not None and after > cap:
            raise self._refuse(
                f"round {round_idx}",
                [
                    f"it would take the ε this node ever spent to {after:.4g} > its "
                    f"max_epsilon {cap:g} (ε now {now or 0.0:.4g})"
                ],
            )

    def check_sum_plan(self, plan: SumPrivacyPlan, client_id: int, sample_rate: float) -> None:
        """Refuse a distributed-dp run whose noise plan, as this node built it, would spend
        more than max_epsilon on its data alone, or assumes fewer colluders than its floor.

        The ε is the node's own: its ``sample_rate`` (what its client really samples at, not
        what the plan lists), all planned rounds, each charged with the ``min_shares`` honest
        shares a completed round is guaranteed. The plan's z came from the clients' sizes the
        coordinator reported: one that overstates them (lower rates, a smaller z) is stopped
        here, whatever the node could or could not check of them."""
        problems = self.protection.colluder_refusals(plan.colluders, len(plan.client_ids))
        cap = self.privacy.max_epsilon
        if cap is not None:
            planned = plan.planned_epsilon(sample_rate)
            if planned > cap:
                problems.append(
                    f"its planned ε for client {client_id} (z = {plan.noise_multiplier:.4g}, "
                    f"{plan.min_shares} guaranteed honest share(s), q = {sample_rate:.4g}, "
                    f"{plan.rounds} rounds) is {planned:.4g} > the node's max_epsilon {cap:g}"
                )
        if problems:
            raise self._refuse("the run", problems)

    def check_ledger(self, contract: str, chain_id: int) -> None:
        """Refuse any contract or chain but the ones the policy names."""
        trusted = self.ledger
        if trusted is None:
            raise self._refuse("the ledger", ["its policy trusts no contract ([ledger])"])
        problems = []
        if contract.lower() != trusted.contract.lower():
            problems.append(f"contract {contract} is not the trusted {trusted.contract}")
        if chain_id != trusted.chain_id:
            problems.append(f"chain id {chain_id} is not the trusted {trusted.chain_id}")
        if problems:
            raise self._refuse("the ledger", problems)


def policy_toml(
    *,
    client_id: int,
    privacy: PrivacyFloor,
    state_folder: str,
    partition_id: int | None = None,
    data_path: str = "",
    identity_key: str = "",
    identities: str = "",
    chain_key: str = "",
    he_key_holder: bool = False,
    protection: ProtectionFloor | None = None,
    ledger: LedgerTrust | None = None,
) -> str:
    """The text of a policy file (what ``secagg deploy`` writes for each of its nodes)."""
    sections: dict[str, dict[str, Any]] = {
        "identity": {
            "client_id": client_id,
            "key": identity_key,
            "directory": identities,
            "chain_key": chain_key,
            "he_key_holder": he_key_holder,
        },
        "data": {"path": data_path, "partition": partition_id},
        "privacy": dict(vars(privacy)),
    }
    if protection is not None:
        sections["protection"] = {k: v for k, v in vars(protection).items() if v is not None}
    if ledger is not None:
        sections["ledger"] = dict(vars(ledger))
    sections["state"] = {"folder": state_folder}
    return sections_to_toml(  # an empty string or false says no more than an absent key
        {
            n: {k: v for k, v in body.items() if v != "" and v is not False}
            for n, body in sections.items()
        }
    )
