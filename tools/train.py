"""Trains the fraud model on the job's own features over simulated data, and saves it.

    python -m tools.train                              # `make train`: models/fraud-lgbm-v1
    python -m tools.train --out /tmp/m --version 2     # somewhere else, another version

The simulator generates the training seeds of :data:`tools.detection.PLAN` in-process (every
fraud family, 1 % fraud), the job's pure per-record code computes each transaction's final
features (:mod:`tools.replay`), and LightGBM learns the fraud the bank did not label
(bank-labelled fraud is left out). Early stopping and the alert threshold (the lowest whose
alerts are at least 90 % fraud, with at most 1 % of transactions alerted) use the validation
seed; the held-out test seeds are scored
once at the end for the artifact's record. Replayed seeds are cached
(``~/.cache/riskpipe/detection``), so a second run takes a minute or two.

The artifact (``model.txt`` + ``model.json``; see ``models/README.md``) records the features,
the threshold, the seeds and families it was trained on, and its figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import lightgbm

from pipeline.domain.model import COMMITTED_MODEL_PATH, save_artifact
from tools import detection

logger = logging.getLogger(__name__)
NAME = "fraud-lgbm"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=COMMITTED_MODEL_PATH,
                        help=f"artifact folder (default {COMMITTED_MODEL_PATH})")
    parser.add_argument("--version", default="1", help="the artifact's version (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads (default 2)")
    parser.add_argument("--no-cache", action="store_true", help="replay every seed again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)

    use_cache = not args.no_cache
    print("[train] replaying the training and validation seeds (cached after the first run)",
          file=sys.stderr)
    train = detection.load(detection.PLAN["train"], use_cache)
    validation = detection.load(detection.PLAN["validation"], use_cache)
    print(f"[train] fitting on {len(train.X)} transactions ({int(train.is_fraud.sum())} fraud)",
          file=sys.stderr)
    result = detection.train_booster(train, validation, threads=args.threads)
    tests = {}
    for spec in detection.PLAN["test"]:
        data = detection.honest(spec.load(use_cache))
        scores = result.probabilities(data.X, args.threads)
        tests[spec.name] = {
            **detection.confusion(scores >= result.threshold, data.is_fraud),
            "pr_auc": round(detection.average_precision(scores, data.is_fraud), 4),
        }
    meta = {
        "name": NAME,
        "version": args.version,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "library": {"lightgbm": lightgbm.__version__},
        "threshold": round(result.threshold, 6),
        "alert_rate_cap": detection.ALERT_RATE_CAP,
        "threshold_rule": "the lowest threshold whose alerts on the validation seed are at "
                          f"least {detection.ALERT_PRECISION * 100:.0f} % fraud, alerting at most "
                          "1 % of its transactions",
        "best_f1_threshold": round(result.best_f1_threshold, 6),
        "training": {
            "positives": "fraud the bank did not label (ground truth is_fraud and not "
                         "bank_labelled); bank-labelled fraud left out",
            "seeds": [spec.describe() for spec in detection.PLAN["train"]],
            "validation": [spec.describe() for spec in detection.PLAN["validation"]],
            "rows": result.train_rows,
            "negative_share": detection.NEGATIVE_SHARE,
            "fraud": result.train_positives,
            "rounds": result.rounds,
            "params": detection.PARAMS,
            "monotone_constraints": dict(zip(detection.MODEL_INPUTS,
                                             detection.monotone_constraints())),
            "seconds": result.seconds,
        },
        "metrics": {"validation": result.validation, "test": tests,
                    "test_sets": [spec.describe() | {"name": spec.name}
                                  for spec in detection.PLAN["test"]]},
    }
    artifact = save_artifact(args.out, result.booster.model_to_string(), result.reference,
                             result.baseline, meta)
    size = sum(f.stat().st_size for f in Path(artifact.path).iterdir() if f.is_file())
    print(f"[train] saved {artifact.label} to {artifact.path} ({size // 1024} KB)", file=sys.stderr)
    print(json.dumps({"artifact": artifact.path, "label": artifact.label, "bytes": size,
                      "threshold": meta["threshold"], "rounds": result.rounds,
                      "validation": result.validation, "test": tests}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
