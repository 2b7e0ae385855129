"""Detection quality of the fraud model on data it was not trained on: a JSON report and two
pictures.

    python -m tools.evaluate                        # `make evaluate`: the committed model
    python -m tools.evaluate --model DIR --out DIR  # another artifact, another folder
    python -m tools.evaluate --skip-leave-one-out   # without the 14 re-trainings (~1 min)

What is measured is defined in :mod:`tools.detection`: the fraud the bank did *not* label,
among every transaction the bank did not label fraudulent (the bank's own fraud is left out
of positives, negatives and the alert rate alike). Features and scores are computed by the
job's own pure per-record code, replayed in event order over the simulator's records
(:mod:`tools.replay`), so they are the ones the job computes. Four predictors:

- ``model``: the model's alert (probability >= the artifact's threshold);
- ``rules``: ``risk_score >= 50`` of the explainable rules (the job without a model);
- ``is_fraudulent``: what the job decides with the model: for ``unidentified`` transactions
  the model's alert or the validator's verdict (the validator's rules run in-process);
  ``cleared`` ones are never fraudulent;
- ``is_fraudulent_rules``: the same without a model (the validator given the rules' score).

Sections of the report:

- ``tests``: each held-out test set (a seed never trained on; one with every family, one with
  the mix of ISSUE_FAMILIES alone with no bank labels): precision, recall, F1, PR-AUC and
  alert rate per predictor, recall per family;
- ``issue_mix_seeds``: the model on the issue mix of ``test-issue-mix`` and on four more
  seeds of it, with the five F1s' median and range (the mix has about a hundred episodes per
  seed, so one seed's F1 can sit a few hundredths either side of the median);
- ``families``: the model on each family's own test seed;
- ``leave_one_out``: per family, a model trained the same way *without* that family, on the
  family's test seed; ``leave_issue_families_out``: without ISSUE_FAMILIES, on
  that mix;
- ``targets``: F1 >= 0.8 on the held-out sets and as the issue mix's median over its five
  seeds, recall >= 0.5 for every family left out, every alert rate <= 1 %.

Files: ``evaluation.json``, ``pr_curves.png`` (precision-recall of the model and the rules,
with the operating points) and ``scores.png`` (the model's probabilities of ordinary and
fraudulent transactions, and the threshold), in ``--out`` (default: ``evaluation/`` in the
artifact's folder). A table goes to stderr, the JSON to stdout too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.domain.model import COMMITTED_MODEL_PATH, FraudModel, load_artifact
from pipeline.domain.scoring import THRESHOLD
from tools import detection
from tools.replay import Dataset

logger = logging.getLogger(__name__)
F1_TARGET, RECALL_TARGET = 0.8, 0.5
ISSUE_FAMILIES = "issue families"  # the key of the model trained without all three


def predictors(data: Dataset, scores: np.ndarray, threshold: float) -> dict:
    """Each predictor's figures on ``data`` (the honest population)."""
    unidentified = data.evaluation == "unidentified"
    alerts = scores >= threshold
    decided = {
        "model": (alerts, scores),
        "rules": (data.rule_score >= THRESHOLD, data.rule_score.astype(float)),
        "is_fraudulent": (unidentified & (alerts | data.validator_below_alert), None),
        "is_fraudulent_rules": (unidentified & data.validator_with_rules, None),
    }
    out = {}
    for name, (flagged, ranking) in decided.items():
        figures = detection.confusion(flagged, data.is_fraud)
        if ranking is not None:
            figures["pr_auc"] = round(detection.average_precision(ranking, data.is_fraud), 4)
        figures["recall_by_family"] = {
            family: round(float(flagged[data.scenario == family].mean()), 4)
            for family in sorted(set(data.scenario) - {""})
        }
        out[name] = figures
    return out


def model_figures(data: Dataset, scores: np.ndarray, threshold: float) -> dict:
    figures = detection.confusion(scores >= threshold, data.is_fraud)
    figures["pr_auc"] = round(detection.average_precision(scores, data.is_fraud), 4)
    return figures


def leave_out(train, validation, families, threads: int) -> detection.TrainingResult:
    """A model trained the same way without ``families`` (their fraud leaves the training
    and validation data)."""
    return detection.train_booster(detection.without(train, families),
                                   detection.without(validation, families), threads=threads)


def left_out_figures(result: detection.TrainingResult, test: Dataset, threads: int) -> dict:
    """A left-out model's figures on ``test``."""
    scores = result.probabilities(test.X, threads)
    figures = model_figures(test, scores, result.threshold)
    return {**figures, "threshold": round(result.threshold, 4), "rounds": result.rounds,
            "at_best_f1_threshold": alerts_at(scores, test, result.best_f1_threshold)}


def alerts_at(scores: np.ndarray, data: Dataset, threshold: float) -> dict:
    """Precision, recall, F1 and alert rate at another threshold (the best-F1 rule's)."""
    figures = detection.confusion(scores >= threshold, data.is_fraud)
    return {k: figures[k] for k in ("precision", "recall", "f1", "alert_rate")}


def spread(figures: dict) -> dict:
    """The median, lowest and highest F1 of several seeds' figures."""
    f1 = sorted(m["f1"] for m in figures.values())
    return {"f1_median": round(float(np.median(f1)), 4), "f1_min": f1[0], "f1_max": f1[-1]}


def targets(report: dict) -> dict:
    f1 = {name: test["model"]["f1"] for name, test in report["tests"].items()}
    rates = [test["model"]["alert_rate"] for test in report["tests"].values()]
    if "issue_mix_seeds" in report:
        seeds = report["issue_mix_seeds"]
        f1[f"issue mix, median of {len(seeds['seeds'])} seeds"] = seeds["f1_median"]
        rates += [m["alert_rate"] for m in seeds["seeds"].values()]
    rates += [f["alert_rate"] for f in report["families"].values()]
    out = {
        "f1_at_least_0.8": {"values": f1, "met": all(v >= F1_TARGET for v in f1.values())},
    }
    if "leave_one_out" in report:
        recalls = {name: f["recall"] for name, f in report["leave_one_out"].items()}
        rates += [f["alert_rate"] for f in report["leave_one_out"].values()]
        out["leave_one_out_recall_at_least_0.5"] = {
            "below": {k: v for k, v in recalls.items() if v < RECALL_TARGET},
            "met": all(v >= RECALL_TARGET for v in recalls.values()),
        }
    out["alert_rate_at_most_1pct"] = {"max": max(rates), "met": max(rates) <= 0.01}
    return out


def plot(out: Path, curves: dict, threshold: float) -> None:
    """pr_curves.png and scores.png."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 5), squeeze=False)
    for ax, (name, (data, scores)) in zip(axes[0], curves.items()):
        for label, ranking in (("model", scores), ("rules (risk_score)", data.rule_score)):
            precision, recall, _ = detection.pr_curve(np.asarray(ranking, float), data.is_fraud)
            ax.plot(recall, precision, label=f"{label}: PR-AUC "
                    f"{detection.average_precision(np.asarray(ranking, float), data.is_fraud):.2f}")
        for label, flagged, marker in (
            ("model alert", scores >= threshold, "o"),
            ("is_fraudulent", (data.evaluation == "unidentified")
             & ((scores >= threshold) | data.validator_below_alert), "s"),
            ("rules risk_score >= 50", data.rule_score >= THRESHOLD, "^"),
        ):
            m = detection.confusion(flagged, data.is_fraud)
            ax.plot([m["recall"]], [m["precision"]], marker, markersize=9,
                    label=f"{label} (alerts {m['alert_rate']:.2%})")
        ax.set(title=f"{name}: fraud the bank did not label", xlabel="recall",
               ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pr_curves.png", dpi=90)
    plt.close(fig)

    name, (data, scores) = next(iter(curves.items()))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(-5, 0, 51)
    logs = np.log10(np.clip(scores, 1e-5, 1))
    ax.hist(logs[~data.is_fraud], bins=bins, alpha=0.6, label="ordinary", log=True)
    ax.hist(logs[data.is_fraud], bins=bins, alpha=0.6, label="fraud the bank did not label",
            log=True)
    ax.axvline(np.log10(threshold), color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(title=f"{name}: model probability", xlabel="log10(probability)",
           ylabel="transactions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=90)
    plt.close(fig)


def _row(name: str, m: dict) -> str:
    auc = f"{m['pr_auc']:7.3f}" if "pr_auc" in m else f"{'':7}"
    return (f"{name:30} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {auc} "
            f"{m['alert_rate']:7.2%}")


def table(report: dict) -> str:
    lines = [f"model {report['model']['label']} (threshold {report['model']['threshold']:.3f}); "
             "fraud the bank did not label"]
    head = f"{'':30} {'precision':>9} {'recall':>7} {'F1':>6} {'PR-AUC':>7} {'alerts':>7}"
    for name, test in report["tests"].items():
        lines += ["", f"{name} ({test['model']['transactions']} transactions, "
                  f"{test['model']['positives']} fraud)", head]
        lines += [_row(predictor, m) for predictor, m in test.items()]
        for family, recall in test["model"]["recall_by_family"].items():
            lines.append(f"  recall {family:28} {recall:6.3f}")
    if "issue_mix_seeds" in report:
        seeds = report["issue_mix_seeds"]
        lines += ["", f"the issue mix on {len(seeds['seeds'])} seeds: F1 median "
                  f"{seeds['f1_median']:.3f}, {seeds['f1_min']:.3f} to {seeds['f1_max']:.3f}",
                  head]
        lines += [_row(name, m) for name, m in seeds["seeds"].items()]
    for section in ("families", "leave_one_out"):
        if section not in report:
            continue
        lines += ["", f"{section} (each family's own test seed)", head]
        lines += [_row(family, m) for family, m in report[section].items()]
    lines += ["", "targets: " + json.dumps(report["targets"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=COMMITTED_MODEL_PATH,
                        help=f"artifact folder (default {COMMITTED_MODEL_PATH})")
    parser.add_argument("--out", type=Path, help="where the report goes (default: "
                        "evaluation/ in the artifact's folder)")
    parser.add_argument("--skip-leave-one-out", action="store_true",
                        help="no re-training without each family")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads (default 2)")
    parser.add_argument("--no-cache", action="store_true", help="replay every seed again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    started = time.perf_counter()
    use_cache = not args.no_cache

    try:
        import matplotlib  # noqa: F401  (checked now: the pictures come last, after minutes)
    except ImportError:
        parser.error("matplotlib is missing: `make evaluate` installs it (the `ml` extra: "
                     "pip install -e '.[ml]')")
    artifact = load_artifact(args.model)
    model = FraudModel(artifact)
    out = args.out or Path(artifact.path) / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "model": {"label": artifact.label, "path": artifact.path, "threshold": model.threshold},
        "population": "transactions the bank did not label fraudulent (ground truth "
                      "bank_labelled false); positives: the fraud among them",
        "test_sets": {spec.name: spec.describe()
                      for spec in detection.PLAN["test"] + detection.PLAN["issue_mix_seeds"]},
        "tests": {},
    }
    left_out = {}
    if not args.skip_leave_one_out:
        # Trained first: they need only the training seeds, so a run that must still replay
        # the held-out seeds can do that beside them.
        print("[evaluate] training a model without each family (leave one out)", file=sys.stderr)
        train = detection.load(detection.PLAN["train"], use_cache)
        validation = detection.load(detection.PLAN["validation"], use_cache)
        for spec in detection.PLAN["families"]:
            name = spec.scenarios[0]
            left_out[name] = leave_out(train, validation, [name], args.threads)
            logger.info("trained without %s (%d rounds)", name, left_out[name].rounds)
        left_out[ISSUE_FAMILIES] = leave_out(train, validation, detection.ISSUE_FAMILIES,
                                             args.threads)
        del train, validation
    curves = {}
    print("[evaluate] replaying the held-out seeds (cached after the first run)", file=sys.stderr)
    for spec in detection.PLAN["test"]:
        data = detection.honest(spec.load(use_cache))
        scores = model.probabilities(data.X)
        report["tests"][spec.name] = predictors(data, scores, model.threshold)
        if "best_f1_threshold" in artifact.meta:  # the other threshold rule, for comparison
            report["tests"][spec.name]["model"]["at_best_f1_threshold"] = alerts_at(
                scores, data, artifact.meta["best_f1_threshold"])
        curves[spec.name] = (data, scores)
    mix = {"test-issue-mix": report["tests"]["test-issue-mix"]["model"]}
    for spec in detection.PLAN["issue_mix_seeds"]:
        data = detection.honest(spec.load(use_cache))
        mix[spec.name] = model_figures(data, model.probabilities(data.X), model.threshold)
    report["issue_mix_seeds"] = {
        "seeds": {name: {k: m[k] for k in ("positives", "precision", "recall", "f1", "pr_auc",
                                           "alert_rate")} for name, m in mix.items()},
        **spread(mix),
    }
    families = {spec.scenarios[0]: detection.honest(spec.load(use_cache))
                for spec in detection.PLAN["families"]}
    report["families"] = {
        name: model_figures(data, model.probabilities(data.X), model.threshold)
        for name, data in families.items()
    }
    if left_out:
        report["leave_one_out"] = {
            name: left_out_figures(left_out[name], data, args.threads)
            for name, data in families.items()
        }
        report["leave_issue_families_out"] = left_out_figures(
            left_out[ISSUE_FAMILIES], curves["test-issue-mix"][0], args.threads
        )
    report["targets"] = targets(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(out, curves, model.threshold)
    print(table(report), file=sys.stderr)
    print(f"[evaluate] wrote {out}/evaluation.json, pr_curves.png, scores.png", file=sys.stderr)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
