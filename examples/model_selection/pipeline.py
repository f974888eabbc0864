"""Model selection on scikit-learn's wine dataset: load → split → fit each candidate → pick → test.

Run it from this folder (needs the example's extra: pip install 'flowkit[example]'):

    python -m flowkit run pipeline:select_model --run-id wine --executor process --workers 2

Each candidate is a ``map_over`` instance named after it (``fit[logreg:1]``, ``fit[forest:50]``),
scored by 5-fold cross-validation on the training set. Only the winner is refitted and scored
on the held-out test set. Add a candidate to the same run and only the new one is fitted:

    python -m flowkit run pipeline:select_model --run-id wine --param grid=svc:1,logreg:0.1,...

The dataset is stored as Parquet, the split with pickle. The report goes to ./out/ (state to
./.flowkit/).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowkit import Flow

OUT = Path(os.environ.get("MODEL_OUT", Path(__file__).parent / "out"))
GRID = "logreg:0.1,logreg:1,logreg:10,tree:3,tree:6,forest:50,forest:200"

select_model = Flow("select_model")


@select_model.step()
def dataset() -> Any:
    """The wine dataset as one DataFrame (stored as Parquet): 13 features and the class."""
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


@select_model.step()
def split(dataset: Any, seed: int = 7) -> dict[str, Any]:
    """A stratified 75/25 train/test split."""
    from sklearn.model_selection import train_test_split

    features = dataset.drop(columns="target")
    x_train, x_test, y_train, y_test = train_test_split(
        features, dataset["target"], test_size=0.25, random_state=seed, stratify=dataset["target"]
    )
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}


@select_model.step()
def candidates(grid: str = GRID) -> list[str]:
    """The models to try, as ``kind:setting`` (logreg: C, tree: max depth, forest: trees)."""
    names = [c.strip() for c in grid.split(",") if c.strip()]
    for name in names:
        _model(name)  # a typo fails here, before any fitting
    return names


def _model(name: str, seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    kind, _, setting = name.partition(":")
    makers = {
        "logreg": lambda v: LogisticRegression(C=float(v), max_iter=2000),
        "svc": lambda v: SVC(C=float(v)),
        "tree": lambda v: DecisionTreeClassifier(max_depth=int(v), random_state=seed),
        "forest": lambda v: RandomForestClassifier(n_estimators=int(v), random_state=seed),
    }
    if kind not in makers or not setting:
        raise ValueError(f"unknown candidate {name!r}: use kind:setting, kind in {sorted(makers)}")
    return make_pipeline(StandardScaler(), makers[kind](setting))


@select_model.step(map_over="candidates", retries=1)
def fit(candidates: str, split: dict[str, Any]) -> dict[str, Any]:
    """Cross-validate one candidate on the training set (5 folds)."""
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(_model(candidates), split["x_train"], split["y_train"], cv=5)
    print(f"{candidates}: {scores.mean():.4f} ± {scores.std():.4f}")
    return {"name": candidates, "cv_mean": float(scores.mean()), "cv_std": float(scores.std())}


@select_model.step()
def best(fit: list[dict[str, Any]]) -> str:
    """The candidate with the best mean CV accuracy (ties: the smaller spread, then the name)."""
    return min(fit, key=lambda r: (-r["cv_mean"], r["cv_std"], r["name"]))["name"]


@select_model.step()
def report(best: str, fit: list[dict[str, Any]], split: dict[str, Any]) -> dict[str, Any]:
    """Refit the winner on the whole training set, score it on the test set, write a report."""
    model = _model(best).fit(split["x_train"], split["y_train"])
    accuracy = float(model.score(split["x_test"], split["y_test"]))
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [f"{'candidate':<14} {'cv accuracy':>12}"]
    for r in sorted(fit, key=lambda r: -r["cv_mean"]):
        mark = "  <- best" if r["name"] == best else ""
        lines.append(f"{r['name']:<14} {r['cv_mean']:>7.4f} ± {r['cv_std']:.3f}{mark}")
    lines.append(f"test accuracy of {best}: {accuracy:.4f}")
    (OUT / "model_selection.txt").write_text("\n".join(lines) + "\n")
    return {"best": best, "test_accuracy": accuracy}
