"""Tests of the model artifact and scoring: a bad artifact fails with one clear line, the
risk score says "alert" exactly when the model does, and alerts name their reasons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.features import FEATURES
from pipeline.domain.model import (
    BOOSTER_FILE,
    COMMITTED_MODEL_PATH,
    META_FILE,
    FraudModel,
    load_artifact,
    risk_score,
)
from pipeline.domain.scoring import THRESHOLD
from pipeline.errors import ConfigurationError
from tiny_model import AMOUNT, tiny_artifact

@pytest.fixture
def artifact(tmp_path):
    return tiny_artifact(tmp_path / "m")


def test_a_saved_artifact_loads_and_scores(artifact):
    model = FraudModel(artifact)
    X = np.zeros((2, len(FEATURES)))
    X[0, AMOUNT] = 3.0
    p = model.probabilities(X)
    assert p[0] > 0.5 > p[1]
    reason = model.reason(p[0], X[0], model.contributions(X[:1])[0])
    assert reason.startswith("model tiny@1: p=") and "(alert): amount_eur_log=3 (+" in reason
    assert model.reason(p[1]).endswith("< 0.500")


def test_the_committed_model_loads():
    model = FraudModel(load_artifact(COMMITTED_MODEL_PATH))
    assert 0 < model.threshold < 1
    assert model.probabilities(np.full((1, len(FEATURES)), np.nan)).shape == (1,)


def message(path) -> str:
    with pytest.raises(ConfigurationError) as error:
        load_artifact(path)
    text = str(error.value)
    assert "\n" not in text and "--model_path" in text
    return text


def test_a_missing_folder_is_one_clear_line(tmp_path):
    assert "is not a model artifact: no model.json" in message(tmp_path / "nowhere")


def test_a_missing_booster_is_one_clear_line(artifact):
    (Path(artifact.path) / BOOSTER_FILE).unlink()
    assert "no model.txt" in message(artifact.path)


def rewrite(path, **changes):
    meta_file = Path(path) / META_FILE
    meta = json.loads(meta_file.read_text())
    meta.update(changes)
    meta_file.write_text(json.dumps(meta))


def test_other_features_are_refused(artifact):
    rewrite(artifact.path, features=["amount_eur_log", "something_else"])
    assert "trained on other features than this job computes" in message(artifact.path)


def test_another_format_is_refused(artifact):
    rewrite(artifact.path, format="pickle/0")
    assert "has format 'pickle/0'" in message(artifact.path)


def test_a_damaged_booster_is_refused(artifact):
    booster = Path(artifact.path) / BOOSTER_FILE
    booster.write_text(booster.read_text().replace("Tree=0", "Tree=9", 1))
    assert "is damaged" in message(artifact.path)


def test_a_missing_threshold_is_refused(artifact):
    rewrite(artifact.path, threshold=None)
    assert "has no usable threshold" in message(artifact.path)


def test_unreadable_json_is_one_clear_line(artifact):
    (Path(artifact.path) / META_FILE).write_text("{not json")
    assert "cannot be read" in message(artifact.path)


probabilities = st.floats(0, 1, allow_nan=False)
thresholds = st.floats(0.01, 0.99, allow_nan=False)


@given(probabilities, probabilities, thresholds)
def test_the_risk_score_keeps_the_order_of_probabilities(a, b, threshold):
    low, high = sorted((a, b))
    assert 0 <= risk_score(low, threshold) <= risk_score(high, threshold) <= 100


@given(probabilities, thresholds)
def test_a_risk_score_of_50_or_more_is_exactly_an_alert(p, threshold):
    assert (risk_score(p, threshold) >= THRESHOLD) == (p >= threshold)


def test_the_ends_of_the_scale():
    assert risk_score(0.0, 0.3) == 0 and risk_score(1.0, 0.3) == 100
    assert risk_score(math.nextafter(0.3, 0), 0.3) == 49 and risk_score(0.3, 0.3) == 50
