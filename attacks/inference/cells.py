"""The inference cells of ``secagg attack``: what an attacker learns, per privacy level and mode.

Every cell of one (privacy, protection, seed) shares one honest federation, trained once
(:class:`InferenceRuns` caches it), and then measures one attacker:

- ``membership``: the loss-threshold attack (Yeom et al. 2018) on the final global model,
  and on what the server holds of client 0 at the end: its last local model in plaintext,
  only the global model under a hiding mode;
- ``lira``: LiRA (Carlini et al. 2022, online) on the final global model. The shadows train
  like one pipeline client (:func:`~attacks.inference.pipeline_shadow_trainer`: the same
  optimiser, batches, clipping and noise, for the run's rounds) on random halves of the
  population, members plus the held-out records;
- ``inversion``: gradient inversion against what the server sees in a round where every
  client holds one record (the worst case for the record): one client's update in plaintext;
  the aggregate of all clients under a hiding mode. With DP each update is a DP-SGD step at
  the σ this level's run used. Two figures, each the closest (reconstruction, record) pair:
  gradient matching (the better of DLG with the iDLG label and inverting gradients, Geiping
  et al. 2020) and the analytic first-layer rows, which can hand back single records even
  from a sum (a ReLU unit that fired for one record only; Fowl et al. 2022);
- ``audit``: the one-run audit (Steinke, Nasr and Jagielski 2023) of DP-SGD calibrated to
  this level's ε; without DP, of the same trainer with its noise switched off.

Under DP on the sum (``central-dp``, ``distributed-dp``; DP-FedSGD, record unit) every client
sends its Poisson batch's clipped gradient sum and the noise is on the sum:

- ``membership`` reads the final global model as ever; the server holds no local model of
  client 0 (only its gradient sum, and under distributed DP not even that), so the client
  view is the global model;
- ``lira``'s shadows train like the run: :func:`~attacks.inference.noisy_sum_shadow_trainer`,
  the pipeline's gradient-sum client at the run's sampling rate with the run's noise on the
  mean (the plan's share variance times the shares every round added, over its scale);
- ``inversion`` reads the decoded noisy sum of the one-record round, built by
  :func:`~secagg.protection.noisy_sum.make_noisy_sum` with the run's config and plan (its
  sizes, so the run's z and scale). The released update is −lr·S/E (E the plan's expected
  batch), so the gradient read is the noisy sum S = −E·update/lr itself. Under central-dp
  this is what anyone shown the sum sees; the trusted aggregator itself decodes the exact
  sum before it adds the noise;
- ``audit`` is :func:`~secagg.privacy.audit.audit_noisy_sum`: the one-run audit through
  ``run_simulation`` with this level's mode, ε and protection, on its own canary task.

The global model is the same, up to quantisation, in every protection mode, so membership,
LiRA and the audit read the same under plaintext and SecAgg+: secure aggregation hides
updates, not what the model they build remembers. Inversion is where the modes differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from statistics import median
from typing import Any

import numpy as np
import torch

from secagg.aggregation import rule_from_config
from secagg.config import SUM_MODES, Config, PrivacySection
from secagg.data import ClientData, FederatedDataset
from secagg.errors import ConfigError, SecAggError
from secagg.models import build_model, get_flat_params, set_flat_params
from secagg.privacy.noise import NoiseSource
from secagg.privacy.sum_clients import GradientSumClient
from secagg.protection import make_protection
from secagg.protection.dropout import DropoutSchedule
from secagg.protection.noisy_sum import NoisySumProtection, ShareSource, make_noisy_sum
from secagg.simulation import SimulationResult, run_simulation
from secagg.simulation.clients import Client, HonestBuilder
from secagg.simulation.federation import derive_seed
from secagg.training import LocalResult, LocalTrainer

#: Inference attacks a grid may list, and the parameters each takes (with defaults).
INFERENCE_PARAMS: dict[str, dict[str, float | int]] = {
    "membership": {},
    "lira": {"shadows": 8},
    "inversion": {"restarts": 2, "steps": 300},
    "audit": {"canaries": 1000},
}
INFERENCE = tuple(INFERENCE_PARAMS)
#: What ``attack_success`` holds for each inference attack (the table says it too).
HEADLINE = {
    "membership": "membership AUC (0.5 = chance)",
    "lira": "LiRA AUC (0.5 = chance)",
    "inversion": "PSNR (dB) of the best gradient-matching reconstruction (higher = leak)",
    "audit": "audited ε lower bound (95 % confidence)",
}
#: The image side of the TV prior (8x8 digits); other inputs get no inversion cell.
IMAGE_SIDE = 8


def check_params(name: str, table: Mapping[str, Any]) -> dict[str, int]:
    """Validate ``grid.attack_params.<name>`` of an inference attack, with defaults filled."""
    allowed = INFERENCE_PARAMS[name]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"grid.attack_params.{name}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    out = {k: int(v) for k, v in allowed.items()}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"grid.attack_params.{name}.{key} must be an integer >= 1")
        out[key] = value
    if name == "lira" and out["shadows"] < 2:
        raise ConfigError("grid.attack_params.lira.shadows must be >= 2 (IN and OUT shadows)")
    return out


class _Watched:
    """An honest client that keeps its last round's start and update: what a plaintext
    server holds of it (a hiding server holds only the aggregate). A client of a noisy sum
    sends a clipped gradient sum, not a model, so no local model is kept for it; its noise
    share is passed on (the engine asks each client for it)."""

    def __init__(self, trainer: Client) -> None:
        self.trainer = trainer
        self.noise_multiplier = trainer.noise_multiplier
        self.sample_rate = trainer.sample_rate
        self.steps_per_round = trainer.steps_per_round
        self.local_model: np.ndarray | None = None
        self.noise_share: ShareSource | None = getattr(trainer, "noise_share", None)
        self._sends_model = not isinstance(trainer, GradientSumClient)

    def train(self, global_params: np.ndarray, round_idx: int) -> LocalResult:
        result = self.trainer.train(global_params, round_idx)
        if self._sends_model:
            self.local_model = global_params + result.update
        return result


@dataclass
class _Run:
    result: SimulationResult
    watched: _Watched  # client 0


@dataclass
class InferenceRuns:
    """Caches shared by the cells of one grid: runs per (privacy, protection, seed), LiRA
    shadows and audits per (privacy, seed), since neither depends on the protection mode,
    except under DP on the sum, where the protection sets the noise shares (t − c) and the
    audit runs through it: there per (privacy, protection, seed)."""

    runs: dict[tuple[str, str, int], _Run] = field(default_factory=dict)
    shadows: dict[tuple[str | int, ...], Any] = field(default_factory=dict)
    audits: dict[tuple[str | int, ...], Any] = field(default_factory=dict)

    def run(self, key: tuple[str, str, int], config: Config, dataset: FederatedDataset) -> _Run:
        if key not in self.runs:
            watched: list[_Watched] = []

            def factory(index: int, data: ClientData, build: HonestBuilder) -> Client:
                if index != 0:
                    return build(data)
                watched.append(_Watched(build(data)))
                return watched[0]

            result = run_simulation(config, dataset=dataset, client_factory=factory)
            self.runs[key] = _Run(result, watched[0])
        return self.runs[key]


def _model_factory(config: Config, dataset: FederatedDataset) -> Callable[[], torch.nn.Module]:
    def factory() -> torch.nn.Module:
        return build_model(
            config.model.name,
            dataset.n_features,
            dataset.n_classes,
            hidden=config.model.hidden,
            seed=config.run.seed,
        )

    return factory


def _sigma(result: SimulationResult) -> float | None:
    """The σ the level's run used: the median over its clients (each calibrates its own)."""
    sigmas = [c.noise_multiplier for c in result.clients if c.noise_multiplier is not None]
    return float(median(sigmas)) if sigmas else None


def _epsilon(result: SimulationResult) -> float:
    spent = [e for e in result.final["epsilon"].values() if e is not None]
    return max(spent) if spent else math.inf


def _on_sum(config: Config) -> bool:
    """DP on the sum (central-dp, distributed-dp): the lab runs it as DP-FedSGD."""
    return config.privacy.mode in SUM_MODES


def _shared_key(config: Config, key: tuple[str, str, int]) -> tuple[str | int, ...]:
    """Key of what cells share across protection modes (not under DP on the sum)."""
    return key if _on_sum(config) else (key[0], key[2])


def _noisy_sum(config: Config, dataset: FederatedDataset, dim: int) -> NoisySumProtection:
    """A noisy sum with the run's config and plan (its clients' sizes), for one round.

    Each client's noise share comes from a stream of its own, derived from ``run.seed`` and
    apart from the run's: the lab replays the mechanism, not the run's draws."""
    seed = config.run.seed
    sources = {
        i: NoiseSource.from_seed(derive_seed(seed, 0x1AB, i)) for i in range(len(dataset.clients))
    }

    def share(source: NoiseSource) -> ShareSource:
        return lambda count, variance: source.for_round(0).discrete_gaussian(count, variance)

    return make_noisy_sum(
        config,
        {i: c.num_samples for i, c in enumerate(dataset.clients)},
        dim,
        derive_seed(seed, 0x1AB),
        {i: share(s) for i, s in sources.items()},
        server_noise=NoiseSource.from_seed(derive_seed(seed, 0x1AB, 1 << 20)),
    )


def run_inference_cell(
    attack: str,
    params: Mapping[str, Any],
    config: Config,
    dataset: FederatedDataset,
    row: dict[str, Any],
    cache: InferenceRuns,
) -> dict[str, Any]:
    """Fill ``row`` (a lab row) for one inference cell; ``metrics`` holds every figure."""
    from attacks.inference import loss_scores, roc, tpr_at_fpr

    key = (row["privacy"], row["protection"], int(row["seed"]))
    settings = check_params(attack, params)
    try:
        run = cache.run(key, config, dataset)
    except SecAggError as exc:
        return {**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    result = run.result
    metrics: dict[str, float] = {"epsilon": _epsilon(result), "accuracy": result.final["accuracy"]}
    model = _model_factory(config, dataset)()
    set_flat_params(model, result.params)
    if attack == "membership":
        members = np.concatenate(
            [loss_scores(model, c.X_train, c.y_train) for c in dataset.clients]
        )
        outsiders = loss_scores(model, dataset.X_test, dataset.y_test)
        fpr, tpr, auc = roc(members, outsiders)
        metrics.update(auc=auc, tpr_at_1pct=tpr_at_fpr(fpr, tpr, 0.01))
        metrics["tpr_at_0.1pct"] = tpr_at_fpr(fpr, tpr, 0.001)
        # Client 0's records, scored on what the server holds of client 0: its last local
        # model in plaintext, only the global model when the mode hides updates.
        if (
            config.protection.mode == "none"
            and not _on_sum(config)
            and run.watched.local_model is not None
        ):
            set_flat_params(model, run.watched.local_model)
        own = dataset.clients[0]
        metrics["auc_client_view"] = roc(loss_scores(model, own.X_train, own.y_train), outsiders)[2]
        headline = auc
    elif attack == "lira":
        fpr, tpr, auc = _lira(config, dataset, result, settings["shadows"], key, cache)
        metrics.update(auc=auc, tpr_at_1pct=tpr_at_fpr(fpr, tpr, 0.01))
        metrics["tpr_at_0.1pct"] = tpr_at_fpr(fpr, tpr, 0.001)
        headline = auc
    elif attack == "inversion":
        if dataset.n_features != IMAGE_SIDE * IMAGE_SIDE:
            return {
                **row,
                "status": "n/a",
                "reason": f"inversion needs {IMAGE_SIDE}x{IMAGE_SIDE} images (digits), "
                f"this dataset has {dataset.n_features} features",
            }
        metrics.update(_inversion(config, dataset, result, settings))
        headline = metrics["psnr"]
    else:
        audit = _audit(config, settings["canaries"], key, cache)
        metrics.update(
            epsilon_lower_bound=audit.epsilon_lower_bound,
            epsilon_audited_run=audit.epsilon_accountant if audit.noise_added else math.inf,
            epsilon_ceiling=_ceiling(audit),
        )
        headline = audit.epsilon_lower_bound
    row.update(
        accuracy=metrics["accuracy"],
        accuracy_by_round=json.dumps([round(r.accuracy, 4) for r in result.rounds]),
        attack_success=headline,
        knowledge=_observer(attack, row["protection"], config.privacy.mode),
        reason=f"attack_success is the {HEADLINE[attack]}",
        metrics=json.dumps({k: _finite(v) for k, v in metrics.items()}),
    )
    if math.isfinite(metrics["epsilon"]):
        row["reason"] += f"; max ε {metrics['epsilon']:.3g}"
    return row


def _finite(value: float) -> float | str:
    """JSON has no infinity: an unbounded ε is written as the string "inf"."""
    return value if math.isfinite(value) else "inf"


def _observer(attack: str, protection: str, privacy: str = "none") -> str:
    if attack == "inversion":
        if privacy == "central-dp":
            return (
                f"anyone shown the noisy sum ({protection}; the trusted aggregator "
                "itself decodes the exact sum before adding the noise)"
            )
        if privacy == "distributed-dp":
            return f"the server: the noisy sum of all clients ({protection})"
        if protection == "none":
            return "the server: one client's update"
        return f"the server: the aggregate of all clients ({protection})"
    if attack == "audit":
        return "an auditor choosing canaries (one-run audit)"
    return "anyone holding the final global model"


def _lira(
    config: Config,
    dataset: FederatedDataset,
    result: SimulationResult,
    shadows: int,
    key: tuple[str, str, int],
    cache: InferenceRuns,
) -> tuple[np.ndarray, np.ndarray, float]:
    from attacks.inference import LiraAttack, pipeline_shadow_trainer, roc

    members_X = np.concatenate([c.X_train for c in dataset.clients])
    members_y = np.concatenate([c.y_train for c in dataset.clients])
    population_X = np.concatenate([members_X, dataset.X_test]).astype(np.float32)
    population_y = np.concatenate([members_y, dataset.y_test])
    shadow_key = _shared_key(config, key)
    if shadow_key not in cache.shadows:
        factory = _model_factory(config, dataset)
        if _on_sum(config):
            train = _sum_shadow_trainer(config, dataset, result, factory, seed=key[2])
        else:
            train = pipeline_shadow_trainer(
                factory, config.training, config.privacy, rounds=config.run.rounds, seed=key[2]
            )
        attack = LiraAttack(population_X, population_y, train, factory, shadows, seed=key[2])
        cache.shadows[shadow_key] = attack.fit()
    scores = cache.shadows[shadow_key].scores(result.params)
    inside = np.arange(len(population_y)) < len(members_y)
    return roc(scores[inside], scores[~inside])


def _sum_shadow_trainer(
    config: Config,
    dataset: FederatedDataset,
    result: SimulationResult,
    factory: Callable[[], torch.nn.Module],
    seed: int,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """LiRA's shadows under DP on the sum: the run's DP-FedSGD with the run's noise.

    The noise on the decoded sum is the plan's share variance times the shares a round adds
    (every included client under distributed DP, the aggregator's one draw under central
    DP), over the scale squared; on the mean, over the plan's expected batch as well."""
    from attacks.inference import noisy_sum_shadow_trainer

    plan = _noisy_sum(config, dataset, get_flat_params(factory()).size).plan
    if plan.mode == "central-dp":
        shares = 1.0
    else:
        shares = float(median(len(r.included) for r in result.rounds if not r.aborted))
    noise = math.sqrt(shares * float(plan.spec.share_variance)) / plan.spec.scale
    return noisy_sum_shadow_trainer(
        factory,
        rounds=config.run.rounds,
        lr=config.training.lr * config.aggregation.server_lr,
        sample_rate=float(np.mean(list(plan.sample_rates.values()))),
        noise_std=noise / plan.expected_contributions,
        clip=config.privacy.max_grad_norm,
        seed=seed,
    )


def _sum_view(
    config: Config,
    dataset: FederatedDataset,
    factory: Callable[[], torch.nn.Module],
    start: np.ndarray,
    records: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, float]:
    """The one-record round's decoded noisy sum of clipped gradients, and the plan's z.

    Client i holds record i only (batch 1: it is always sampled), sends its clipped
    gradient through the run's noisy sum; the released update is −lr·S/E (E the plan's
    expected batch), so the gradient the attacker reads is S itself."""
    from attacks.inference import update_to_gradient

    noisy = _noisy_sum(config, dataset, start.size)
    vectors = {}
    for i, (x, y) in enumerate(records):
        data = ClientData(f"one-record-{i}", x, y, x, y)
        client = GradientSumClient(
            data,
            factory,
            clip=config.privacy.max_grad_norm,
            batch_size=1,
            noise=NoiseSource.from_seed(derive_seed(config.run.seed, 0x1AC, i)),
        )
        vectors[i] = client.train(start, 0).update
    outcome = noisy.aggregate(
        vectors, dict.fromkeys(vectors, 1.0), DropoutSchedule({}), round_idx=0
    )
    if outcome.update is None:
        raise ConfigError(f"the one-record round aborted: {outcome.aborted_reason}")
    grad = update_to_gradient(outcome.update, config.training.lr)
    return grad * np.float32(noisy.plan.expected_contributions), noisy.plan.noise_multiplier


def _inversion(
    config: Config, dataset: FederatedDataset, result: SimulationResult, settings: Mapping[str, int]
) -> dict[str, float]:
    """One round in which client i holds only its first record, from the initial model."""
    from attacks.inference import (
        analytic_first_layer_candidates,
        dlg,
        inverting_gradients,
        mse,
        psnr,
        recover_label,
        update_to_gradient,
    )

    factory = _model_factory(config, dataset)
    start = get_flat_params(factory())
    records = [(c.X_train[:1], c.y_train[:1]) for c in dataset.clients]
    sigma = _sigma(result)
    if _on_sum(config):  # the decoded noisy sum of every client's clipped gradient
        grad, sigma = _sum_view(config, dataset, factory, start, records)
        targets = [x[0] for x, _ in records]
    else:
        training = replace(config.training, batch_size=1, local_epochs=1)
        privacy = (
            PrivacySection()
            if sigma is None
            else replace(config.privacy, noise_multiplier=sigma, target_epsilon=None)
        )
        updates: dict[int, np.ndarray] = {}
        for i, (x, y) in enumerate(records):
            data = ClientData(f"one-record-{i}", x, y, x, y)
            trainer = LocalTrainer(
                data, factory, training, privacy, rounds=1, seed=config.run.seed + i
            )
            updates[i] = trainer.train(start, 0).update
        if config.protection.mode == "none":
            view, targets = updates[0], [records[0][0][0]]
        else:  # what the server learns from the hiding mode: the aggregate, nothing else
            rule = rule_from_config(config.aggregation)
            ids = list(updates)
            protection = make_protection(config, rule, ids, start.size, config.run.seed)
            outcome = protection.aggregate(
                updates, dict.fromkeys(ids, 1.0), DropoutSchedule({}), round_idx=0
            )
            if outcome.update is None:
                raise ConfigError(f"the one-record round aborted: {outcome.aborted_reason}")
            view, targets = outcome.update, [x[0] for x, _ in records]
        grad = update_to_gradient(view, config.training.lr)
    lo = float(min(c.X_train.min() for c in dataset.clients))
    hi = float(max(c.X_train.max() for c in dataset.clients))
    model = factory()

    def best(candidates: list[np.ndarray]) -> tuple[float, float]:
        """(PSNR, MSE) of the closest (candidate, record) pair: the attacker's best hit."""
        pairs = [(psnr(c, t, data_range=hi - lo), mse(c, t)) for c in candidates for t in targets]
        return max(pairs)

    matched = [
        dlg(grad, model, dataset.n_features, label=recover_label(grad, model), steps=20).x,
        inverting_gradients(
            grad,
            model,
            dataset.n_features,
            restarts=settings["restarts"],
            steps=settings["steps"],
            bounds=(lo, hi),
            side=IMAGE_SIDE,
            seed=config.run.seed,
        ).x,
    ]
    psnr_matched, mse_matched = best(matched)
    psnr_analytic, _ = best(list(analytic_first_layer_candidates(grad, model)))
    return {
        "psnr": psnr_matched,
        "mse": mse_matched,
        "psnr_analytic": psnr_analytic,
        "inversion_sigma": sigma if sigma is not None else 0.0,
    }


def _ceiling(audit: Any) -> float:
    """What this audit could certify at best of a mechanism at exactly the accountant's ε
    (∞ without noise: there is no claim to read the bound against)."""
    from secagg.privacy.audit import audit_ceiling

    if not audit.noise_added or not 0 < audit.epsilon_accountant < 100:
        return math.inf
    half = audit.guesses // 2
    return audit_ceiling(
        audit.epsilon_accountant, audit.delta, audit.canaries, half, audit.guesses - half
    )


def _audit(config: Config, canaries: int, key: tuple[str, str, int], cache: InferenceRuns) -> Any:
    from secagg.privacy.audit import audit_dp_sgd, audit_noisy_sum

    audit_key = _shared_key(config, key)
    if audit_key not in cache.audits:
        pv = config.privacy
        audit = partial(audit_dp_sgd, canaries=canaries, delta=pv.delta, seed=key[2])
        if _on_sum(config):  # through the pipeline: this level's mode, ε and protection
            cache.audits[audit_key] = audit_noisy_sum(
                pv.target_epsilon,
                noise_multiplier=None if pv.target_epsilon is not None else pv.noise_multiplier,
                mode=pv.mode,
                protection=config.protection.mode,
                canaries=canaries,
                delta=pv.delta,
                seed=key[2],
            )
        elif pv.mode == "none":  # the same DP-SGD with its noise off: what "no DP" leaks
            cache.audits[audit_key] = audit(1.0, disable_noise=True)
        elif pv.target_epsilon is not None:
            cache.audits[audit_key] = audit(target_epsilon=pv.target_epsilon)
        else:
            cache.audits[audit_key] = audit(pv.noise_multiplier)
    return cache.audits[audit_key]
