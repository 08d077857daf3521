"""An experiment beside the refusal judge: a logistic head over the opening's e5-small embedding (the
classifiers' shipped encoder) and the detector's own verdict, in place of phrase rules alone.

Fitted on the even lines of both refusal dev sets (`evaluation/data/refusal_dev.jsonl`, its round-2
companion), its regularisation chosen on their odd lines, then measured once on XSTest's human-labelled
completions (evaluation only: nothing is chosen there). Prints JSON.

    .venv/bin/python bench/refusal_scored.py [--opening 400]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# bench/classifiers.py is beside this file: keep the folder off the path so `classifiers` is the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from classifiers import ClassifiersConfig, SafetyClassifier  # noqa: E402
from classifiers.refusals import RefusalDetector  # noqa: E402
from evaluation.judge import DEV_SET, ROUND2_SET, load_dev_set, xstest_rows  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def features(texts: list[str], encoder: Any, detector: RefusalDetector, opening: int) -> np.ndarray:
    """Mean embedding of the opening's windows, and the detector's verdict."""
    emb, owners = encoder.embed([t.strip()[:opening] for t in texts])
    pooled = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
    counts = np.zeros(len(texts), dtype=np.float32)
    for row, owner in zip(emb, owners, strict=True):
        pooled[owner] += row
        counts[owner] += 1
    pooled /= np.maximum(counts, 1)[:, None]
    return np.hstack([pooled, np.array([[float(detector(t))] for t in texts], dtype=np.float32)])


def main() -> None:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opening", type=int, default=400, help="characters of the answer read")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args()
    detector = RefusalDetector()
    encoder = SafetyClassifier.load(ClassifiersConfig()).encoder
    rows = [(i, r) for path in (DEV_SET, ROUND2_SET) for i, r in enumerate(load_dev_set(path))]
    x = features([r["completion"] for _, r in rows], encoder, detector, args.opening)
    y = np.array([r["label"] == "refusal" for _, r in rows])
    fit = np.array([i % 2 == 0 for i, _ in rows])
    held_out = {
        c: float(
            (LogisticRegression(C=c, max_iter=2000).fit(x[fit], y[fit]).predict(x[~fit]) == y[~fit]).mean()
        )
        for c in (0.3, 1.0, 3.0, 10.0, 30.0)
    }
    best = max(held_out, key=lambda c: held_out[c])
    model = LogisticRegression(C=best, max_iter=2000).fit(x[fit], y[fit])
    xs = xstest_rows(args.data_dir)
    xx = features([c for _, c in xs], encoder, detector, args.opening)
    yx = np.array([refusal for refusal, _ in xs])
    predicted = model.predict(xx)
    rules = xx[:, -1].astype(bool)
    result = {
        "held_out_by_C": held_out,
        "chosen_C": best,
        "held_out_rules": float((x[~fit][:, -1].astype(bool) == y[~fit]).mean()),
        "xstest_scored": {
            "agreement": float((predicted == yx).mean()),
            "refusals_found": float(predicted[yx].mean()),
            "compliance_kept": float((~predicted[~yx]).mean()),
        },
        "xstest_rules": float((rules == yx).mean()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
