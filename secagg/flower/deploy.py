"""A local federation to try a deployment on one machine: one SuperLink, N SuperNodes, a run.

Every party is a separate process group on 127.0.0.1 at a free port, as it would be a
separate machine in a pilot:

- ``flower-superlink --insecure --port P`` (Fleet, Control and Runtime HTTP APIs on P; the
  ServerApp runs in a subprocess of it, with runtime dependency installation disabled so
  nothing is downloaded);
- per hospital ``i``: ``flower-supernode --insecure --superlink 127.0.0.1:P --port Q_i
  --isolation process --node-config "client-id=i ..."`` and beside it the node's ClientApp
  worker ``python -m secagg.flower.worker --runtime-api-address 127.0.0.1:Q_i``
  (:mod:`secagg.flower.worker`);
- ``flwr run <app> <connection> --run-config overrides.toml`` submits the run, with a Flower
  config (``FLWR_HOME/config.toml``) naming the SuperLink.

Key material is generated into the work folder, one folder per hospital (see
:mod:`secagg.flower.keys`), and so is each hospital's policy (:mod:`secagg.flower.policy`):
``workdir/nodes/<id>/policy.toml`` with its state folder beside it. The policy is written from
the configs the federation will run (:meth:`LocalFederation.generate_keys`): its privacy floor
admits exactly those runs (their modes, δ, clipping norm and accountant; ``max_epsilon`` the
sum of their planned ε), and for runs with a ledger the shortcut deploys the consortium's
contract first and writes its address and chain id into every policy, then hands the same
contract to the server app (``contract`` in the run config). A real hospital writes its
policy itself. :meth:`LocalFederation.stop` ends every process group it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secagg.config import Config, config_to_toml
from secagg.errors import ConfigError, SecAggError
from secagg.flower.policy import LedgerTrust, PrivacyFloor, ProtectionFloor, policy_toml

#: The Flower app folder shipped with the package (``flwr run`` builds it into a FAB).
APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION = "secagg-local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A console script of the running interpreter's environment (the venv's flwr)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass
class Party:
    """One process group the federation started."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalFederation:
    """Start, use and stop a local Flower federation for ``n`` hospitals."""

    workdir: Path
    n: int
    node_configs: list[dict[str, Any]] = field(default_factory=list)
    parties: dict[str, Party] = field(default_factory=dict)
    superlink_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    #: The public identity directory written by :meth:`generate_keys` (signed masking).
    identities: Path | None = None
    #: rpc_url -> (contract address, deployment block) of the consortium's ledger
    contracts: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "flwr-home"
        home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            # How often the SuperLink's SuperExec looks for a ServerApp to start (default 1 s).
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
        }

    # ---- key material -------------------------------------------------------------------------

    def generate_keys(self, *configs: Config, key_holder: int = 0) -> Path | None:
        """Each hospital's keys under ``workdir/keys/<id>/`` and its policy under
        ``workdir/nodes/<id>/``, for runs of every given config (a node ignores what a run
        does not use); returns the identity directory."""
        from secagg.flower.keys import generate_identities, write_chain_key

        keys = self.workdir / "keys"
        modes = {c.protection.mode for c in configs}
        signed = any(
            c.protection.mode in ("secagg", "secagg+") and c.protection.consistency == "signatures"
            for c in configs
        )
        ledger = any(c.ledger.enabled for c in configs)
        directory = None
        he = bool(modes & {"ckks", "paillier"})  # HE clients sign their ciphertexts
        if signed or ledger or he:  # the contract registers every identity key too
            directory = generate_identities(range(self.n), keys)
        if not self.node_configs:
            self.node_configs = [{"client-id": i, "partition-id": i} for i in range(self.n)]
        for i, node in enumerate(self.node_configs):
            if directory is not None:
                node["identity-key"] = str(keys / str(i) / "identity.key")
                node["identities"] = str(directory)
            if ledger:
                from eth_account import Account

                path = keys / str(i) / "chain.key"
                write_chain_key(path, bytes(Account.create().key))
                node["chain-key"] = str(path)
            if he and i == key_holder:
                node["he-key-holder"] = True
        self.identities = directory
        self._write_policies(configs, key_holder if he else None)
        return directory

    def _write_policies(self, configs: Sequence[Config], key_holder: int | None) -> None:
        """Each node's policy: floors admitting these runs, the contract they record on."""
        floor = admitting_floor(configs)
        hiding = admitting_protection(configs, key_holder)
        trusted = None
        urls = {c.ledger.rpc_url for c in configs if c.ledger.enabled}
        if len(urls) > 1:
            raise ConfigError(f"runs on several chains ({sorted(urls)}): a node trusts one")
        if urls:
            trusted = self.deploy_contract(next(c for c in configs if c.ledger.enabled))
        for i, node in enumerate(self.node_configs):
            folder = self.workdir / "nodes" / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            policy = folder / "policy.toml"
            client_id = int(node.get("client-id", node.get("partition-id", i)))
            policy.write_text(
                f"# hospital {client_id}'s policy, written by secagg deploy from the runs it "
                "admits\n"
                + policy_toml(
                    client_id=client_id,
                    privacy=floor,
                    protection=hiding,
                    ledger=trusted,
                    state_folder="state",
                )
            )
            node["policy"] = str(policy)

    def deploy_contract(self, config: Config) -> LedgerTrust:
        """Deploy the consortium's ledger on ``config``'s chain (once per chain), as its
        admin would before any run: the contract every node's policy trusts."""
        from secagg.ledger.client import LedgerClient
        from secagg.ledger.providers import connect
        from secagg.ledger.records import epsilon_to_fixed
        from secagg.ledger.session import TOKEN_UNIT

        url = config.ledger.rpc_url
        if not url:
            raise ConfigError(
                "a deployment with the ledger needs a shared chain: set ledger.rpc_url (the "
                "embedded chain lives inside one process)"
            )
        w3 = connect(url)
        if url not in self.contracts:
            admin = LedgerClient.deploy(
                w3,
                admin=w3.eth.accounts[0],
                epsilon_cap=epsilon_to_fixed(config.ledger.epsilon_cap),
                reward_per_round=config.ledger.reward_per_round * TOKEN_UNIT,
            )
            self.contracts[url] = (admin.address, admin.from_block)
        return LedgerTrust(
            rpc_url=url, chain_id=int(w3.eth.chain_id), contract=self.contracts[url][0]
        )

    # ---- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, command: Sequence[str], cwd: Path | None = None) -> Party:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as sink:
            process = subprocess.Popen(
                list(command),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(cwd or self.workdir),
                start_new_session=True,  # its own process group: stopped as one
            )
        party = Party(name, process, log)
        self.parties[name] = party
        return party

    def start(self) -> None:
        """The SuperLink, then every SuperNode with its ClientApp worker."""
        self.superlink_port = free_port()
        self._spawn_superlink()
        (self.workdir / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.superlink_port}"\ninsecure = true\n'
        )
        if not self.node_configs:
            self.node_configs = [{"client-id": i, "partition-id": i} for i in range(self.n)]
        # SuperNodes retry until the SuperLink answers: start them while it comes up.
        ports = [self._spawn_supernode(i) for i in range(self.n)]
        self._wait_for_log("superlink", "Uvicorn running")
        for i, port in enumerate(ports):
            self._wait_for_log(f"supernode-{i}", "Uvicorn running")
            self._spawn_worker(i, port)

    def start_node(self, i: int) -> None:
        """(Re)start hospital ``i``: its SuperNode, then its ClientApp worker."""
        port = self._spawn_supernode(i)
        self._wait_for_log(f"supernode-{i}", "Uvicorn running")
        self._spawn_worker(i, port)

    def _spawn_supernode(self, i: int) -> int:
        port = free_port()
        node_config = " ".join(f"{k}={_node_value(v)}" for k, v in self.node_configs[i].items())
        self._spawn(
            f"supernode-{i}",
            [
                _bin("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.superlink_port}",
                "--port",
                str(port),
                "--isolation",
                "process",
                "--node-config",
                node_config,
            ],
        )
        return port

    def _spawn_worker(self, i: int, port: int) -> None:
        self._spawn(
            f"worker-{i}",
            [
                sys.executable,
                "-m",
                "secagg.flower.worker",
                "--runtime-api-address",
                f"127.0.0.1:{port}",
            ],
        )

    def _wait_for_log(self, name: str, text: str, timeout: float = 60.0) -> None:
        party = self.parties[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in party.log.read_text(errors="replace"):
                return
            if party.process.poll() is not None:
                break
            time.sleep(0.05)
        raise SecAggError(f"{name} did not start:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        party = self.parties.get(name)
        return party.log.read_text(errors="replace")[-chars:] if party else ""

    def kill(self, name: str) -> None:
        """SIGKILL one party's process group (a machine that goes away)."""
        party = self.parties.get(name)
        if party is None or party.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(party.process.pid, signal.SIGKILL)
        party.process.wait()

    def kill_node(self, i: int) -> None:
        """Hospital ``i`` goes away mid-run: its SuperNode and its ClientApp worker."""
        self.kill(f"worker-{i}")
        self.kill(f"supernode-{i}")

    def _spawn_superlink(self) -> None:
        self._spawn(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--port",
                str(self.superlink_port),
                "--disable-runtime-dependency-installation",
            ],
        )

    def restart_superlink(self) -> None:
        """Stop the SuperLink and start a fresh one on the same port."""
        self.kill("superlink")
        self._spawn_superlink()
        self._wait_for_log("superlink", "Uvicorn running")

    def stop(self) -> None:
        """End every process group this federation started (TERM, then KILL)."""
        for party in self.parties.values():
            if party.process.poll() is None:
                try:
                    os.killpg(party.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 5
        for party in self.parties.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                party.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children (ServerApp, SuperExec) share the group: make sure they are gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(party.process.pid, signal.SIGKILL)
            if party.process.poll() is None:
                party.process.wait()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- a run ----------------------------------------------------------------------------

    def submit(
        self,
        config: Config,
        output_dir: Path,
        *,
        phase_timeout: float = 60.0,
        identities: Path | None = None,
        app_dir: Path = APP_DIR,
    ) -> str:
        """``flwr run`` the app with ``config``; returns Flower's run id."""
        output_dir = Path(output_dir).resolve()
        identities = identities or self.identities
        contract, block = "", 0
        if config.ledger.enabled and config.ledger.rpc_url in self.contracts:
            contract, block = self.contracts[config.ledger.rpc_url]
        overrides = self.workdir / "run-config.toml"
        overrides.write_text(
            f"config = {_toml_string(config_to_toml(config))}\n"
            f"output-dir = {_toml_string(str(output_dir))}\n"
            f"phase-timeout = {float(phase_timeout)}\n"
            f"identities = {_toml_string(str(identities) if identities else '')}\n"
            f"contract = {_toml_string(contract)}\n"
            f"contract-block = {int(block)}\n"
        )
        done = subprocess.run(
            [
                _bin("flwr"),
                "run",
                str(app_dir),
                CONNECTION,
                "--run-config",
                str(overrides),
                "--format",
                "json",
            ],
            env=self.env,
            cwd=str(self.workdir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise SecAggError(f"flwr run failed:\n{done.stdout}\n{done.stderr}")
        try:
            return str(json.loads(done.stdout).get("run-id", ""))
        except json.JSONDecodeError:
            return ""

    def wait(self, output_dir: Path, timeout: float = 600.0) -> dict[str, Any]:
        """The run's ``deployment.json`` once it says finished or failed."""
        from secagg.flower.server_app import DEPLOYMENT_FILE

        status_file = Path(output_dir) / DEPLOYMENT_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if status_file.is_file():
                try:
                    status: dict[str, Any] = json.loads(status_file.read_text())
                except json.JSONDecodeError:
                    status = {}
                if status.get("status") in ("finished", "failed"):
                    return status
            if self.parties["superlink"].process.poll() is not None:
                break
            time.sleep(0.1)
        raise SecAggError(
            f"the run did not finish within {timeout:g} s; SuperLink log:\n"
            + self.log_tail("superlink")
        )


def admitting_protection(configs: Sequence[Config], key_holder: int | None) -> ProtectionFloor:
    """The protection floor that admits exactly these runs: their modes, the weakest
    consistency, gamma and threshold they ask for (and the colluders a distributed-dp run
    assumes), and the key holder ``deploy`` chose."""
    from secagg.data import load_federated

    fractions = []
    gammas = []
    for config in configs:
        clients = config.data.clients or len(load_federated(config.data, 0).clients)
        t = config.protection.threshold
        if t >= 1:
            t = t / clients
        fractions.append(t)
        if config.protection.mode in ("secagg", "secagg+"):
            gammas.append(config.protection.max_colluding_fraction)
        c = config.privacy.colluding_clients
        if config.privacy.mode == "distributed-dp" and c is not None:
            gammas.append(c / clients)  # floor(gamma n) = c: the colluders it assumes
    masking = [c.protection for c in configs if c.protection.mode in ("secagg", "secagg+")]
    return ProtectionFloor(
        modes=sorted({c.protection.mode for c in configs}),
        consistency="none" if any(p.consistency == "none" for p in masking) else "signatures",
        min_colluding_fraction=min(gammas, default=0.1),
        min_threshold=min(fractions),
        he_key_holder=key_holder,
    )


def admitting_floor(configs: Sequence[Config]) -> PrivacyFloor:
    """The privacy floor that admits exactly these runs, for the one-machine shortcut.

    Mode ``none`` if any run trains without DP, ``distributed-dp`` if one runs it; δ,
    clipping norm: the largest asked; the accountant the DP-SGD runs share; ``max_epsilon``:
    the sum of each run's planned ε (its target, or for a given σ or z the largest any
    client's schedule or noise plan spends), so every run fits in the lifetime budget one
    after the other (composition costs at most the sum).
    """
    from secagg.data import load_federated
    from secagg.privacy.accounting import dp_sgd_schedule, epsilon_for

    dp_modes = ("local-dp", "distributed-dp")
    private = [c.privacy for c in configs if c.privacy.mode in dp_modes]
    if not private:
        return PrivacyFloor(mode="none")
    accountants = {p.accountant for p in private if p.mode == "local-dp"} or {"rdp"}
    if len(accountants) > 1:
        raise ConfigError(f"runs with different accountants {sorted(accountants)}: pick one")
    planned = 0.0
    for config in configs:
        p = config.privacy
        if p.mode not in dp_modes:
            continue
        if p.target_epsilon is not None:
            planned += p.target_epsilon
            continue
        if p.mode == "distributed-dp":
            planned += _planned_sum_epsilon(config)
            continue
        assert p.noise_multiplier is not None
        worst = 0.0
        for client in load_federated(config.data, config.run.seed).clients:
            q, steps = dp_sgd_schedule(
                client.num_samples, config.training.batch_size, config.training.local_epochs
            )
            worst = max(
                worst,
                epsilon_for(
                    noise_multiplier=p.noise_multiplier,
                    sample_rate=q,
                    steps=steps * config.run.rounds,
                    delta=p.delta,
                    accountant=p.accountant,
                ),
            )
        planned += worst
    mode = "distributed-dp" if any(p.mode == "distributed-dp" for p in private) else "local-dp"
    return PrivacyFloor(
        mode="none" if len(private) < len(configs) else mode,
        max_epsilon=planned,
        delta=max(p.delta for p in private),
        max_grad_norm=max(p.max_grad_norm for p in private),
        accountant=accountants.pop(),
    )


def _planned_sum_epsilon(config: Config) -> float:
    """The largest ε any client's worst-case noise plan spends in a distributed-dp run with a
    given z (built as the coordinator builds it, from the run's own split)."""
    from secagg.protection.noisy_sum import make_noisy_sum
    from secagg.simulation.federation import Federation

    federation = Federation.load(config)
    sizes = {c: d.num_samples for c, d in zip(federation.ids, federation.data.clients, strict=True)}
    plan = make_noisy_sum(config, sizes, federation.initial_params().size, 0, {}).plan
    return max(plan.planned_epsilon(q) for q in plan.sample_rates.values())


def _node_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _toml_string(str(value))


def deploy(
    config: Config,
    output_dir: Path,
    *,
    workdir: Path | None = None,
    phase_timeout: float = 60.0,
    node_configs: Sequence[Mapping[str, Any]] | None = None,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Start a local federation for ``config``, run it, stop everything; the final status."""
    import tempfile

    from secagg.data import load_federated

    n = len(load_federated(config.data, config.run.seed).clients)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="secagg-flower-"))
    federation = LocalFederation(work, n, [dict(c) for c in node_configs or []])
    try:
        identities = federation.generate_keys(config)
        federation.start()
        federation.submit(config, output_dir, phase_timeout=phase_timeout, identities=identities)
        return federation.wait(output_dir, timeout)
    finally:
        federation.stop()
