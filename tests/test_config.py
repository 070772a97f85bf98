"""The run configuration: defaults, overrides, and one clear line for every mistake."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from secagg.config import Config, config_from_dict, config_to_toml, load_config
from secagg.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_defaults_are_a_valid_config() -> None:
    assert load_config() == Config()


def test_shipped_examples_load() -> None:
    from attacks.lab import load_grid

    for path in EXAMPLES.glob("*.toml"):
        if "[grid]" in path.read_text():
            load_grid(path)  # a lab configuration: a run configuration plus [grid]
        else:
            load_config(path)


def test_overrides_use_toml_value_syntax_and_bare_words() -> None:
    cfg = load_config(
        None,
        [
            "run.rounds=3",
            "model.hidden=[32, 16]",
            "privacy.mode=local-dp",
            "privacy.noise_multiplier=1.5",
            "protection.mode=secagg+",
            "data.alpha=0.3",
        ],
    )
    assert cfg.run.rounds == 3
    assert cfg.model.hidden == [32, 16]
    assert cfg.privacy.noise_multiplier == 1.5
    assert cfg.protection.mode == "secagg+"
    assert cfg.data.alpha == 0.3


def test_integers_are_accepted_where_floats_are_expected() -> None:
    assert load_config(None, ["data.alpha=1"]).data.alpha == 1.0


def test_toml_round_trip() -> None:
    cfg = load_config(None, ["privacy.mode=local-dp", "privacy.target_epsilon=2.5"])
    assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["privacy.target_eps=1"], "unknown key 'privacy.target_eps' (did you mean"),
        (["privacy.mode=local-dp", "privacy.target_epsilon=-1"], "target_epsilon must be > 0"),
        (['run.rounds="ten"'], "run.rounds: expected an integer, got str"),
        (["run.rounds=2.5"], "run.rounds: expected an integer"),
        (["data.alpha=true"], "data.alpha: expected a number"),
        (["model.hidden=64"], "model.hidden: expected a list"),
        (["data.dataset=mnist"], "data.dataset = 'mnist' is not one of"),
        (["privacy.mode=local-dp"], "exactly one of privacy.target_epsilon"),
        (
            ["privacy.mode=local-dp", "privacy.target_epsilon=1", "privacy.noise_multiplier=1"],
            "exactly one of",
        ),
        (["privacy.delta=1.5"], "privacy.delta must be in (0, 1)"),
        (["run.rounds=0"], "run.rounds must be >= 1"),
        (["data.dataset=csv"], "needs data.path"),
        (["data.partition=site"], "needs data.dataset = 'csv'"),
        (["protection.bits=80"], "protection.bits must be in 2..64"),
        (["protection.dropout=1.0"], "protection.dropout must be in [0, 1)"),
        (['protection.dropout_phases=["later"]'], "'later' is not one of"),
        (["nosuch.key=1"], "unknown section [nosuch]"),
        (["rounds=3"], "--set key must be section.key"),
        (["run.rounds"], "--set expects key=value"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_bad_toml(write_toml) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/run.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_toml("[run\nname = 1"))


def test_section_must_be_a_table(write_toml) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"\[run\] must be a table"):
        load_config(write_toml("run = 3\n"))


def test_csv_column_options_default_to_none_and_missing_error() -> None:
    data = Config().data
    assert (data.exclude, data.categorical, data.missing) == ([], {}, "error")


def test_csv_column_options_from_a_toml_file_and_from_overrides(write_toml) -> None:  # type: ignore[no-untyped-def]
    path = write_toml(
        '[data]\nexclude = ["patient_id", "notes"]\n'
        'categorical = { scanner = ["ge", "philips", "siemens"] }\nmissing = "impute"\n'
    )
    data = load_config(path).data
    assert data.exclude == ["patient_id", "notes"]
    assert data.categorical == {"scanner": ["ge", "philips", "siemens"]}
    assert data.missing == "impute"
    overridden = load_config(
        path,
        [
            'data.exclude=["id"]',
            'data.categorical={sex = ["f", "m"], "scan type" = ["ct", "mri"]}',
            "data.missing=drop",
        ],
    ).data
    assert overridden.exclude == ["id"]
    assert overridden.categorical == {"sex": ["f", "m"], "scan type": ["ct", "mri"]}
    assert overridden.missing == "drop"


def test_toml_round_trip_keeps_categorical_tables_and_their_order() -> None:
    cfg = load_config(
        None,
        [
            'data.exclude=["patient_id", "notes"]',
            'data.categorical={scanner = ["siemens", "ge"], "scan type" = ["mri", "ct"]}',
            "data.missing=impute",
        ],
    )
    text = config_to_toml(cfg)
    assert 'categorical = {"scanner" = ["siemens", "ge"], "scan type" = ["mri", "ct"]}' in text
    back = config_from_dict(tomllib.loads(text))
    assert back == cfg
    assert list(back.data.categorical) == ["scanner", "scan type"]  # one-hot column order
    assert config_from_dict(tomllib.loads(config_to_toml(Config()))) == Config()  # empty {}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (['data.exclude="patient_id"'], "data.exclude: expected a list, got str"),
        (["data.exclude=[1]"], "data.exclude[0]: expected a string"),
        (['data.exclude=[""]'], "data.exclude[0] is empty"),
        (['data.exclude=["id", "id"]'], "data.exclude lists 'id' more than once"),
        (['data.exclude=["label"]'], "data.exclude names the label column 'label'"),
        (['data.categorical=["ge"]'], "data.categorical: expected a table such as"),
        (['data.categorical={scanner = "ge"}'], "data.categorical.scanner: expected a list"),
        (["data.categorical={scanner = [1]}"], "data.categorical.scanner[0]: expected a string"),
        (["data.categorical={scanner = []}"], "data.categorical.scanner lists no categories"),
        (
            ['data.categorical={scanner = ["ge", "ge"]}'],
            "data.categorical.scanner lists 'ge' more than once",
        ),
        (['data.categorical={scanner = [" ge"]}'], "category ' ge' is empty or has surrounding"),
        (['data.categorical={label = ["a"]}'], "data.categorical.label: 'label' is the label"),
        (
            ['data.site_column="site"', 'data.categorical={site = ["a"]}'],
            "'site' is the site column",
        ),
        (
            ['data.exclude=["scanner"]', 'data.categorical={scanner = ["ge"]}'],
            "'scanner' is also in data.exclude",
        ),
        (["data.missing=mean"], "data.missing = 'mean' is not one of: error, drop, impute"),
    ],
)
def test_bad_csv_column_options_give_one_line_naming_the_key(
    overrides: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
