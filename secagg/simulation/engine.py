"""The in-process federated engine: N clients, one aggregator, R rounds, reproducible from a seed.

Library first: :func:`run_simulation` takes a validated :class:`~secagg.config.Config` and
returns a :class:`SimulationResult`; writing files and drawing progress bars are options the CLI
turns on. Every random choice (data split, initialisation, batches, DP noise, dropouts,
stochastic rounding) is derived from ``run.seed``, so the same seed gives the same metrics.
Secret key material is the exception: masking keys come from the OS CSPRNG, and since masks
cancel exactly they do not change the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.aggregation import SampleRegistry
from secagg.aggregation.fltrust import FLTrust
from secagg.config import Config, PrivacySection
from secagg.data import ClientData, FederatedDataset
from secagg.errors import ConfigError
from secagg.models import set_flat_params
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_plan import SumAccountant
from secagg.protection import make_protection
from secagg.protection.base import AggregateOutcome, Protection
from secagg.protection.dropout import draw_schedule
from secagg.protection.noisy_sum import ShareSource, make_noisy_sum
from secagg.simulation.clients import Client, ClientFactory, HonestBuilder, RoundAware, honest
from secagg.simulation.federation import (
    SEED_DROPOUT,
    SEED_PROTECTION,
    SEED_ROOT,
    SEED_SUM_CLIENT,
    SEED_SUM_SERVER,
    Federation,
    apply_update,
    derive_seed,
)
from secagg.training import LocalTrainer, evaluate

if TYPE_CHECKING:
    from secagg.ledger.session import LedgerSession


@dataclass
class ClientInfo:
    """What the run reports about each client (public facts, no data)."""

    name: str
    train_samples: int
    val_samples: int
    noise_multiplier: float | None
    sample_rate: float
    steps_per_round: int


@dataclass
class RoundRecord:
    """Metrics of one round, on the global test set after the round's update."""

    round: int
    accuracy: float
    loss: float
    auc: float | None
    train_loss: float
    epsilon: dict[str, float | None]
    included: list[str]
    dropped: dict[str, list[str]]
    aborted: str
    seconds: float
    protection: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    #: client name -> why its declared sample count was replaced by its registered one
    weights_capped: dict[str, str] = field(default_factory=dict)


@dataclass
class SimulationResult:
    """Everything a run produced; ``to_dict`` is what ``metrics.json`` holds."""

    config: Config
    task: str
    clients: list[ClientInfo]
    rounds: list[RoundRecord]
    initial: dict[str, float]
    params: np.ndarray = field(repr=False)
    output_dir: Path | None = None
    #: where the run's on-chain record lives (empty without a ledger)
    ledger: dict[str, Any] = field(default_factory=dict)
    #: the audit of that record, when the run audited itself (embedded chain)
    audit: dict[str, Any] = field(default_factory=dict)
    #: the live ledger session (its chain, accounts and store), to audit again or inspect
    ledger_session: LedgerSession | None = field(default=None, repr=False, compare=False)

    @property
    def final(self) -> dict[str, Any]:
        last = self.rounds[-1] if self.rounds else None
        return {
            "accuracy": last.accuracy if last else self.initial["accuracy"],
            "loss": last.loss if last else self.initial["loss"],
            "auc": last.auc if last else self.initial.get("auc"),
            "epsilon": last.epsilon if last else {},
            "max_epsilon": _max_epsilon(last.epsilon) if last else None,
            "aborted_rounds": sum(1 for r in self.rounds if r.aborted),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.config.run.name,
            "seed": self.config.run.seed,
            "task": self.task,
            "protection": self.config.protection.mode,
            "privacy": self.config.privacy.mode,
            "delta": self.config.privacy.delta if self.config.privacy.mode != "none" else None,
            "clients": [asdict(c) for c in self.clients],
            "initial": self.initial,
            "rounds": [asdict(r) for r in self.rounds],
            "final": self.final,
            "ledger": self.ledger,
        }


def _max_epsilon(eps: dict[str, float | None]) -> float | None:
    values = [e for e in eps.values() if e is not None]
    return max(values) if values else None


#: Kept for callers of the engine's old private name; see :func:`~.federation.derive_seed`.
_derive_seed = derive_seed


def client_infos(clients: list[ClientData], trainers: list[Any]) -> list[ClientInfo]:
    """What the run reports about each client: public facts of its data and its DP schedule."""
    return [
        ClientInfo(
            name=c.name,
            train_samples=c.num_samples,
            val_samples=len(c.y_val),
            noise_multiplier=t.noise_multiplier,
            sample_rate=t.sample_rate,
            steps_per_round=t.steps_per_round,
        )
        for c, t in zip(clients, trainers, strict=True)
    ]


def round_record(
    round_idx: int,
    metrics: dict[str, float],
    train_losses: list[float],
    epsilons: dict[str, float | None],
    outcome: AggregateOutcome,
    dropped: dict[str, list[int]],
    names: list[str],
    seconds: float,
    weights_capped: Mapping[int, str] | None = None,
) -> RoundRecord:
    """The record of one finished round, as ``metrics.json`` holds it (ids become names)."""
    return RoundRecord(
        round=round_idx + 1,
        accuracy=metrics["accuracy"],
        loss=metrics["loss"],
        auc=metrics.get("auc"),
        train_loss=float(np.mean(train_losses)) if train_losses else float("nan"),
        epsilon=epsilons,
        included=[names[i] for i in outcome.included],
        dropped={p: [names[i] for i in ids_] for p, ids_ in dropped.items()},
        aborted=outcome.aborted_reason,
        seconds=seconds,
        protection=outcome.stats,
        weights_capped={names[i]: why for i, why in (weights_capped or {}).items()},
    )


ProgressCallback = Callable[[RoundRecord], None]


def run_simulation(
    config: Config,
    *,
    output_dir: str | Path | None = None,
    progress: bool = False,
    on_round: ProgressCallback | None = None,
    dataset: FederatedDataset | None = None,
    overwrite: bool = False,
    client_factory: ClientFactory = honest,
    on_model: Callable[[int, np.ndarray], None] | None = None,
) -> SimulationResult:
    """Run ``config.run.rounds`` rounds of federated training and return every metric.

    ``output_dir``: write ``metrics.json`` (after every round, so a crash loses nothing),
    ``config.toml`` and the plots there. ``progress``: draw a live progress bar (rich).
    ``dataset``: reuse an already loaded federation (e.g. across a parameter sweep).
    ``overwrite``: replace the results an ``output_dir`` already holds (refused otherwise).
    ``client_factory``: decides what each client is (honest by default; attacks wrap them).
    ``on_model``: called after each round with its number and the new global parameters
    (for per-round evaluations such as an attack's success).
    """
    from secagg.simulation.results import ResultsWriter, check_output_dir

    if output_dir is not None:
        check_output_dir(Path(output_dir), overwrite)

    seed = config.run.seed
    federation = Federation.load(config, dataset)
    data = federation.data
    names = federation.names
    ids = federation.ids
    global_model = federation.model()
    params = federation.initial_params()

    def honest_builder(i: int) -> HonestBuilder:
        def build(client_data: ClientData) -> Client:
            return federation.client(i, client_data)

        return build

    trainers = [client_factory(i, c, honest_builder(i)) for i, c in enumerate(data.clients)]
    rule = federation.rule()
    root_trainer = None
    if isinstance(rule, FLTrust):
        if data.root is None:
            raise ConfigError(
                "aggregation.rule = 'fltrust' needs the server's root dataset: set "
                "data.root_samples (e.g. 100)"
            )
        # The server trains on its own clean rows like a client, without DP (they are its own).
        root_trainer = LocalTrainer(
            data.root,
            federation.model,
            config.training,
            PrivacySection(mode="none"),
            rounds=config.run.rounds,
            seed=derive_seed(seed, SEED_ROOT),
        )
    ledger = _start_ledger(config, ids, output_dir) if config.ledger.enabled else None
    protection: Protection
    sum_accountant: SumAccountant | None = None
    if federation.noise_on_sum:
        noisy = make_noisy_sum(
            config,
            {i: c.num_samples for i, c in zip(ids, data.clients, strict=True)},
            params.size,
            derive_seed(seed, SEED_PROTECTION),
            {i: _share_source(t, seed, i) for i, t in enumerate(trainers)},
            ledger,
            server_noise=NoiseSource.from_seed(derive_seed(seed, SEED_SUM_SERVER)),
        )
        sum_accountant = noisy.accountant
        for trainer in trainers:
            trainer.noise_multiplier = noisy.plan.noise_multiplier
        protection = noisy
    else:
        protection = make_protection(
            config, rule, ids, params.size, derive_seed(seed, SEED_PROTECTION), ledger
        )
    clients = client_infos(data.clients, trainers)
    # Sample counts are fixed at setup: a round's declaration above them is capped.
    registry = SampleRegistry({i: c.train_samples for i, c in zip(ids, clients, strict=True)})
    initial = evaluate(global_model, data.X_test, data.y_test)
    result = SimulationResult(
        config, data.task, clients, [], initial, params, Path(output_dir) if output_dir else None
    )
    if ledger is not None:
        result.ledger = ledger.describe()
        result.ledger_session = ledger
    writer = ResultsWriter(result) if output_dir is not None else None
    bar = _ProgressBar(config, len(ids)) if progress else None

    try:
        for r in range(config.run.rounds):
            start = time.perf_counter()
            updates: dict[int, np.ndarray] = {}
            weights: dict[int, float] = {}
            train_losses: list[float] = []
            epsilons: dict[str, float | None] = {}
            results = {}
            for i, trainer in enumerate(trainers):
                results[i] = trainer.train(params, r)
                if bar is not None:
                    bar.client_done()
            if isinstance(client_factory, RoundAware):  # clients that act together
                results = client_factory.after_training(r, results)
            for i, local in results.items():
                updates[i] = local.update
                weights[i] = float(local.num_samples)
                train_losses.append(local.train_loss)
                epsilons[names[i]] = local.epsilon
            admitted = registry.admit(weights)
            weights = admitted.weights
            schedule = draw_schedule(
                ids,
                config.protection.dropout,
                config.protection.dropout_phases,
                np.random.default_rng(derive_seed(seed, SEED_DROPOUT, r)),
            )
            if root_trainer is not None:
                assert isinstance(rule, FLTrust)
                rule.set_root_update(root_trainer.train(params, r).update)
            if ledger is not None:
                eps = {i: epsilons[names[i]] for i in ids}
                if sum_accountant is not None:  # the chain caps what this round may cost
                    eps = dict(sum_accountant.planned_after_next())
                ledger.round_trained(r, params, eps, weights, protection.public_record(r))
            outcome = protection.aggregate(updates, weights, schedule, r)
            if sum_accountant is not None:  # ε is the sum's, counted once it is released
                epsilons = {names[i]: e for i, e in sum_accountant.epsilons().items()}
            if outcome.update is not None:
                params = apply_update(params, outcome.update, config.aggregation.server_lr, r)
                set_flat_params(global_model, params)
            metrics = evaluate(global_model, data.X_test, data.y_test)
            record = round_record(
                r,
                metrics,
                train_losses,
                epsilons,
                outcome,
                schedule.by_phase,
                names,
                time.perf_counter() - start,
                admitted.capped,
            )
            if ledger is not None:
                record.ledger = ledger.round_finished(r, outcome.update, outcome.included)
            result.rounds.append(record)
            result.params = params
            if writer is not None:
                writer.write_metrics()
            if bar is not None:
                bar.round_done(record)
            if on_round is not None:
                on_round(record)
            if on_model is not None:
                on_model(r + 1, params)
    finally:
        if bar is not None:
            bar.close()
    if ledger is not None:
        from secagg.ledger.audit import audit_run

        # The embedded chain ends with this process: audit it now, from chain and store only.
        result.audit = audit_run(ledger.admin, ledger.store).to_dict()
    if writer is not None:
        writer.write_all()
    return result


def _share_source(client: Client, seed: int, index: int) -> ShareSource:
    """Where client ``index``'s noise share comes from: its own stream when it has one (an
    attack that wraps an honest client may not), else one derived from the run's seed."""
    share = getattr(client, "noise_share", None)
    if share is not None:
        return share
    source = NoiseSource.from_seed(derive_seed(seed, SEED_SUM_CLIENT, index, 1))
    rounds = iter(range(1 << 62))
    return lambda count, variance: source.for_round(next(rounds)).discrete_gaussian(count, variance)


def _start_ledger(config: Config, ids: list[int], output_dir: str | Path | None) -> LedgerSession:
    """Deploy the contract and register the consortium; the store beside the results."""
    from secagg.ledger.session import LedgerSession

    if config.ledger.store:
        store = Path(config.ledger.store)
    elif output_dir is not None:
        store = Path(output_dir) / "store"
    else:
        import tempfile

        store = Path(tempfile.mkdtemp(prefix="secagg-store-"))
    return LedgerSession(config, ids, store)


class _ProgressBar:
    """A live bar per round (clients trained), with the last round's accuracy and ε."""

    def __init__(self, config: Config, n_clients: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.total_rounds = config.run.rounds
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
        )
        self.rounds = self.progress.add_task("rounds", total=config.run.rounds, status="")
        self.clients = self.progress.add_task("round 1", total=n_clients, status="")
        self.progress.start()

    def client_done(self) -> None:
        self.progress.advance(self.clients)

    def round_done(self, record: RoundRecord) -> None:
        eps = _max_epsilon(record.epsilon)
        status = f"acc {record.accuracy:.3f}" + (f"  max ε {eps:.2f}" if eps is not None else "")
        if record.aborted:
            status += "  [red]aborted"
        self.progress.update(self.rounds, advance=1, status=status)
        if record.round < self.total_rounds:
            self.progress.reset(self.clients, description=f"round {record.round + 1}")
        else:
            self.progress.update(self.clients, visible=False)

    def close(self) -> None:
        self.progress.stop()
