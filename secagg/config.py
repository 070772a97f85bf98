"""Typed run configuration, loaded from TOML and validated with one-line errors.

Every key a user can set lives in one of the dataclasses below; their field names are the TOML
keys (section = dataclass). Validation happens once, at load time, so the rest of the library
can trust a :class:`Config` it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSection:
    """[run]: naming, seeding and length of a simulation."""

    name: str = "run"
    seed: int = 0
    rounds: int = 20
    output_dir: str = "results"


@dataclass
class DataSection:
    """[data]: where examples come from and how they are split among clients."""

    dataset: str = "breast_cancer"  # breast_cancer | digits | synthetic | csv
    path: str = ""  # csv: one file with a site column, or a folder with one CSV per site
    label: str = "label"  # csv: name of the label column
    site_column: str = ""  # csv (single file): column naming each row's site
    partition: str = "iid"  # iid | dirichlet | site
    alpha: float = 0.5  # Dirichlet concentration (smaller = more skewed)
    clients: int = 10
    test_fraction: float = 0.2  # held-out global test set, evaluation only
    val_fraction: float = 0.1  # per-client validation split
    standardize: str = "site"  # site (each site its own statistics) | global (pooled) | none
    synthetic_samples: int = 2000
    synthetic_features: int = 20
    synthetic_classes: int = 2


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

    mode: str = "none"  # none | local-dp
    target_epsilon: float | None = None  # calibrate σ to reach this ε after all rounds
    noise_multiplier: float | None = None  # or give σ directly
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"  # rdp | prv


@dataclass
class ProtectionSection:
    """[protection]: how each update is hidden from the aggregator."""

    mode: str = "none"  # none | secagg | secagg+
    neighbors: int = 0  # SecAgg+ graph degree; 0 = chosen from n and the security parameters
    threshold: float = 0.6  # t: a fraction of clients (< 1) or an absolute count (>= 1)
    bits: int = 32  # modulus 2^bits of the masked group
    clip_range: float = 1.0  # each update coordinate is clipped to [-clip_range, clip_range]
    dropout: float = 0.0  # simulated fraction of clients dropping out at each phase
    dropout_phases: list[str] = field(
        default_factory=lambda: ["share_keys", "masked_input", "unmasking"]
    )


@dataclass
class AggregationSection:
    """[aggregation]: how the server combines the updates it receives."""

    rule: str = "fedavg"
    server_lr: float = 1.0


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
