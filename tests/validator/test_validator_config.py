"""The rules file: the shipped one loads, bad ones fail with a message naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from validator.config import ConfigError, load_config, parse_config
from validator.model import RULE_ORDER
from validator.process import REPO_ROOT


def test_shipped_config_has_every_rule_enabled(config):
    assert config.threshold == 0.5
    for name in RULE_ORDER:
        assert getattr(config.rules, name).weight > 0, name


def test_missing_rule_section_means_off(raw_config):
    data = copy.deepcopy(raw_config)
    del data["rules"]["round_amount"]
    assert parse_config(data).rules.round_amount.weight == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["rules"].update(large_amout={"weight": 0.1}), "rules.large_amout"),
        (lambda d: d["rules"]["large_amount"].update(weight=-0.1), "rules.large_amount.weight"),
        (lambda d: d["rules"]["large_amount"].update(weight=2), "rules.large_amount.weight"),
        (lambda d: d["rules"]["large_amount"].update(min_eur="lots"), "rules.large_amount.min_eur"),
        (lambda d: d["rules"]["round_amount"].update(multipel=10), "rules.round_amount.multipel"),
        (lambda d: d.pop("threshold"), "threshold"),
        (lambda d: d.update(threshold=0), "threshold"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["currency_to_eur"].update(usd=1.0), "currency code 'usd'"),
        (lambda d: d["currency_to_eur"].update(EUR=0), "rate of EUR"),
        (
            lambda d: d["rules"]["unusual_hour"].update(start_hour=6),
            "start_hour (6) must be before",
        ),
        (lambda d: d["rules"]["watched_sender_bank"].update(banks="Bank A"), "banks"),
    ],
)
def test_bad_config_names_the_key(raw_config, change, named):
    data = copy.deepcopy(raw_config)
    change(data)
    with pytest.raises(ConfigError, match="invalid validator config") as error:
        parse_config(data, "rules-under-test.yaml")
    assert named in str(error.value)
    assert "rules-under-test.yaml" in str(error.value)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["threshold", 0.5])


def test_unreadable_and_not_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read validator config .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("threshold: [0.5\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_custom_file_loads(tmp_path, raw_config):
    data = copy.deepcopy(raw_config)
    data["threshold"] = 0.8
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).threshold == 0.8


def test_cli_refuses_to_start_on_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("threshold: 0.5\ncurrency_to_eur: {EUR: 1}\nrules: {huge_amount: {weight: 1}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "validator", "--config", str(bad), "--port", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "rules.huge_amount" in done.stderr and str(bad) in done.stderr
