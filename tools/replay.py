"""The job's pure per-record code, replayed in-process over the simulator's records.

The job's two stateful steps are pure Python underneath: an
:class:`~pipeline.domain.attribution.AccountHistory` per account (join, rules, the sender's
features) and a :class:`~pipeline.domain.counterparty.CounterpartyHistory` per counterparty
(the receiver's features). :func:`replay` feeds them the simulator's events in the order the
simulator publishes them, hands every row the account step emits (corrections included) to
the counterparty step, and keeps each transaction's last row: its final row, which the
histories make independent of the order a run reads its inputs in — so these are the rows
the job computes, without Kafka, Beam or Postgres. Then the model scores the final rows.

    sim = simulate(SimConfig(seed=3, ground_truth_all=True), count=100_000)
    rows = replay(sim.events)                    # transaction_id -> final row, publish order
    data = Dataset.build(rows, sim.truth, newest_accounts(sim.events))  # matrix + truth

Where the replay and a run of the job may differ: the job joins an account seen only in
PostgreSQL with that row (its newest version) until its own message arrives; the replay uses
the account's messages alone. They agree unless an account changes before its first message
(a late account updated early).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.domain.attribution import AccountHistory
from pipeline.domain.counterparty import NO_COUNTERPARTY_VECTOR, CounterpartyHistory
from pipeline.domain.features import FEATURES
from pipeline.io.validator_client import build_validation_request
from pipeline.records import Account, AttributedTransaction
from pipeline.transforms.route import UNIDENTIFIED
from simulator.generator import AccountEvent, BankSimulator, SimConfig, TransactionEvent
from validator.config import load_config
from validator.model import FraudModel as ValidatorModel
from validator.schemas import ValidationRequest

__all__ = [
    "Dataset", "Simulation", "cached_dataset", "newest_accounts", "replay", "simulate",
    "validator_verdicts",
]

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
# The code whose change invalidates cached replays (its syntax tree without docstrings:
# comments, layout and docs do not count).
FEATURE_SOURCES = (
    "pipeline/domain/account_features.py", "pipeline/domain/attribution.py",
    "pipeline/domain/counterparty.py", "pipeline/domain/currency.py",
    "pipeline/domain/scoring.py", "pipeline/domain/sender_features.py",
    "pipeline/domain/surprise.py", "pipeline/records.py",
    "simulator/generator.py", "simulator/bank.py", "simulator/profiles.py",
    "simulator/fraud/__init__.py", "simulator/fraud/one_account.py",
    "simulator/fraud/many_accounts.py", "tools/replay.py", "validator/model.py",
    "validator/rules.yaml", "pipeline/io/validator_client.py",
)


@dataclass
class Simulation:
    """A simulated bank's events in publish order and the ground truth of each transaction."""

    events: list
    truth: dict[str, dict]


def simulate(config: SimConfig, count: int) -> Simulation:
    """Generates ``count`` transactions with the simulator's own generator, in-process."""
    if not config.ground_truth_all:
        raise ValueError("simulate: needs SimConfig(ground_truth_all=True)")
    sim = BankSimulator(config)
    events = [e for e in sim.events(count) if type(e) in (AccountEvent, TransactionEvent)]
    truth = {
        e.transaction.transaction_id: e.truth for e in events if type(e) is TransactionEvent
    }
    return Simulation(events, truth)


def replay(events) -> dict[str, AttributedTransaction]:
    """Each transaction's final row (sender and counterparty features), in publish order.

    ``events``: AccountEvents and TransactionEvents in the order they were published; the
    position of an event stands for its Kafka timestamp.
    """
    accounts: dict[str, AccountHistory] = {}
    counterparties: dict[str, CounterpartyHistory] = {}
    final: dict[str, AttributedTransaction] = {}
    for produced, event in enumerate(events):
        if type(event) is AccountEvent:
            history = accounts.setdefault(event.account.account_id, AccountHistory())
            scored = history.add_version(produced, event.account)
            first = None
        else:
            txn = event.transaction
            history = accounts.setdefault(txn.account_id, AccountHistory())
            scored = history.add_transaction(produced, txn)
            first = txn.transaction_id
        for row in scored:
            attributed = AttributedTransaction(
                row.transaction, row.account.account_name if row.account else None,
                row.risk_score, row.risk_reasons, account=row.account, features=row.features,
                correction=row.transaction.transaction_id != first,
            )
            first = None
            cp = row.transaction.counterparty_account_id
            if cp is None:
                out = [_without_counterparty(attributed)]
            else:
                out = counterparties.setdefault(cp, CounterpartyHistory()).add(attributed)
            for done in out:
                final[done.transaction_id] = done
    return final


def _without_counterparty(row: AttributedTransaction) -> AttributedTransaction:
    return AttributedTransaction(
        row.transaction, row.account_name, row.risk_score, row.risk_reasons,
        account=row.account, features=row.features + NO_COUNTERPARTY_VECTOR,
    )


@dataclass
class Dataset:
    """Final rows as a feature matrix, with the ground truth and what evaluation needs."""

    ids: np.ndarray  # transaction ids, publish order
    X: np.ndarray  # float64, len(FEATURES) columns
    is_fraud: np.ndarray  # bool
    bank_labelled: np.ndarray  # bool: the bank said "fraudulent"
    scenario: np.ndarray  # str ("" for ordinary transactions)
    rule_score: np.ndarray  # int, the rules' 0-100 score
    evaluation: np.ndarray  # str, the bank's evaluation
    # The fraud validator's verdict on the unidentified rows (False on the others): given a
    # risk score below 50 (any model score short of an alert), and given the rules' score.
    validator_below_alert: np.ndarray
    validator_with_rules: np.ndarray

    @classmethod
    def build(cls, rows: dict[str, AttributedTransaction], truth: dict[str, dict],
              accounts: dict[str, Account]) -> "Dataset":
        """``accounts``: each account as the validation step's lookup finds it (its newest
        version)."""
        ids = list(rows)
        X = np.array([rows[i].features for i in ids], dtype=np.float64)
        if X.shape[1] != len(FEATURES):
            raise ValueError(f"replay: {X.shape[1]} features per row, expected {len(FEATURES)}")
        below, with_rules = validator_verdicts([rows[i] for i in ids], accounts)
        return cls(
            ids=np.array(ids),
            X=X,
            is_fraud=np.array([bool(truth[i]["is_fraud"]) for i in ids]),
            bank_labelled=np.array([bool(truth[i].get("bank_labelled")) for i in ids]),
            scenario=np.array([truth[i]["scenario"] or "" for i in ids]),
            rule_score=np.array([rows[i].risk_score for i in ids]),
            evaluation=np.array([rows[i].transaction.evaluation for i in ids]),
            validator_below_alert=below,
            validator_with_rules=with_rules,
        )

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def select(self, mask: np.ndarray) -> "Dataset":
        return Dataset(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: list["Dataset"]) -> "Dataset":
        return cls(**{
            k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__
        })


def newest_accounts(events) -> dict[str, Account]:
    """Each account's newest version among the events."""
    return {e.account.account_id: e.account for e in events if type(e) is AccountEvent}


def validator_verdicts(rows: list[AttributedTransaction], accounts: dict[str, Account]):
    """The validator service's rules (validator/model.py, the shipped rules file), run
    in-process on the requests the validation step would send for the unidentified rows:
    ``(verdict with a risk score of 0, verdict with the row's own rules' score)``. With a
    model, an unidentified row below the alert threshold has a risk score under 50, which
    the validator's ``pipeline_risk`` rule ignores like 0; an alerted row is fraudulent anyway.
    """
    model = ValidatorModel(load_config())
    below = np.zeros(len(rows), dtype=bool)
    with_rules = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        if row.transaction.evaluation != UNIDENTIFIED:
            continue
        receiver = accounts.get(row.transaction.counterparty_account_id)
        sender = accounts.get(row.account_id)
        for verdicts, score in ((below, 0), (with_rules, row.risk_score)):
            request = build_validation_request(
                dataclasses.replace(row, risk_score=score), receiver=receiver, sender=sender
            )
            verdicts[i] = model.evaluate(ValidationRequest.model_validate(request)).is_fraudulent
    return below, with_rules


def _code_version() -> str:
    digest = hashlib.sha256()
    for name in FEATURE_SOURCES:
        path = REPO / name
        digest.update(_code_of(path.read_text()) if path.suffix == ".py" else path.read_bytes())
    return digest.hexdigest()[:12]


def _code_of(source: str) -> bytes:
    """The syntax tree of ``source`` without its docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def cache_dir() -> Path:
    """Where replayed datasets are cached: ``$RISKPIPE_CACHE_DIR/detection`` (default
    ``~/.cache/riskpipe/detection``)."""
    base = os.environ.get("RISKPIPE_CACHE_DIR") or Path.home() / ".cache" / "riskpipe"
    return Path(base) / "detection"


def cached_dataset(config: SimConfig, count: int, use_cache: bool = True) -> Dataset:
    """The :class:`Dataset` of ``count`` simulated transactions, replayed once and cached
    (keyed by the config, the count and the code that computes the features)."""
    key = hashlib.sha256(f"{config!r}|{count}|{_code_version()}".encode()).hexdigest()[:16]
    path = cache_dir() / f"seed{config.seed}-{count}-{key}.npz"
    if use_cache and path.exists():
        return Dataset.load(path)
    started = time.perf_counter()
    sim = simulate(config, count)
    data = Dataset.build(replay(sim.events), sim.truth, newest_accounts(sim.events))
    logger.info("replayed seed %d (%d transactions) in %.1f s", config.seed, count,
                time.perf_counter() - started)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        data.save(path)
    return data
