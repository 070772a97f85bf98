"""The ``secagg`` command. Every subcommand is a thin shell over a library function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from secagg.errors import ConfigError, SecAggError

_SIMULATE_HELP = """\
Run a federated training simulation described by a TOML config, e.g.

  secagg simulate examples/hospitals.toml
  secagg simulate examples/hospitals.toml --set privacy.mode=none --set run.rounds=5

Writes results/<run.name>/ (metrics.json, config.toml, accuracy.png, epsilon.png; with the
ledger also store/, audit.json and, on the embedded chain, chain.bin: what `secagg audit`
replays) and prints the final test accuracy and each client's privacy budget ε. Any key can
be overridden with --set section.key=value (TOML syntax for the value: 3, 0.5, true,
[64, 32], "text").
"""

_PRIVACY_HELP = """\
Differential-privacy calculator for DP-SGD (Opacus accountants).

Give the sampling either as --sample-rate and --steps, or as --samples, --batch-size and
--epochs (then q = batch/samples and steps = epochs x floor(samples/batch), the steps a
client of secagg simulate takes). Then either:
  --noise-multiplier S   -> prints the ε spent, or
  --target-epsilon E     -> prints the smallest noise multiplier σ that stays within ε.

  secagg privacy --samples 5000 --batch-size 64 --epochs 20 --noise-multiplier 1.1
  secagg privacy --sample-rate 0.01 --steps 2000 --target-epsilon 3 --delta 1e-5

With the noise on the sum (--mode central-dp | distributed-dp) a step is a round, σ is the
noise multiplier of the whole sum (its std over the ℓ2 clip), and a distributed sum counts
only its honest shares: --shares k = survivors - colluders (each client adds σ²/k):

  secagg privacy --mode distributed-dp --sample-rate 0.1 --steps 300 --shares 4 --target-epsilon 3
  secagg privacy --config examples/distributed_dp.toml   # the plan of a run, per client
"""


_ATTACK_HELP = """\
Run every cell of [grid] (attacks x defences x malicious fraction x DP x protection x seeds)
through the real pipeline. Finished cells are kept in OUTPUT/cells.csv and never run again,
so an interrupted grid resumes where it stopped. Writes table.md (median and spread over
seeds) and accuracy.png / attack_success.png.

  secagg attack examples/poisoning.toml
  secagg attack examples/inference.toml --set 'grid.seeds=[0]' --set "grid.attacks=['audit']"
"""

_AUDIT_HELP = """\
Replay every round of a run from what its results folder holds, and print a verdict per
check and round: the chain (an embedded chain is re-executed block by block from chain.bin
and must end at the head metrics.json records), the contract's code, blob hashes, share
commitments and revealed shares, the unmasking (or the ciphertext sum), the posted update
and model, the ε ledger, and what metrics.json reports of the ledger. Every failure names
the round, the check and the party (hospital id and address, or the aggregator) or file.
Exits 1 on any failure.

  secagg audit results/hospitals                        # any run, embedded chain or not
  secagg audit results/hospitals --expect-head 0x5c20..  # the head printed by simulate
  secagg audit --rpc-url http://127.0.0.1:8545 --contract 0xAB.. --store results/x/store
"""


_DEPLOY_HELP = """\
Run the same config on Flower's deployment runtime, on this machine: one SuperLink, one
SuperNode (+ its ClientApp worker) per client, all separate processes on 127.0.0.1, then
`flwr run` of secagg's Flower app; everything is stopped at the end. Writes the same results
folder as secagg simulate (metrics.json, plots, audit.json with a ledger) plus events.jsonl
and deployment.json (nodes, dropouts, bytes on the wire per client per round).

  secagg deploy examples/hospitals.toml --set ledger.enabled=false
  secagg deploy examples/hospitals.toml --set protection.mode=ckks \\
      --set ledger.rpc_url='"http://127.0.0.1:8545"'

Key material (identity keys, chain accounts) is generated per hospital in --workdir; with the
ledger a JSON-RPC chain is needed (ledger.rpc_url), since the embedded one lives in one process.
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Privacy-hardened federated learning: DP-SGD, secure aggregation, "
        "an auditable ledger.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = _config_command(
        sub, "simulate", "run a federated simulation from a TOML config", _SIMULATE_HELP
    )
    sim.add_argument(
        "--output-dir",
        help="results folder (default: <run.output_dir>/<run.name>, suffixed -2, -3... "
        "rather than overwrite an earlier run)",
    )
    sim.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results an existing --output-dir holds (refused otherwise)",
    )
    sim.add_argument("--no-progress", action="store_true", help="do not draw progress bars")

    dep = _config_command(
        sub,
        "deploy",
        "run a config on a local Flower federation (SuperLink + one SuperNode per client)",
        _DEPLOY_HELP,
    )
    dep.add_argument("--output-dir", help="results folder (default: <run.output_dir>/<name>)")
    dep.add_argument(
        "--workdir", help="where logs, keys and Flower's home go (default: a temporary folder)"
    )
    dep.add_argument(
        "--phase-timeout",
        type=float,
        default=60.0,
        help="seconds a phase waits for replies before silent nodes count as dropped",
    )

    lab = _config_command(
        sub,
        "attack",
        "run a grid of poisoning attacks against defences (resumable)",
        _ATTACK_HELP,
        config_help="a run configuration with a [grid] section",
    )
    lab.add_argument(
        "--output-dir",
        help="where cells.csv, table.md and the plots go (default: results/<name>-lab)",
    )
    lab.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    aud = sub.add_parser(
        "audit",
        help="replay a run's rounds from the chain and the blob store, and judge them",
        description=_AUDIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    aud.add_argument("run_dir", nargs="?", help="a results folder of secagg simulate")
    aud.add_argument("--rpc-url", help="JSON-RPC node holding the ledger (default: the run's)")
    aud.add_argument("--contract", help="ledger contract address (default: the run's)")
    aud.add_argument("--store", help="blob store folder (default: the run's)")
    aud.add_argument(
        "--expect-head",
        help="the chain's last block hash as kept outside the folder (simulate prints it)",
    )
    aud.add_argument("--json", action="store_true", help="print the report as one JSON object")

    priv = sub.add_parser(
        "privacy",
        help="ε for a noise multiplier, or the noise multiplier for a target ε",
        description=_PRIVACY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    priv.add_argument("--sample-rate", type=float, help="Poisson sampling rate q in (0, 1]")
    priv.add_argument("--steps", type=int, help="number of DP-SGD steps")
    priv.add_argument("--samples", type=int, help="training set size (with --batch-size)")
    priv.add_argument("--batch-size", type=int, help="expected batch size")
    priv.add_argument("--epochs", type=int, help="passes over the data (with --samples)")
    priv.add_argument("--delta", type=float, default=1e-5, help="δ (default 1e-5)")
    priv.add_argument("--accountant", choices=["rdp", "prv"], default="rdp")
    priv.add_argument(
        "--mode",
        choices=["local-dp", "central-dp", "distributed-dp"],
        default="local-dp",
        help="where the noise is added (default local-dp: DP-SGD on each client)",
    )
    priv.add_argument(
        "--shares", type=int, default=1, help="distributed-dp: honest noise shares in a sum"
    )
    priv.add_argument(
        "--dim", type=int, default=10_000, help="central/distributed-dp: model dimension"
    )
    priv.add_argument("--config", help="a run's TOML: print its noisy-sum plan and each client's ε")
    which = priv.add_mutually_exclusive_group()
    which.add_argument("--noise-multiplier", type=float, help="σ: prints the ε spent")
    which.add_argument("--target-epsilon", type=float, help="ε: prints the σ needed")
    priv.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _config_command(
    sub: Any,
    name: str,
    summary: str,
    description: str,
    config_help: str = "path to a TOML run configuration (see examples/)",
) -> argparse.ArgumentParser:
    """A subcommand that runs one TOML configuration, with its repeatable --set overrides."""
    command: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("config", help=config_help)
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set privacy.target_epsilon=2 (repeatable)",
    )
    return command


def _version() -> str:
    from secagg import __version__

    return f"secagg {__version__}"


def _cmd_simulate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from secagg.config import load_config
    from secagg.simulation import run_simulation
    from secagg.simulation.results import unique_run_dir

    config = load_config(args.config, args.overrides)
    out = (
        Path(args.output_dir)
        if args.output_dir
        else unique_run_dir(config.run.output_dir, config.run.name)
    )
    console = Console(stderr=False)
    console.print(
        f"[bold]{config.run.name}[/]: {config.data.dataset}, {config.data.clients or 'per-site'} "
        f"clients, {config.run.rounds} rounds, model {config.model.name}, privacy "
        f"{config.privacy.mode}, protection {config.protection.mode}"
    )
    result = run_simulation(
        config, output_dir=out, progress=not args.no_progress, overwrite=args.overwrite
    )

    final = result.final
    table = Table(title="privacy spent per client", show_lines=False)
    table.add_column("client")
    table.add_column("train samples", justify="right")
    table.add_column("σ", justify="right")
    table.add_column("ε", justify="right")
    for info in result.clients:
        eps = final["epsilon"].get(info.name)
        table.add_row(
            info.name,
            str(info.train_samples),
            f"{info.noise_multiplier:.3f}" if info.noise_multiplier is not None else "-",
            f"{eps:.3f}" if eps is not None else "∞ (no DP)",
        )
    console.print(table)
    auc = f", AUC {final['auc']:.4f}" if final.get("auc") is not None else ""
    eps_line = ""
    if final["max_epsilon"] is not None:
        eps_line = f"; max ε {final['max_epsilon']:.3f} at δ = {config.privacy.delta:g}"
    console.print(
        f"final test accuracy [bold]{final['accuracy']:.4f}[/]{auc}{eps_line}"
        + (f"; {final['aborted_rounds']} aborted round(s)" if final["aborted_rounds"] else "")
    )
    cost = _protection_cost(result)
    if cost:
        console.print(cost)
    if result.audit:
        failed = [c for c in result.audit["checks"] if not c["ok"]]
        verdict = "PASS" if result.audit["verdict"] == "pass" else f"FAIL ({len(failed)} checks)"
        console.print(
            f"ledger {result.ledger['contract']} (chain id {result.ledger['chain_id']}): "
            f"audit of {len(result.audit['rounds'])} rounds from chain and store: {verdict}"
        )
        head = result.ledger.get("head") or {}
        if head:
            console.print(
                f"chain head {head['hash']} (block {head['block']}): keep it; "
                f"`secagg audit {out} --expect-head {head['hash']}` checks the folder against it"
            )
    console.print(f"results: {out}")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from secagg.config import load_config
    from secagg.flower.deploy import deploy
    from secagg.simulation.results import check_output_dir, unique_run_dir

    config = load_config(args.config, args.overrides)
    out = (
        Path(args.output_dir)
        if args.output_dir
        else unique_run_dir(config.run.output_dir, f"{config.run.name}-flower")
    )
    check_output_dir(out, overwrite=False)
    print(
        f"{config.run.name}: local Flower federation, protection {config.protection.mode}, "
        f"privacy {config.privacy.mode}, {config.run.rounds} rounds; results in {out}"
    )
    workdir = Path(args.workdir) if args.workdir else None
    status = deploy(config, out, workdir=workdir, phase_timeout=args.phase_timeout)
    if status.get("status") != "finished":
        print(f"the run failed: {status.get('error')}", file=sys.stderr)
        return 1
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics["final"]
    sent = [r["bytes_sent_per_client"] for r in status.get("rounds", [])]
    eps = final["max_epsilon"]
    print(
        f"final test accuracy {final['accuracy']:.4f}; "
        + (f"max ε {eps:.3f}; " if eps is not None else "no DP; ")
        + f"{final['aborted_rounds']} aborted round(s); "
        f"{(sum(sent) / len(sent) if sent else 0) / 1024:.1f} KiB sent per client per round"
    )
    audit = out / "audit.json"
    if audit.is_file():
        print(f"audit: {json.loads(audit.read_text()).get('verdict')}")
    print(f"results: {out}")
    return 0


def _protection_cost(result: object) -> str:
    """One line on what hiding the updates cost, from the rounds that completed."""
    from statistics import median

    from secagg.simulation.engine import SimulationResult

    assert isinstance(result, SimulationResult)
    stats = [r.protection for r in result.rounds if r.protection]
    if not stats or result.config.protection.mode == "none":
        return ""
    sent = median(s["bytes_sent_per_client"] for s in stats)
    phases = stats[-1].get("client_seconds", {})
    per_phase = ", ".join(
        f"{p} {median(s['client_seconds'].get(p, 0.0) for s in stats) * 1e3:.1f}" for p in phases
    )
    server = median(s["server_seconds"] for s in stats)
    dim = len(result.params)
    consistency = stats[-1].get("consistency")
    mode = result.config.protection.mode + (f" ({consistency} consistency)" if consistency else "")
    key_holder = [s["key_holder_seconds"] for s in stats if "key_holder_seconds" in s]
    decrypt = f"; key holder {median(key_holder) * 1e3:.1f} ms" if key_holder else ""
    return (
        f"protection {mode}: {sent / 1024:.1f} KiB sent per client per round "
        f"({sent / (4 * dim):.1f}x the float32 update); client CPU ms per phase: {per_phase}; "
        f"server {server * 1e3:.1f} ms{decrypt} per round (medians)"
    )


def _cmd_attack(args: argparse.Namespace) -> int:
    from attacks.lab import load_grid, run_grid
    from secagg.config import config_from_dict

    grid = load_grid(args.config, args.overrides)
    base = config_from_dict(grid.base)
    out = Path(args.output_dir or Path(base.run.output_dir) / f"{base.run.name}-lab")
    cells = len(grid.cells())
    print(f"{cells} cells; results in {out} (finished cells are kept and not run again)")
    rows = run_grid(grid, out, progress=not args.no_progress)
    failed = [r for r in rows if r["status"] == "failed"]
    print((out / "table.md").read_text())
    print(f"{len(rows)} cells done, {len(failed)} failed; table: {out / 'table.md'}")
    return 1 if failed else 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from secagg.ledger.runfolder import audit_folder

    if not args.run_dir and not (args.rpc_url and args.contract and args.store):
        raise ConfigError("give a results folder, or --rpc-url, --contract and --store")
    result = audit_folder(
        args.run_dir,
        rpc_url=args.rpc_url,
        contract=args.contract,
        store=args.store,
        expected_head=args.expect_head,
    )
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    return 0 if result.passed else 1


def _cmd_privacy(args: argparse.Namespace) -> int:
    from secagg.privacy import dp_sgd_schedule, epsilon_for, noise_for

    if args.config is not None:
        return _privacy_plan(args)
    if args.noise_multiplier is None and args.target_epsilon is None:
        raise ConfigError("give --noise-multiplier or --target-epsilon (or --config)")
    if args.mode != "local-dp":
        return _privacy_on_sum(args)
    if args.sample_rate is not None or args.steps is not None:
        if args.sample_rate is None or args.steps is None:
            raise ConfigError("give both --sample-rate and --steps")
        q, steps = args.sample_rate, args.steps
    elif None not in (args.samples, args.batch_size, args.epochs):
        if args.samples <= 0 or args.batch_size <= 0 or args.epochs <= 0:
            raise ConfigError("--samples, --batch-size and --epochs must be > 0")
        q, steps = dp_sgd_schedule(args.samples, args.batch_size, args.epochs)
    else:
        raise ConfigError(
            "give the sampling: --sample-rate and --steps, or --samples, --batch-size and --epochs"
        )
    out: dict[str, float | int | str] = {
        "sample_rate": q,
        "steps": steps,
        "delta": args.delta,
        "accountant": args.accountant,
    }
    if args.noise_multiplier is not None:
        eps = epsilon_for(
            noise_multiplier=args.noise_multiplier,
            sample_rate=q,
            steps=steps,
            delta=args.delta,
            accountant=args.accountant,
        )
        out |= {"noise_multiplier": args.noise_multiplier, "epsilon": eps}
        text = f"ε = {eps:.4f} (σ = {args.noise_multiplier:g}, q = {q:.4g}, steps = {steps}"
    else:
        sigma = noise_for(
            target_epsilon=args.target_epsilon,
            delta=args.delta,
            sample_rate=q,
            steps=steps,
            accountant=args.accountant,
        )
        out |= {"target_epsilon": args.target_epsilon, "noise_multiplier": sigma}
        text = f"σ = {sigma:.4f} for ε ≤ {args.target_epsilon:g} (q = {q:.4g}, steps = {steps}"
    text += f", δ = {args.delta:g}, {args.accountant.upper()} accountant)"
    print(json.dumps(out) if args.json else text)
    return 0


def _sampling(args: argparse.Namespace) -> tuple[float, int]:
    if args.sample_rate is None or args.steps is None:
        raise ConfigError(f"--mode {args.mode}: give --sample-rate and --steps (rounds)")
    return args.sample_rate, args.steps


def _privacy_on_sum(args: argparse.Namespace) -> int:
    """ε (or σ) of rounds that each release one noisy sum, quantisation aside."""
    from secagg.privacy.distributed_accounting import (
        NoisySum,
        epsilon,
        noise_multiplier_for,
    )

    q, steps = _sampling(args)
    shares = 1 if args.mode == "central-dp" else args.shares
    if shares < 1:
        raise ConfigError(f"--shares must be >= 1, got {shares}")
    # A fine quantisation step: Δ₂ of 2^20 units, the limit the encoding approaches.
    sensitivity = float(2**20)
    if args.noise_multiplier is not None:
        z = args.noise_multiplier
    else:
        z = noise_multiplier_for(
            target_epsilon=args.target_epsilon,
            delta=args.delta,
            sample_rate=q,
            steps=steps,
            shares=shares,
            l2_sensitivity=sensitivity,
            dim=args.dim,
        )
    release = NoisySum(
        share_variance=(z * sensitivity) ** 2 / shares,
        shares=shares,
        l2_sensitivity=sensitivity,
        dim=args.dim,
    )
    eps = epsilon([(release, q, steps)], args.delta)
    out = {
        "mode": args.mode,
        "sample_rate": q,
        "steps": steps,
        "delta": args.delta,
        "shares": shares,
        "noise_multiplier": z,
        "share_noise_multiplier": z / shares**0.5,
        "epsilon": eps,
    }
    text = (
        f"ε = {eps:.4f} with σ = {z:.4f} on the sum"
        + (f" ({shares} honest shares of σ/√k = {z / shares**0.5:.4f} each)" if shares > 1 else "")
        + f" (q = {q:.4g}, rounds = {steps}, δ = {args.delta:g}, RDP of the discrete Gaussian sum)"
    )
    print(json.dumps(out) if args.json else text)
    return 0


def _privacy_plan(args: argparse.Namespace) -> int:
    """The noisy-sum plan a run's config makes, and the ε each client would spend."""
    from secagg.config import SUM_MODES, load_config
    from secagg.data import load_federated
    from secagg.models import build_model, get_flat_params
    from secagg.privacy.integer_encoding import padded_dimension
    from secagg.privacy.sum_plan import SumAccountant
    from secagg.protection.masking import MaskingSum
    from secagg.protection.noisy_sum import sum_plan

    config = load_config(args.config)
    if config.privacy.mode not in SUM_MODES:
        raise ConfigError(
            f"--config: privacy.mode = {config.privacy.mode!r}; the plan is for central-dp "
            "or distributed-dp (for local-dp give --samples, --batch-size and --epochs)"
        )
    data = load_federated(config.data, config.run.seed)
    dim = get_flat_params(
        build_model(config.model.name, data.n_features, data.n_classes, hidden=config.model.hidden)
    ).size
    sizes = {i: c.num_samples for i, c in enumerate(data.clients)}
    masking = None
    if config.protection.mode in MaskingSum.MODES:
        masking = MaskingSum(config, sorted(sizes), padded_dimension(dim), config.run.seed)
    plan = sum_plan(config, sizes, dim, masking)
    accountant = SumAccountant(plan)
    for _ in range(config.run.rounds):
        accountant.record(plan.min_shares)
    eps = accountant.epsilons()
    out = {**plan.public(), "rounds": config.run.rounds, "delta": plan.delta}
    out["epsilon"] = {data.clients[i].name: e for i, e in eps.items()}
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{plan.mode}, unit {plan.unit}: σ = {plan.noise_multiplier:.4f} x the clip on the sum"
        f" ({plan.min_shares} honest shares guaranteed, {plan.colluders} colluders assumed),"
        f" {config.run.rounds} rounds at δ = {plan.delta:g}; {plan.spec.bits}-bit sums,"
        f" scale {plan.spec.scale:.4g}, dimension {plan.spec.padded_dim}"
    )
    for i, e in eps.items():
        print(f"  {data.clients[i].name}: q = {plan.sample_rates[i]:.4g}, ε = {e:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {
        "simulate": _cmd_simulate,
        "privacy": _cmd_privacy,
        "audit": _cmd_audit,
        "attack": _cmd_attack,
        "deploy": _cmd_deploy,
    }
    try:
        return handlers[args.command](args)
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("secagg: interrupted (results of finished rounds are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
