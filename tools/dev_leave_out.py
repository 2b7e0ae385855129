"""Leave-one-family-out on the development seeds: does a way of building the model carry over
to fraud it never saw? Measured where the test seeds are not.

    python -m tools.dev_leave_out                     # every family (~10 min, replays cached)
    python -m tools.dev_leave_out --families leaked_account account_takeover_new_payee

Per family: a model trained as ``make evaluate``'s leave-one-out trains it (the training seeds
without the family, early stopping on the validation seed without it), the threshold each
validation precision floor of :data:`FLOORS` gives it (``tools.detection.ALERT_PRECISION`` is
the one in use), and at that threshold the family's recall and the alert rate on the family's
development seed (``tools.detection.PLAN["dev"]``: one seed per family, never a test seed).
First, the model trained on every family: its validation precision, recall and F1 at each
floor, the price of a lower floor, and its F1 on the issue mix's development seeds
(``PLAN["dev_issue_mix"]``). How the model is built (the threshold rule, a feature) is
chosen on these figures; the test seeds of ``make evaluate`` only report.

A table goes to stderr, the figures as JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tools import detection
from tools.evaluate import leave_out

FLOORS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6)


def at_floors(result: detection.TrainingResult, validation, data, threads: int) -> dict:
    """Per floor: ``data``'s confusion at the threshold that floor gives on ``validation``."""
    checked = result.probabilities(validation.X, threads)
    scores = result.probabilities(data.X, threads)
    out = {}
    for floor in FLOORS:
        threshold = detection.threshold_at_precision(checked, validation.is_fraud, floor)
        out[floor] = {"threshold": round(threshold, 4),
                      **detection.confusion(scores >= threshold, data.is_fraud)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dev_leave_out", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--families", nargs="+", choices=detection.ALL_FAMILIES,
                        metavar="FAMILY", help="only these (default: every family)")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    families = args.families or detection.ALL_FAMILIES

    print("[dev] replaying the training and validation seeds (cached after the first run)",
          file=sys.stderr)
    train = detection.load(detection.PLAN["train"])
    validation = detection.load(detection.PLAN["validation"])
    whole = detection.train_booster(train, validation, threads=args.threads)
    report = {"floors": list(FLOORS), "in_use": detection.ALERT_PRECISION,
              "validation": at_floors(whole, validation, validation, args.threads),
              "dev_issue_mix": {}, "leave_one_out": {}}
    for spec in detection.PLAN["dev_issue_mix"]:
        report["dev_issue_mix"][spec.name] = at_floors(
            whole, validation, detection.honest(spec.load()), args.threads)
    dev = {spec.scenarios[0]: spec for spec in detection.PLAN["dev"]}
    for name in families:
        result = leave_out(train, validation, [name], args.threads)  # as make evaluate does
        kept = detection.without(validation, [name])  # where its threshold is chosen
        data = detection.honest(dev[name].load())
        report["leave_one_out"][name] = at_floors(result, kept, data, args.threads)
        logging.info("without %s: recall %s", name, [
            f["recall"] for f in report["leave_one_out"][name].values()])

    floors = "".join(f"{floor:>15}" for floor in FLOORS)
    lines = [f"{'precision floor':<28}{floors}",
             f"{'validation F1 (all families)':<28}" + "".join(
                 f"{f['f1']:>15.3f}" for f in report["validation"].values())]
    for name, figures in report["dev_issue_mix"].items():
        lines.append(f"{name + ' F1':<28}" + "".join(
            f"{f['f1']:>15.3f}" for f in figures.values()))
    for name, figures in report["leave_one_out"].items():
        lines.append(f"{name:<28}" + "".join(
            f"{f['recall']:>8.3f} {100 * f['alert_rate']:>4.2f}%" for f in figures.values()))
    print("\n".join(["recall of each family left out (its dev seed), and the alert rate"]
                    + lines), file=sys.stderr)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
