"""Typed run configuration, loaded from TOML and validated with one-line errors.

Every key a user can set lives in one of the dataclasses below; their field names are the TOML
keys (section = dataclass). Validation happens once, at load time, so the rest of the library
can trust a :class:`Config` it is handed.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from secagg.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Section = TypeVar("_Section", bound="DataclassInstance")


@dataclass
class RunSection:
    """[run]: naming, seeding and length of a simulation."""

    name: str = "run"
    seed: int = 0
    rounds: int = 20
    output_dir: str = "results"
    # privacy.unit = "client": clients expected in each round's sum (each client joins with
    # probability clients_per_round / clients, a coin the server never sees); 0 = all
    clients_per_round: int = 0


@dataclass
class DataSection:
    """[data]: where examples come from and how they are split among clients."""

    dataset: str = "breast_cancer"  # breast_cancer | digits | synthetic | csv
    path: str = ""  # csv: one file with a site column, or a folder with one CSV per site
    label: str = "label"  # csv: name of the label column
    site_column: str = ""  # csv (single file): column naming each row's site
    # csv: columns that are neither features nor errors (patient IDs, free text)
    exclude: list[str] = field(default_factory=list)
    # csv: column -> the categories every site shares, one-hot encoded as "column=category"
    # features in this order (declared here, never learned from one site's data)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    # csv: empty/NaN feature cells: error (list them) | drop (the row) | impute (the site's
    # own median, or most frequent category)
    missing: str = "error"
    partition: str = "iid"  # iid | dirichlet | site
    alpha: float = 0.5  # Dirichlet concentration (smaller = more skewed)
    clients: int = 10
    test_fraction: float = 0.2  # held-out global test set, evaluation only
    val_fraction: float = 0.1  # per-client validation split
    standardize: str = "site"  # site (each site its own statistics) | global (pooled) | none
    synthetic_samples: int = 2000
    synthetic_features: int = 20
    synthetic_classes: int = 2
    # rows held out for the server's own clean root dataset (FLTrust), before partitioning;
    # 0 = none. Every rule then trains on the same client data, so runs stay comparable.
    root_samples: int = 0


@dataclass
class ModelSection:
    """[model]: the network every client trains."""

    name: str = "logreg"  # logreg | mlp | cnn
    hidden: list[int] = field(default_factory=lambda: [64])


@dataclass
class TrainingSection:
    """[training]: local optimisation on each client."""

    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"  # sgd | adam
    momentum: float = 0.0


@dataclass
class PrivacySection:
    """[privacy]: differential privacy of each client's training."""

    # none | local-dp (each client's DP-SGD) | central-dp (a trusted aggregator noises the
    # sum) | distributed-dp (each client adds an integer noise share under secure aggregation)
    mode: str = "none"
    target_epsilon: float | None = None  # calibrate σ to reach this ε after all rounds
    noise_multiplier: float | None = None  # or give σ directly
    delta: float = 1e-5
    max_grad_norm: float = 1.0  # ℓ2 clip of one record's gradient (client unit: one update)
    accountant: str = "rdp"  # rdp | prv (local-dp; the noisy sum is accounted with RDP)
    # central-dp / distributed-dp: whom ε protects: "record" (each patient; DP-FedSGD, one
    # step per round) or "client" (each hospital or device as a whole; DP-FedAvg)
    unit: str = "record"
    # distributed-dp: clients that may collude with the server (their noise shares do not
    # count); unset = floor(protection.max_colluding_fraction x clients)
    colluding_clients: int | None = None


@dataclass
class ProtectionSection:
    """[protection]: how each update is hidden from the aggregator."""

    mode: str = "none"  # none | secagg | secagg+
    neighbors: int = 0  # SecAgg+ graph degree; 0 = chosen from n and the security parameters
    threshold: float = 0.6  # t: a fraction of clients (< 1) or an absolute count (>= 1)
    bits: int = 32  # modulus 2^bits of the masked group
    clip_range: float = 1.0  # each update coordinate is clipped to [-clip_range, clip_range]
    dropout: float = 0.0  # simulated fraction of clients dropping out at each phase
    # fraction of clients a deployment expects to lose over a whole round; sizes the SecAgg+
    # graph so that every neighbourhood keeps enough share holders (see secagg/masking/params.py)
    expected_dropout: float = 0.1
    # gamma: fraction of clients assumed to collude with the server; the SecAgg+ degree is sized
    # so that no honest client has enough colluding neighbours to expose its input, except with
    # probability 2^-40, and signed rounds need t > (n + gamma n) / 2 (secagg/masking/params.py)
    max_colluding_fraction: float = 0.1
    dropout_phases: list[str] = field(
        default_factory=lambda: ["share_keys", "masked_input", "unmasking"]
    )
    # signatures: every client authenticates its round keys to its neighbours (MACs under its
    # identity's static X25519 key) and signs the survivor set (BLS), and reveals shares only
    # after t signatures on one set (Bonawitz et al. §4, active security); none: clients
    # only check what each request names (honest-but-curious server)
    consistency: str = "signatures"
    # ckks | paillier: largest error allowed per coordinate of the decrypted sum of updates
    he_precision: float = 1e-6
    he_key_bits: int = 3072  # paillier: modulus size (>= 2048; 3072 matches 128-bit security)
    he_workers: int = 1  # paillier: processes that encrypt (1 = in the client's process)


@dataclass
class AggregationSection:
    """[aggregation]: how the server combines the updates it receives."""

    rule: str = "fedavg"
    server_lr: float = 1.0
    f: int = 1  # krum, multi-krum: malicious clients tolerated (needs clients > 2f + 2)
    m: int = 0  # multi-krum: updates averaged; 0 = n - f
    trim: float = 0.1  # trimmed-mean: fraction cut from each end, in [0, 0.5)
    max_norm: float = 1.0  # norm-bound: each update is clipped to this L2 norm
    tau: float = 1.0  # centered-clipping: clipping radius around the running centre
    iterations: int = 1  # centered-clipping: clipping steps per round


@dataclass
class LedgerSection:
    """[ledger]: the smart contract that records every round, and the blob store beside it."""

    enabled: bool = False
    rpc_url: str = ""  # JSON-RPC node; "" = the embedded chain (eth-tester on py-evm)
    epsilon_cap: float = 10.0  # the contract refuses a commit past this cumulative ε
    reward_per_round: int = 10  # reward tokens (whole units) for each included participant
    store: str = ""  # blob store folder; "" = <results folder>/store (or a temporary one)


@dataclass
class Config:
    """A whole run: one attribute per TOML section."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    privacy: PrivacySection = field(default_factory=PrivacySection)
    protection: ProtectionSection = field(default_factory=ProtectionSection)
    aggregation: AggregationSection = field(default_factory=AggregationSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "run": RunSection,
    "data": DataSection,
    "model": ModelSection,
    "training": TrainingSection,
    "privacy": PrivacySection,
    "protection": ProtectionSection,
    "aggregation": AggregationSection,
    "ledger": LedgerSection,
}

# Allowed values of the string options; one table so the docs, errors and checks agree.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("breast_cancer", "digits", "synthetic", "csv"),
    "data.partition": ("iid", "dirichlet", "site"),
    "data.standardize": ("site", "global", "none"),
    "data.missing": ("error", "drop", "impute"),
    "model.name": ("logreg", "mlp", "cnn"),
    "training.optimizer": ("sgd", "adam"),
    "privacy.mode": ("none", "local-dp", "central-dp", "distributed-dp"),
    "privacy.unit": ("record", "client"),
    "privacy.accountant": ("rdp", "prv"),
    "protection.mode": ("none", "secagg", "secagg+", "ckks", "paillier"),
    "protection.consistency": ("signatures", "none"),
    "aggregation.rule": (
        "fedavg",
        "krum",
        "multi-krum",
        "median",
        "trimmed-mean",
        "norm-bound",
        "centered-clipping",
        "fltrust",
    ),
}

PHASES_WITH_DROPOUT = (
    "advertise_keys",
    "share_keys",
    "masked_input",
    "consistency_check",
    "unmasking",
)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotated type; ints are accepted where floats are expected."""
    origin = get_origin(tp)
    if origin in (UnionType, Union):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        names = " or ".join(_type_name(o) for o in options if o is not type(None))
        raise ConfigError(f"{key}: expected {names}, got {type(value).__name__} {value!r}")
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:  # a TOML table, e.g. categorical = {scanner = ["ge", "philips"]}
        key_tp, item_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key}: expected a table such as {{name = [...]}}, "
                f"got {type(value).__name__} {value!r}"
            )
        return {
            _coerce(f"{key} (a key)", k, key_tp): _coerce(f"{key}.{k}", v, item_tp)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    # Reaching here is a bug in this module (an unsupported annotation), not bad user input.
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _section_from_dict(name: str, raw: Any) -> Any:
    return section_from_dict(name, raw, _SECTIONS[name])


def section_from_dict(name: str, raw: Any, cls: type[_Section]) -> _Section:
    """The dataclass ``cls`` from the parsed TOML table ``[name]``: unknown keys are named
    (with the closest allowed one), types checked, missing keys take the defaults.

    Run configs use it for their sections; other TOML files of the library (a node's
    policy) for theirs, with the same messages.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table of keys, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    allowed = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{name}.{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown key '{name}.{key}'{hint}; allowed in [{name}]: {', '.join(allowed)}"
            )
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from parsed TOML (missing keys take defaults)."""
    sections: dict[str, Any] = {}
    for name, body in raw.items():
        if name not in _SECTIONS:
            close = difflib.get_close_matches(name, list(_SECTIONS), n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(f"unknown section [{name}]{hint}; allowed: {', '.join(_SECTIONS)}")
        sections[name] = _section_from_dict(name, body)
    config = Config(**sections)
    validate(config)
    return config


def parse_override(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value), the value read as TOML (a bare word
    stays text); ``key`` may itself hold dots (``grid.sum_dp.rounds``)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value (e.g. privacy.mode=none), got {item!r}")
    key, _, text = item.partition("=")
    key = key.strip()
    section, dot, name = key.partition(".")
    if not dot or not section or not name:
        raise ConfigError(f"--set key must be section.key (e.g. run.rounds), got {key!r}")
    text = text.strip()
    try:  # TOML value syntax: 3, 0.5, true, [64, 32], "text"
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word such as `secagg+` or `local-dp`
    return section, name, value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of parsed TOML with ``section.key=value`` overrides applied."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        section, name, value = parse_override(item)
        body = merged.setdefault(section, {})
        if not isinstance(body, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {type(body).__name__}")
        body[name] = value
    return merged


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, with one-line errors for a missing, non-UTF-8 or invalid file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a TOML run configuration (or the defaults when ``path`` is None) and validate it."""
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, overrides))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_csv_options(data: DataSection) -> None:
    """Consistency of ``data.exclude``, ``data.categorical`` and ``data.missing``.

    Part of :func:`validate`, and run again by the CSV loader because a DataSection can be
    built in code without it. Whether the named columns exist is checked against the files.
    """
    allowed = CHOICES["data.missing"]
    _check(
        data.missing in allowed,
        f"data.missing = {data.missing!r} is not one of: {', '.join(allowed)}",
    )
    for i, name in enumerate(data.exclude):
        _check(bool(name.strip()), f"data.exclude[{i}] is empty; list column names")
    twice = sorted({n for n in data.exclude if data.exclude.count(n) > 1})
    _check(not twice, f"data.exclude lists {', '.join(map(repr, twice))} more than once")
    _check(
        data.label not in data.exclude,
        f"data.exclude names the label column {data.label!r}; the label is needed (data.label)",
    )
    for name, categories in data.categorical.items():
        key = f"data.categorical.{name}"
        _check(bool(name.strip()), "data.categorical has an empty column name")
        _check(
            name != data.label,
            f"{key}: {name!r} is the label column (data.label); text labels need no encoding",
        )
        _check(
            name != data.site_column,
            f"{key}: {name!r} is the site column (data.site_column), not a feature",
        )
        _check(
            name not in data.exclude,
            f"{key}: {name!r} is also in data.exclude; a column is excluded or categorical",
        )
        _check(
            len(categories) >= 1,
            f"{key} lists no categories; list every value any site uses, "
            f'e.g. {{{name} = ["a", "b"]}}',
        )
        for c in categories:
            _check(
                bool(c) and c == c.strip(),
                f"{key}: category {c!r} is empty or has surrounding spaces "
                "(CSV cells are compared after trimming)",
            )
        twice = sorted({c for c in categories if categories.count(c) > 1})
        _check(not twice, f"{key} lists {', '.join(map(repr, twice))} more than once")


def validate(config: Config) -> None:
    """Range and consistency checks that types alone cannot express."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        _check(value in allowed, f"{key} = {value!r} is not one of: {', '.join(allowed)}")

    run, data, model = config.run, config.data, config.model
    _check(bool(run.name.strip()), "run.name must not be empty")
    _check(
        not any(c in run.name for c in "/\\") and run.name not in (".", ".."),
        f"run.name = {run.name!r} names the results folder: no path separators",
    )
    _check(run.rounds >= 1, f"run.rounds must be >= 1, got {run.rounds}")
    _check(run.seed >= 0, f"run.seed must be >= 0, got {run.seed}")

    _check(
        data.clients >= 0, f"data.clients must be >= 1 (or 0 = one per site), got {data.clients}"
    )
    _check(
        data.clients >= 1 or data.partition == "site",
        "data.clients = 0 (one client per site) needs data.partition = 'site'",
    )
    _check(data.alpha > 0, f"data.alpha must be > 0, got {data.alpha}")
    _check(
        0 < data.test_fraction < 1,
        f"data.test_fraction must be in (0, 1), got {data.test_fraction}",
    )
    _check(
        0 <= data.val_fraction < 1, f"data.val_fraction must be in [0, 1), got {data.val_fraction}"
    )
    _check(data.synthetic_samples >= 2, "data.synthetic_samples must be >= 2")
    _check(data.root_samples >= 0, f"data.root_samples must be >= 0, got {data.root_samples}")
    _check(
        data.root_samples == 0 or data.partition != "site",
        "data.root_samples needs data.partition = 'iid' or 'dirichlet' (a site partition "
        "leaves no rows outside the sites)",
    )
    _check(
        config.aggregation.rule != "fltrust" or data.root_samples > 0,
        "aggregation.rule = 'fltrust' needs a root dataset on the server: set data.root_samples "
        "(e.g. 100)",
    )
    _check(data.synthetic_features >= 2, "data.synthetic_features must be >= 2")
    _check(data.synthetic_classes >= 2, "data.synthetic_classes must be >= 2")
    _check(
        data.dataset != "csv" or bool(data.path),
        "data.dataset = 'csv' needs data.path (a CSV file or a folder of CSV files)",
    )
    _check(
        data.partition != "site" or data.dataset == "csv",
        "data.partition = 'site' needs data.dataset = 'csv' (built-in datasets have no sites)",
    )
    check_csv_options(data)

    _check(len(model.hidden) >= 1 or model.name != "mlp", "model.hidden must list >= 1 layer size")
    _check(
        all(h >= 1 for h in model.hidden), f"model.hidden sizes must be >= 1, got {model.hidden}"
    )

    tr = config.training
    _check(tr.local_epochs >= 1, f"training.local_epochs must be >= 1, got {tr.local_epochs}")
    _check(tr.batch_size >= 1, f"training.batch_size must be >= 1, got {tr.batch_size}")
    _check(tr.lr > 0, f"training.lr must be > 0, got {tr.lr}")
    _check(0 <= tr.momentum < 1, f"training.momentum must be in [0, 1), got {tr.momentum}")

    pr = config.privacy
    if pr.target_epsilon is not None:
        _check(
            pr.target_epsilon > 0, f"privacy.target_epsilon must be > 0, got {pr.target_epsilon}"
        )
    if pr.noise_multiplier is not None:
        _check(
            pr.noise_multiplier > 0,
            f"privacy.noise_multiplier must be > 0, got {pr.noise_multiplier}",
        )
    _check(0 < pr.delta < 1, f"privacy.delta must be in (0, 1), got {pr.delta}")
    _check(pr.max_grad_norm > 0, f"privacy.max_grad_norm must be > 0, got {pr.max_grad_norm}")
    if pr.mode != "none":
        _check(
            (pr.target_epsilon is None) != (pr.noise_multiplier is None),
            f"privacy.mode = {pr.mode!r} needs exactly one of privacy.target_epsilon "
            "or privacy.noise_multiplier",
        )
    _check_sum_privacy(config)

    pt = config.protection
    _check(
        pt.neighbors >= 0, f"protection.neighbors must be >= 0 (0 = automatic), got {pt.neighbors}"
    )
    _check(
        pt.threshold > 0.5,
        f"protection.threshold must be a strict majority (> 0.5 of the clients, or a count "
        f"> n/2), got {pt.threshold}: below that the server could unmask single clients",
    )
    _check(
        pt.neighbors % 2 == 0,
        f"protection.neighbors must be even (the SecAgg+ graph is a ring with k/2 neighbours "
        f"on each side), got {pt.neighbors}",
    )
    _check(
        pt.threshold < 1 or pt.threshold == int(pt.threshold),
        f"protection.threshold must be a fraction < 1 or a whole count, got {pt.threshold}",
    )
    _check(2 <= pt.bits <= 64, f"protection.bits must be in 2..64, got {pt.bits}")
    _check(pt.clip_range > 0, f"protection.clip_range must be > 0, got {pt.clip_range}")
    _check(0 <= pt.dropout < 1, f"protection.dropout must be in [0, 1), got {pt.dropout}")
    _check(
        0 <= pt.expected_dropout < 1,
        f"protection.expected_dropout must be in [0, 1), got {pt.expected_dropout}",
    )
    _check(
        0 <= pt.max_colluding_fraction < 0.5,
        f"protection.max_colluding_fraction must be in [0, 0.5), got {pt.max_colluding_fraction}",
    )
    for phase in pt.dropout_phases:
        _check(
            phase in PHASES_WITH_DROPOUT,
            f"protection.dropout_phases: {phase!r} is not one of {', '.join(PHASES_WITH_DROPOUT)}",
        )
    _check(
        "consistency_check" not in pt.dropout_phases or pt.consistency == "signatures",
        "protection.dropout_phases: 'consistency_check' is a phase only with "
        "protection.consistency = 'signatures'",
    )
    _check(
        pt.mode != "secagg" or pt.neighbors == 0,
        "protection.neighbors applies to mode 'secagg+' (plain 'secagg' uses every other client)",
    )

    ag = config.aggregation
    _check(ag.server_lr > 0, f"aggregation.server_lr must be > 0, got {ag.server_lr}")

    lg = config.ledger
    _check(lg.epsilon_cap > 0, f"ledger.epsilon_cap must be > 0, got {lg.epsilon_cap}")
    _check(
        lg.reward_per_round >= 0, f"ledger.reward_per_round must be >= 0, got {lg.reward_per_round}"
    )
    _check(
        not lg.enabled or pt.mode != "none",
        "ledger.enabled needs a protection mode (secagg, secagg+, ckks, paillier): the ledger "
        "records commitments to hidden updates",
    )


#: Protection modes that hide each client's update from the aggregator.
HIDING_MODES = ("secagg", "secagg+", "ckks", "paillier")
#: Privacy modes that put the noise on the sum rather than on each client's training.
SUM_MODES = ("central-dp", "distributed-dp")


def _check_sum_privacy(config: Config) -> None:
    """central-dp and distributed-dp: the noise is on the sum, so the round is shaped for it."""
    pr, tr, pt = config.privacy, config.training, config.protection
    run = config.run
    _check(
        run.clients_per_round >= 0,
        f"run.clients_per_round must be >= 0 (0 = every client), got {run.clients_per_round}",
    )
    _check(
        pr.colluding_clients is None or pr.colluding_clients >= 0,
        f"privacy.colluding_clients must be >= 0, got {pr.colluding_clients}",
    )
    if pr.mode not in SUM_MODES:
        _check(
            run.clients_per_round == 0,
            "run.clients_per_round samples clients for privacy.mode = 'central-dp' or "
            "'distributed-dp' with privacy.unit = 'client'; leave it 0 otherwise",
        )
        return
    _check(
        pr.mode != "distributed-dp" or pt.mode in HIDING_MODES,
        f"privacy.mode = 'distributed-dp' needs a protection that hides each update "
        f"(protection.mode = {' | '.join(HIDING_MODES)}), got {pt.mode!r}: without it the "
        "server sees every noise share and each share alone is far too small to protect "
        "anyone (use 'central-dp' to trust the aggregator instead)",
    )
    _check(
        pr.unit != "record" or tr.local_epochs == 1,
        f"privacy.unit = 'record' with privacy.mode = {pr.mode!r} is DP-FedSGD: each round "
        f"is one DP-SGD step on one Poisson batch per client; set training.local_epochs = 1 "
        f"(got {tr.local_epochs}), or use privacy.unit = 'client' for local epochs",
    )
    _check(
        pr.unit == "client" or run.clients_per_round == 0,
        "run.clients_per_round samples clients only with privacy.unit = 'client'",
    )
    _check(
        config.aggregation.rule == "fedavg",
        f"privacy.mode = {pr.mode!r} noises the sum of clipped contributions; "
        f"aggregation.rule must be 'fedavg', got {config.aggregation.rule!r}",
    )


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (for JSON output); None values are kept."""
    return asdict(config)


def _toml_value(value: Any) -> str:
    """A TOML value; JSON spells scalars and arrays the TOML way, dicts become inline tables."""
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return f"{{{items}}}"
    return json.dumps(value)


def config_to_toml(config: Config) -> str:
    """Serialise to TOML that :func:`load_config` reads back to an equal Config."""
    return sections_to_toml(asdict(config))


def sections_to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """``[section]`` tables of ``key = value`` lines (None values left out: TOML has no null)."""
    lines: list[str] = []
    for name, body in sections.items():
        lines.append(f"[{name}]")
        for key, value in body.items():
            if value is None:
                continue  # TOML has no null: an absent key means "unset"
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
