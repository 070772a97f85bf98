"""The ServerApp: the aggregator's side of a deployed run, round by round, over Flower messages.

One round, mapped onto Flower messages (``S -> nodes`` is one message per node, then the
replies; a phase closes when every node has replied or its deadline passes):

1. ``train``: global parameters (+ the HE public key in round 1; + the masking round's
   AdvertiseKeysRequest) -> each node trains with DP, encodes ``[w*clip(Δ), w*c]``
   (:meth:`~secagg.protection.HiddenFedAvg.encode`), and replies with its protected update:
   masking: the AdvertiseKeys message of its :class:`~secagg.masking.MaskingClient`;
   HE: its ciphertext (committed on chain first when the ledger is on); none: Δ itself.
2. masking only: ``query.masking`` once per remaining phase (share_keys, masked_input, the
   consistency check in signed rounds, unmasking): what :class:`~secagg.masking.MaskingServer`
   emits goes out, what nodes reply goes back into it; a silent node is dropped by
   ``close_phase`` exactly as in the in-process runner.
3. HE only: the aggregator checks every signed ciphertext and adds them
   (:class:`~secagg.he.attest.AttestedAggregator`), sends the co-signers the board of signed
   ciphertexts (``query.attest``; with the ledger they read it from the chain and the store
   and attest on chain), and sends the key-holder node the attested sum (``query.decrypt``),
   which decrypts nothing else.
4. The sum is finalised by :meth:`~secagg.protection.HiddenFedAvg.conclude` (FedAvg's checks),
   the model moves by :func:`~secagg.simulation.federation.apply_update`, the server evaluates,
   and the round record goes to ``metrics.json`` through the simulation's ResultsWriter.

Distributed DP (``privacy.mode = "distributed-dp"`` over masking, :mod:`secagg.flower.sum_dp`):
the protection is the noisy sum (:func:`~secagg.protection.noisy_sum.make_noisy_sum` with no
shares: each node adds its own), its plan built from the sizes the nodes reported at setup,
which every ``train`` message carries (meta ``sizes``) so that each node builds the same plan
and checks it; the masking round runs over the nodes' encoded, noised group elements, and
:meth:`~secagg.protection.noisy_sum.NoisySumProtection.conclude` decodes the sum (wrap check,
honest shares), charges this run's accountant and gives the update. The round record's ε per
client is that accountant's (the noise the round actually held, as in ``secagg simulate``);
each node's own lifetime ε, charged for the worst case, is in the record's
``protection.node_epsilon``.

Every protocol decision is made by the same objects as in ``secagg simulate``; this module
only moves their bytes and keeps time.

A node may refuse: the run at setup, or a round (its own policy forbids it, see
:mod:`secagg.flower.policy`); its reply then names the error (``refused``). A node that
refuses the run is left out of it (a dropout in every round); one that refuses a round is a
dropout of that round. Either way ``deployment.json`` records the client and the error.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from secagg.config import Config, config_to_toml
from secagg.errors import (
    BelowThresholdError,
    CryptoError,
    ProtocolError,
    SecAggError,
    TamperedMessageError,
)
from secagg.flower import wire
from secagg.flower.exchange import Exchange, Reply, Traffic
from secagg.flower.node import config_from_text
from secagg.flower.sum_dp import SIZES, bind_plan, refuse_unsupported
from secagg.masking.messages import (
    SessionCommit,
    SessionReveal,
    decode_client_message,
    decode_session_message,
)
from secagg.masking.params import FINISHED
from secagg.masking.server import MaskingServer
from secagg.masking.session import Session, SessionServer
from secagg.protection import HiddenFedAvg, make_protection
from secagg.protection.base import AggregateOutcome, Protection
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.he import HESum
from secagg.protection.masking import MaskingSum
from secagg.protection.noisy_sum import NoisySumProtection, make_noisy_sum
from secagg.simulation.engine import ClientInfo, SimulationResult, round_record
from secagg.simulation.federation import SEED_PROTECTION, Federation, apply_update, derive_seed

app = ServerApp()
log = logging.getLogger("secagg.flower")

#: Files the server app writes beside metrics.json.
EVENTS_FILE = "events.jsonl"  # one line per phase sent / closed: what a watcher can wait on
DEPLOYMENT_FILE = "deployment.json"  # status, nodes, bytes on the wire per round
PARAMS_FILE = "params.npy"  # the final global parameters


@dataclass(frozen=True)
class ServerSettings:
    """The run config keys of the Flower app (``[tool.flwr.app.config]``)."""

    config_toml: str
    output_dir: Path
    phase_timeout: float
    startup_timeout: float
    identities: str
    #: the consortium's contract (and its deployment block) to record rounds on; empty: the
    #: coordinator deploys one (nodes whose policy trusts another contract refuse the run)
    contract: str = ""
    contract_block: int = 0

    @classmethod
    def from_run_config(cls, rc: dict[str, Any]) -> ServerSettings:
        text = str(rc.get("config", ""))
        if not text and rc.get("config-path"):
            text = Path(str(rc["config-path"])).read_text()
        if not text:
            raise SecAggError("the run config needs config (TOML text) or config-path")
        out = str(rc.get("output-dir", "")) or "results/flower"
        return cls(
            text,
            Path(out),
            float(rc.get("phase-timeout", 60.0)),
            float(rc.get("startup-timeout", 120.0)),
            str(rc.get("identities", "")),
            str(rc.get("contract", "")),
            int(rc.get("contract-block", 0)),
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = ServerSettings.from_run_config(dict(context.run_config))
    Coordinator(grid, settings).run()


class Coordinator:
    """Runs the configured rounds over the grid and writes the results folder."""

    def __init__(self, grid: Any, settings: ServerSettings) -> None:
        self.grid = grid
        self.settings = settings
        self.config: Config = config_from_text(settings.config_toml)
        self.out = settings.output_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self.exchange = Exchange(grid, settings.phase_timeout)
        self.status: dict[str, Any] = {"status": "starting", "rounds": []}

    # ---- bookkeeping files -------------------------------------------------------------------

    def event(self, round_idx: int, phase: str, what: str, **extra: Any) -> None:
        line = {"round": round_idx + 1, "phase": phase, "event": what, "time": time.time()}
        with (self.out / EVENTS_FILE).open("a") as fh:
            fh.write(json.dumps({**line, **extra}) + "\n")

    def write_status(self) -> None:
        from secagg.simulation.results import write_atomic

        write_atomic(self.out / DEPLOYMENT_FILE, json.dumps(self.status, indent=2) + "\n")

    # ---- the run --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
            self.status["status"] = "finished"
        except BaseException as exc:
            self.status["status"] = "failed"
            self.status["error"] = f"{type(exc).__name__}: {exc}"
            self.status["traceback"] = traceback.format_exc()
            raise
        finally:
            self.write_status()

    def _wait_for_nodes(self, n: int) -> list[int]:
        deadline = time.monotonic() + self.settings.startup_timeout
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= n or time.monotonic() > deadline:
                return nodes
            time.sleep(0.2)

    def _run(self) -> None:
        config = self.config
        refuse_unsupported(config)  # what the nodes refuse, before any of them is asked
        self.event(-1, "setup", "started")
        federation = Federation.load(config)
        ids, names = federation.ids, federation.names
        self.status["status"] = "setup"
        self.write_status()
        setup = self._setup_nodes(federation)
        refused = {c: str(r.meta["refused"]) for c, (_, r) in setup.items() if "refused" in r.meta}
        for c, why in refused.items():
            log.warning("client %s refused the run: %s", c, why)
        self.status["refused"] = {str(c): why for c, why in refused.items()}
        active = [c for c in ids if c not in refused]
        if not active:
            raise SecAggError(f"every node refused the run: {refused}")
        self.node_of = {c: setup[c][0] for c in active}
        facts = {c: setup[c][1] for c in active}
        he_public = next(
            (r.blobs["he_public_key"] for _, r in setup.values() if "he_public_key" in r.blobs),
            None,
        )
        if config.protection.mode in HESum.MODES and he_public is None:
            raise SecAggError(
                "no node holds the HE key: start one SuperNode with he-key-holder=true"
            )
        self.key_holder = next(
            (c for c, (_, r) in setup.items() if "he_public_key" in r.blobs), None
        )
        identities = None
        if self.settings.identities:
            from secagg.flower.keys import read_directory

            identities = read_directory(self.settings.identities)
        params = federation.initial_params()
        rule = federation.rule()
        ledger = self._start_ledger(config, active, facts) if config.ledger.enabled else None
        session = self._agree_session(facts) if config.protection.mode in MaskingSum.MODES else None
        protection: Protection
        #: distributed DP: the sizes every node builds the plan from (sent with each round)
        self.sizes: dict[int, int] = {}
        if config.privacy.mode == "distributed-dp":
            assert session is not None  # refuse_unsupported: masking only
            self.sizes = {c: int(facts[c].meta["train_samples"]) for c in session.participants}
            protection = make_noisy_sum(
                config,
                self.sizes,
                params.size,
                derive_seed(config.run.seed, SEED_PROTECTION),
                {},  # no shares here: each node adds its own
                None,
                identities=identities,
                session=bind_plan(session, config_to_toml(config), self.sizes),
            )
        else:
            protection = make_protection(
                config,
                rule,
                ids if session is None else list(session.participants),
                params.size,
                derive_seed(config.run.seed, SEED_PROTECTION),
                ledger,
                identities=identities,
                he_public_key=he_public,
                session=session,
            )
        weights = {c: float(facts[c].meta["train_samples"]) for c in active}
        sum_z = None  # distributed DP: the nodes' z is the plan's (unknown to them at setup)
        if isinstance(protection, NoisySumProtection):
            sum_z = protection.plan.noise_multiplier
        clients = [
            ClientInfo(
                name=str(facts[c].meta["name"]),
                train_samples=int(facts[c].meta["train_samples"]),
                val_samples=int(facts[c].meta["val_samples"]),
                noise_multiplier=facts[c].meta.get("noise_multiplier", sum_z),
                sample_rate=float(facts[c].meta["sample_rate"]),
                steps_per_round=int(facts[c].meta["steps_per_round"]),
            )
            if c in facts
            else ClientInfo(names[c], 0, 0, None, 0.0, 0)  # refused the run: nothing known
            for c in ids
        ]
        from secagg.simulation.results import ResultsWriter

        result = SimulationResult(
            config, federation.data.task, clients, [], federation.evaluate(params), params, self.out
        )
        if ledger is not None:
            result.ledger = ledger.describe()
            result.ledger_session = ledger  # metrics.json then records paths relative to out
        writer = ResultsWriter(result)
        self.status.update(
            status="running",
            nodes={str(c): str(node) for c, node in self.node_of.items()},
            key_holder=self.key_holder,
        )
        self.write_status()
        epsilons: dict[str, float | None] = dict.fromkeys(names)
        included_last: list[int] = []
        for r in range(config.run.rounds):
            start = time.perf_counter()
            traffic = Traffic()
            if ledger is not None:
                ledger.round_trained(
                    r,
                    params,
                    {c: epsilons[names[c]] for c in active},
                    weights,
                    protection.public_record(r),
                )
            outcome, replies, dropped = self._round(
                r, protection, params, weights, traffic, ledger, included_last
            )
            round_refused = {
                c: str(rep.meta["refused"]) for c, rep in replies.items() if "refused" in rep.meta
            }
            trained = {c: rep for c, rep in replies.items() if _states_training(rep.meta)}
            train_losses = [float(rep.meta["train_loss"]) for rep in trained.values()]
            if isinstance(protection, NoisySumProtection):
                # ε is the sum's, counted once it is released with the shares it held (as in
                # secagg simulate); each node's own lifetime ε (worst case) rides along.
                for c, e in protection.accountant.epsilons().items():
                    epsilons[names[c]] = e
                outcome.stats["node_epsilon"] = {
                    names[c]: rep.meta.get("epsilon") for c, rep in sorted(trained.items())
                }
            else:
                for c, rep in trained.items():
                    epsilons[names[c]] = rep.meta.get("epsilon")
            if outcome.update is not None:
                params = apply_update(params, outcome.update, config.aggregation.server_lr, r)
            outcome.stats.update(_traffic_stats(traffic, ids))
            record = round_record(
                r,
                federation.evaluate(params),
                train_losses,
                dict(epsilons),
                outcome,
                dropped,
                names,
                time.perf_counter() - start,
            )
            if ledger is not None:
                record.ledger = ledger.round_finished(r, outcome.update, outcome.included)
            included_last = list(outcome.included) if outcome.update is not None else []
            result.rounds.append(record)
            result.params = params
            writer.write_metrics()
            _save_params(self.out / PARAMS_FILE, params)
            self.status["rounds"].append(
                {
                    "round": r + 1,
                    "included": outcome.included,
                    "dropped": dropped,
                    "refused": {str(c): why for c, why in round_refused.items()},
                    "aborted": outcome.aborted_reason,
                    **_traffic_stats(traffic, ids),
                }
            )
            self.write_status()
        self._finish(config, ledger, included_last)
        if ledger is not None:
            from secagg.ledger.audit import audit_run

            result.audit = audit_run(ledger.admin, ledger.store).to_dict()
        writer.write_all()

    # ---- setup -------------------------------------------------------------------------------

    def _agree_session(self, facts: dict[int, Reply]) -> Session:
        """Relay the session set-up among the nodes that committed (masking).

        A node that committed but does not reveal aborts the run: going on without it would
        let colluders steer the session (:mod:`secagg.masking.session`).
        """
        server = SessionServer(facts)
        for c, reply in sorted(facts.items()):
            _pass_on(server, c, reply.blobs.get("session_commit", b""), SessionCommit)
        self.event(-1, "session", "sent")
        for _ in range(2):
            tables = server.close_phase()
            answers = self.exchange.round_trip(
                {
                    c: (self.node_of[c], wire.pack({}, {"session": m.to_bytes()}))
                    for c, m in tables.items()
                },
                "query.session",
                "session",
            )
            for c, answer in sorted(answers.items()):
                if "reveal" in answer.blobs:
                    _pass_on(server, c, answer.blobs["reveal"], SessionReveal)
        self.event(-1, "session", "closed")
        return server.session

    def _setup_nodes(self, federation: Federation) -> dict[int, tuple[int, Reply]]:
        """client id -> (node id, its setup reply)."""
        ids = federation.ids
        nodes = self._wait_for_nodes(len(ids))
        if len(nodes) < len(ids):
            raise SecAggError(
                f"{len(nodes)} SuperNode(s) connected within {self.settings.startup_timeout:g} s; "
                f"the run has {len(ids)} clients"
            )
        content = {"client_ids": ",".join(map(str, ids))}
        config_blob = {"config": self.settings.config_toml.encode()}
        from flwr.app import Message

        self.event(-1, "setup", "sent")

        messages = {
            node: Message(
                wire.pack(content, config_blob),
                dst_node_id=node,
                message_type="query.setup",
                group_id="setup",
            )
            for node in nodes
        }
        by_message = dict(zip(self.grid.push_messages(list(messages.values())), nodes, strict=True))
        found: dict[int, tuple[int, Reply]] = {}
        deadline = time.monotonic() + self.settings.startup_timeout
        while by_message and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(by_message)):
                node = by_message.pop(reply.metadata.reply_to_message_id, None)
                if node is None:
                    continue
                if reply.has_error():
                    raise SecAggError(f"node {node} refused the run: {reply.error.reason}")
                try:
                    meta, blobs = wire.unpack(reply.content)
                    c = wire.meta_int(meta, "client_id")
                except TamperedMessageError as exc:  # no id to record it under: silent
                    log.warning("node %s's setup reply is malformed: %s", node, exc)
                    continue
                try:
                    if "refused" not in meta:
                        _check_facts(meta)
                except TamperedMessageError as exc:  # it stays out of the run, by name
                    meta, blobs = {"client_id": c, "refused": f"TamperedMessageError: {exc}"}, {}
                if c in found:
                    raise SecAggError(
                        f"two SuperNodes claim client id {c}: check their node config"
                    )
                found[c] = (node, Reply(meta, blobs, wire.payload_bytes(blobs), None))
            time.sleep(0.05)
        self.event(-1, "setup", "closed")
        missing = sorted(set(ids) - set(found))
        if missing:
            raise SecAggError(f"no SuperNode answered for client id(s) {missing}")
        return found

    def _start_ledger(self, config: Config, ids: list[int], facts: dict[int, Reply]) -> Any:
        """The run's ledger: on the consortium's contract when the run config names one."""
        from secagg.ledger.session import LedgerSession

        if not config.ledger.rpc_url:
            raise SecAggError(
                "a deployment needs a shared chain: set ledger.rpc_url (the embedded chain "
                "lives inside one process)"
            )
        store = Path(config.ledger.store) if config.ledger.store else self.out / "store"
        participants = {
            c: (str(facts[c].meta["chain_address"]), bytes.fromhex(str(facts[c].meta["identity"])))
            for c in ids
        }
        contract = None
        if self.settings.contract:
            contract = (self.settings.contract, self.settings.contract_block)
        return LedgerSession(config, ids, store, participants=participants, contract=contract)

    # ---- a round -----------------------------------------------------------------------------

    def _round(
        self,
        r: int,
        protection: Protection,
        params: np.ndarray,
        weights: dict[int, float],
        traffic: Traffic,
        ledger: Any,
        included_last: list[int],
    ) -> tuple[AggregateOutcome, dict[int, Reply], dict[str, list[int]]]:
        group = str(r + 1)
        base: dict[str, Any] = {"round": r, "top_weight": max(weights.values())}
        if ledger is not None:
            d = ledger.describe()
            base.update(
                contract=d["contract"],
                deploy_block=d["deploy_block"],
                store=d["store"],
                chain_round=ledger.rounds[r].chain_round,
            )
        blobs: dict[str, bytes] = {"params": wire.f32(params)}
        if (
            r == 0
            and isinstance(protection, HiddenFedAvg)
            and isinstance(protection.secure_sum, HESum)
        ):
            signed = protection.secure_sum.signed_public_key  # as the key holder signed it
            assert signed is not None
            blobs["he_public_key"] = signed

        def train_content(c: int, extra: dict[str, bytes]) -> Any:
            meta = dict(base)
            if ledger is not None and r > 0 and c in included_last:
                meta["claim_round"] = ledger.rounds[r - 1].chain_round
            return wire.pack(meta, {**blobs, **extra})

        if isinstance(protection, NoisySumProtection):
            noisy = protection
            base[SIZES] = wire.counts_text(self.sizes)
            assert isinstance(noisy.secure_sum, MaskingSum)  # refuse_unsupported: masking only
            return self._masking_round(
                r,
                noisy.secure_sum,
                train_content,
                traffic,
                lambda total, included, stats: noisy.conclude(total, included, stats, r),
            )
        if not isinstance(protection, HiddenFedAvg):
            replies = self._train_everyone(r, group, train_content, traffic)
            updates = {}
            for c, rep in replies.items():
                if "refused" in rep.meta:
                    continue
                try:
                    updates[c] = wire.from_f32(wire.blob(rep.blobs, "update"), params.size)
                except ProtocolError as exc:  # a malformed update costs its sender only
                    log.warning("round %s: client %s's update refused: %s", r + 1, c, exc)
            silent = sorted(set(self.node_of) - set(updates))
            outcome = protection.aggregate(
                updates, {c: weights[c] for c in updates}, DropoutSchedule({}), r
            )
            return outcome, replies, ({"masked_input": silent} if silent else {})
        declared = protection.declared_weights(weights)
        secure_sum = protection.secure_sum
        if isinstance(secure_sum, MaskingSum):
            masking = secure_sum
            return self._masking_round(
                r,
                masking,
                train_content,
                traffic,
                lambda total, included, stats: protection.conclude(
                    masking.outcome(total, included, stats), declared
                ),
            )
        assert isinstance(secure_sum, HESum)
        return self._he_round(r, protection, secure_sum, declared, train_content, traffic, ledger)

    def _train_everyone(
        self, r: int, group: str, train_content: Any, traffic: Traffic
    ) -> dict[int, Reply]:
        """Send every node its plain train message (no protocol payload) and collect replies."""
        self.event(r, "train", "sent")
        return self.exchange.round_trip(
            {c: (self.node_of[c], train_content(c, {})) for c in self.node_of},
            "train",
            group,
            traffic,
        )

    def _masking_round(
        self,
        r: int,
        secure_sum: MaskingSum,
        train_content: Any,
        traffic: Traffic,
        conclude: Callable[[np.ndarray, list[int], dict[str, Any]], AggregateOutcome],
    ) -> tuple[AggregateOutcome, dict[int, Reply], dict[str, list[int]]]:
        """The masking round's phases over the nodes; ``conclude`` turns the unmasked group
        sum of the included clients (and the round's stats) into the round's outcome."""
        group = str(r + 1)
        params = secure_sum.params(r)
        server = MaskingServer(params)
        outbox = {c: m.to_bytes() for c, m in server.start().items()}
        server_seconds = 0.0
        self.event(r, server.phase, "sent")
        trained = self.exchange.round_trip(
            {
                c: (self.node_of[c], train_content(c, {"request": m}))
                for c, m in outbox.items()
                if c in self.node_of  # a client that refused the run gets nothing
            },
            "train",
            group,
            traffic,
        )
        replies = {
            c: rep.blobs.get("reply", b"")
            for c, rep in trained.items()
            if "refused" not in rep.meta
        }
        try:
            while True:
                phase = server.phase
                start = time.process_time()
                for c, data in sorted(replies.items()):
                    try:
                        server.receive(decode_client_message(data))
                    except ProtocolError as exc:  # a bad message costs its sender, not the round
                        log.warning("round %s: client %s's %s refused: %s", r + 1, c, phase, exc)
                outgoing = server.close_phase()
                server_seconds += time.process_time() - start
                self.event(r, phase, "closed", dropped=server.dropped.get(phase, []))
                if server.phase == FINISHED:
                    break
                self.event(r, server.phase, "sent")
                answers = self.exchange.round_trip(
                    {
                        c: (self.node_of[c], wire.pack({"round": r}, {"request": m.to_bytes()}))
                        for c, m in outgoing.items()
                    },
                    "query.masking",
                    group,
                    traffic,
                )
                replies = {c: rep.blobs.get("reply", b"") for c, rep in answers.items()}
        except (BelowThresholdError, CryptoError) as exc:
            return HiddenFedAvg.aborted(exc), trained, dict(server.dropped)
        result = server.result
        stats = {
            "server_seconds": server_seconds,
            "neighbors": params.neighbors,
            "threshold": params.threshold,
            "inconsistent_holders": {
                str(h): owners for h, owners in result.inconsistent_holders.items()
            },
        }
        return conclude(result.total, result.included, stats), trained, dict(server.dropped)

    def _he_round(
        self,
        r: int,
        protection: HiddenFedAvg,
        secure_sum: HESum,
        declared: dict[int, float],
        train_content: Any,
        traffic: Traffic,
        ledger: Any,
    ) -> tuple[AggregateOutcome, dict[int, Reply], dict[str, list[int]]]:
        """Signed ciphertexts in; the board (or, with the ledger, the chain) out to the
        co-signers; their co-signatures; an attested sum to the key holder (see
        :mod:`secagg.he.attest`)."""
        group = str(r + 1)
        trained = self._train_everyone(r, group, train_content, traffic)
        sent = {
            c: rep.blobs["submission"] for c, rep in trained.items() if "submission" in rep.blobs
        }
        silent = sorted(set(self.node_of) - set(sent))
        dropped = {"masked_input": silent} if silent else {}
        if ledger is not None:
            ledger.record_commits(r, sent)
            for c, rep in trained.items():
                if "refused" in rep.meta:
                    ledger.rounds[r].refused[c] = str(rep.meta["refused"])
        start = time.process_time()
        aggregator = secure_sum.aggregator(r)
        for c, message in sorted(sent.items()):
            if not aggregator.receive(c, message):
                log.warning(
                    "round %s: client %s's ciphertext refused: %s", r + 1, c, aggregator.rejected[c]
                )
        try:
            board = aggregator.board()
        except BelowThresholdError as exc:
            return protection.aborted(exc), trained, dropped
        aggregate_seconds = time.process_time() - start
        included = aggregator.included
        total = aggregator.total.serialize()
        meta: dict[str, Any] = {"round": r}
        if ledger is not None:
            ledger.post_survivors(r, included)
            ledger.set_aggregate(r, total)
            meta["chain_round"] = ledger.rounds[r].chain_round
        # The key holder never sees a ciphertext: it does not co-sign.
        cosigners = [c for c in included if c != secure_sum.key_holder_id]
        self.event(r, "attest", "sent")
        attested = self.exchange.round_trip(
            {
                c: (self.node_of[c], wire.pack(meta, {} if ledger else {"board": board}))
                for c in cosigners
            },
            "query.attest",
            group,
            traffic,
        )
        self.event(r, "attest", "closed", dropped=sorted(set(cosigners) - set(attested)))
        to_decrypt = {"total": total}
        if ledger is None:
            start = time.process_time()
            for c, rep in sorted(attested.items()):
                aggregator.receive_attestation(c, rep.blobs.get("attestation", b""))
            try:
                to_decrypt = {"request": aggregator.decrypt_request()}
            except BelowThresholdError as exc:
                return protection.aborted(exc), trained, dropped
            aggregate_seconds += time.process_time() - start
        holder = self.key_holder
        assert holder is not None
        self.event(r, "decrypt", "sent")
        answer = self.exchange.round_trip(
            {holder: (self.node_of[holder], wire.pack(meta, to_decrypt))},
            "query.decrypt",
            group,
        )
        if holder not in answer:
            return (
                AggregateOutcome(
                    None, included, f"the HE key holder (client {holder}) did not answer"
                ),
                trained,
                dropped,
            )
        values = wire.from_f64(answer[holder].blobs["values"])
        sizes = [len(b) for b in sent.values()]
        outcome = secure_sum.outcome(
            values,
            included,
            {
                "bytes_over_float32_update": float(np.mean(sizes)) / (4 * (secure_sum.dim - 1)),
                "server_seconds": aggregate_seconds,
                "cosigners": len(aggregator.cosigners) if ledger is None else len(attested),
                "rejected_ciphertexts": {str(c): why for c, why in aggregator.rejected.items()},
            },
        )
        return protection.conclude(outcome, declared), trained, dropped

    def _finish(self, config: Config, ledger: Any, included_last: list[int]) -> None:
        """Tell the nodes the run is over (they claim the last round's reward).

        Without a ledger there is nothing to say: a node drops a run's state when the next
        run's setup arrives, or when its worker stops.
        """
        if ledger is None:
            return
        meta: dict[str, Any] = {"round": config.run.rounds}
        contents = {}
        for c, node in self.node_of.items():
            m = dict(meta)
            if ledger is not None and c in included_last:
                m["claim_round"] = ledger.rounds[config.run.rounds - 1].chain_round
            contents[c] = (node, wire.pack(m))
        self.exchange.round_trip(contents, "query.finish", "finish")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_facts(meta: dict[str, Any]) -> None:
    """A setup reply states the node's public facts, each of the right type and range."""
    checks = {
        "name": lambda v: isinstance(v, str) and 0 < len(v) <= 200,
        "train_samples": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "val_samples": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "sample_rate": lambda v: _number(v) and 0 < v <= 1,
        "steps_per_round": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "chain_address": lambda v: isinstance(v, str) and len(v) <= 42,
        "identity": lambda v: isinstance(v, str) and len(v) <= 1024,
    }
    bad = [key for key, ok in checks.items() if not ok(meta.get(key))]
    sigma = meta.get("noise_multiplier")
    if sigma is not None and not (_number(sigma) and sigma > 0):
        bad.append("noise_multiplier")
    if bad:
        raise TamperedMessageError(f"setup reply with missing or malformed {', '.join(bad)}")


def _states_training(meta: dict[str, Any]) -> bool:
    """A train reply that states a training loss and (if any) an ε: what the metrics use."""
    epsilon = meta.get("epsilon")
    return _number(meta.get("train_loss")) and (epsilon is None or _number(epsilon))


def _pass_on(
    server: SessionServer, client: int, data: bytes, kind: type[SessionCommit | SessionReveal]
) -> None:
    """One node's session message to the server, if it is the kind expected and its own; a
    bad one leaves that node out of the session, by name in the log."""
    try:
        message = decode_session_message(data)
        if not isinstance(message, kind) or message.sender != client:
            raise TamperedMessageError(f"not client {client}'s {kind.__name__}")
        server.receive(message)
    except ProtocolError as exc:
        log.warning("client %s's session message refused: %s", client, exc)


def _traffic_stats(traffic: Traffic, ids: list[int]) -> dict[str, Any]:
    """Bytes per client per round: our payload (what the in-process runner counts) and the
    same messages as Flower frames them."""

    def mean(table: dict[int, int]) -> float:
        return float(np.mean(list(table.values()))) if table else 0.0

    return {
        "bytes_sent_per_client": mean(traffic.sent),
        "bytes_received_per_client": mean(traffic.received),
        "flower_bytes_sent_per_client": mean(traffic.sent_framed),
        "flower_bytes_received_per_client": mean(traffic.received_framed),
        "bytes_sent_by_client": {str(c): traffic.sent.get(c, 0) for c in ids},
    }


def _save_params(path: Path, params: np.ndarray) -> None:
    """The global parameters as .npy, replaced in one step (a crash never leaves half)."""
    import io

    from secagg.simulation.results import write_atomic

    buffer = io.BytesIO()
    np.save(buffer, params)
    write_atomic(path, buffer.getvalue())
