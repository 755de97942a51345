"""Exact explanations of scikit-learn predictions, in numpy (no extra dependency).

What is explained (the explanation's ``target``):

- **regressors**: the predicted value;
- **classifiers**, two classes: the positive class (``classes_[1]``), whose probability is
  the result's ``score``; more classes: the predicted class.

Methods, each exact (``baseline`` + the contributions = ``target_value``, checked against
the model's own output before an explanation is given; one that does not add up is refused):

- ``linear`` - ``LinearRegression``, ``Ridge``, ``Lasso``, ``ElasticNet``, ``SGD*``,
  ``LogisticRegression``, ``RidgeClassifier``, ``LinearSVC``/``LinearSVR`` (a model of
  ``sklearn.linear_model`` or ``sklearn.svm``'s linear ones, with ``coef_``/``intercept_``):
  a feature's contribution is ``coef * (x - reference)`` and the baseline is the output at
  the reference, ``intercept + coef . reference``. The reference is
  ``providerConfig.explainBaseline`` (a mapping of feature to value, e.g. the training means)
  when given, else 0 (so ``coef * x``, and the baseline is the intercept). A classifier's
  target is its decision function: for ``LogisticRegression`` the log-odds (logit) of the
  class, not its probability (which is not additive).
- ``tree_path`` - ``DecisionTree*``, ``RandomForest*``, ``ExtraTrees*``,
  ``GradientBoosting*`` (Saabas): walk the input's decision path and credit each split's
  change of the node value to the split's feature; the baseline is the root's value (the
  training mean or class share). A tree classifier's target is the class probability; a
  forest averages its trees' contributions as it averages their predictions; gradient
  boosting sums its trees' contributions times the learning rate, on its raw score (the
  log-odds of the class for two classes), the baseline being its initial estimate plus the
  trees' roots.
- A ``Pipeline`` of scalers (``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``,
  ``RobustScaler``) ending in one of those: explained on the scaled features, each credited
  to its input feature (after a ``StandardScaler``, ``coef * z``: the baseline is the output
  at the training means).

Any other estimator: no explanation, the reason says ``no exact explanation for <class>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from consumers.providers.explain import ExplanationRefused, explanation

__all__ = ["explain_rows", "reference_row"]

_SCALERS = frozenset({"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"})
_LINEAR_SVM = frozenset({"LinearSVC", "LinearSVR"})
_FORESTS = frozenset(
    {
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    }
)
_BOOSTING = frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"})
_TOLERANCE = 1e-6


def explain_rows(
    model: Any, x: Any, names: list[str], shown: list[list[Any]], reference: Any | None
) -> list[dict[str, Any] | str]:
    """An explanation (wire dict) or the reason there is none, for each row of ``x``.

    ``names``: the feature names in column order; ``shown[i]``: row ``i``'s input values;
    ``reference``: the linear reference point (input columns), or None.
    """
    import numpy as np

    try:
        final, xt, ref = _unwrap(model, np.asarray(x, dtype=float), reference)
        kind = type(final).__name__
        module = type(final).__module__
        if kind in _FORESTS or kind in _BOOSTING or _is_tree(final):
            rows = _tree_path(final, xt)
            method = "tree_path"
        elif (
            hasattr(final, "coef_")
            and hasattr(final, "intercept_")
            and (module.startswith("sklearn.linear_model") or kind in _LINEAR_SVM)
        ):
            rows = _linear(final, xt, ref)
            method = "linear"
        else:
            raise ExplanationRefused(f"no exact explanation for {kind}")
    except ExplanationRefused as exc:
        return [str(exc)] * len(shown)
    out: list[dict[str, Any] | str] = []
    for (target, target_value, baseline, contributions), values in zip(rows, shown, strict=True):
        try:
            total = baseline + math.fsum(contributions.tolist())
            if abs(total - target_value) > _TOLERANCE * max(1.0, abs(target_value)):
                raise ExplanationRefused(
                    f"the {method} explanation of {type(final).__name__} does not add up to "
                    f"its output ({total!r} != {target_value!r})"
                )
            out.append(
                explanation(
                    method,
                    zip(names, values, contributions.tolist(), strict=True),
                    baseline=baseline,
                    target=target,
                    target_value=target_value,
                )
            )
        except ExplanationRefused as exc:
            out.append(str(exc))
    return out


def _is_tree(model: Any) -> bool:
    from sklearn.tree import BaseDecisionTree

    return isinstance(model, BaseDecisionTree)


def _unwrap(model: Any, x: Any, reference: Any | None) -> tuple[Any, Any, Any | None]:
    """The final estimator, ``x`` and the reference as it sees them (through the scalers of
    a pipeline)."""
    import numpy as np
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return model, x, reference
    steps = model.steps
    if reference is not None:
        x = np.vstack([x, np.asarray(reference, dtype=float)[None, :]])
    for _, step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        kind = type(step).__name__
        if kind not in _SCALERS or not type(step).__module__.startswith("sklearn.preprocessing"):
            raise ExplanationRefused(f"no exact explanation for a Pipeline with a {kind}")
        x = step.transform(x)
    final = steps[-1][1]
    if reference is not None:
        return final, x[:-1], x[-1]
    return final, x, None


def _class_index(final: Any, scores: Any) -> Any:
    """Per row, the explained class: the positive one of two, else the highest scored."""
    import numpy as np

    if scores.ndim == 1 or scores.shape[1] == 2:
        return np.ones(scores.shape[0], dtype=int)
    return scores.argmax(axis=1)


def _class_name(final: Any, k: int) -> str:
    return repr(final.classes_.tolist()[k])


_Explained = tuple[str, float, float, Any]
"""(target, target value, baseline, contributions in column order)."""


def _linear(final: Any, x: Any, reference: Any | None) -> list[_Explained]:
    import numpy as np
    from sklearn.base import is_classifier

    coef = np.asarray(final.coef_, dtype=float)
    intercept = np.atleast_1d(np.asarray(final.intercept_, dtype=float))
    ref = np.zeros(x.shape[1]) if reference is None else np.asarray(reference, dtype=float)
    if coef.ndim == 1:
        coef = coef[None, :]
    if coef.shape[1] != x.shape[1]:
        raise ExplanationRefused(f"no exact explanation for {type(final).__name__}: shape")
    out: list[_Explained] = []
    if is_classifier(final):
        scores = np.asarray(final.decision_function(x), dtype=float)
        logistic = type(final).__name__ == "LogisticRegression"
        if scores.ndim == 1:  # two classes: one row of coefficients, for classes_[1]
            for i in range(x.shape[0]):
                contrib = coef[0] * (x[i] - ref)
                target = (
                    f"{'log-odds' if logistic else 'decision function'} of class "
                    f"{_class_name(final, 1)}"
                )
                out.append((target, float(scores[i]), float(intercept[0] + coef[0] @ ref), contrib))
            return out
        ks = scores.argmax(axis=1)
        for i, k in enumerate(ks.tolist()):
            contrib = coef[k] * (x[i] - ref)
            target = (
                f"{'logit' if logistic else 'decision function'} of class {_class_name(final, k)}"
            )
            out.append((target, float(scores[i, k]), float(intercept[k] + coef[k] @ ref), contrib))
        return out
    if coef.shape[0] != 1 or intercept.size != 1:
        raise ExplanationRefused(
            f"no exact explanation for {type(final).__name__} with several outputs"
        )
    values = np.asarray(final.predict(x), dtype=float).reshape(-1)
    base = float(intercept[0] + coef[0] @ ref)
    for i in range(x.shape[0]):
        out.append(("predicted value", float(values[i]), base, coef[0] * (x[i] - ref)))
    return out


def _path_contributions(
    estimator: Any, x: Any, node_values: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """(contributions of shape (rows, features, outputs), the root's values) of one tree."""
    import numpy as np

    tree = estimator.tree_
    values = node_values(tree.value)  # (nodes, K)
    left, right = tree.children_left, tree.children_right
    internal = np.nonzero(left >= 0)[0]
    parent = np.full(tree.node_count, -1, dtype=np.intp)
    parent[left[internal]] = internal
    parent[right[internal]] = internal
    delta = values - values[np.maximum(parent, 0)]
    split_feature = tree.feature[np.maximum(parent, 0)]
    path = estimator.decision_path(x).tocsr()
    out = np.zeros((x.shape[0], x.shape[1], values.shape[1]))
    for i in range(x.shape[0]):
        nodes = path.indices[path.indptr[i] : path.indptr[i + 1]]
        nodes = nodes[parent[nodes] >= 0]  # every node of the path but the root
        np.add.at(out[i], split_feature[nodes], delta[nodes])
    return out, values[0]


def _proportions(value: Any) -> Any:
    v = value[:, 0, :]
    total = v.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    return v / total


def _means(value: Any) -> Any:
    return value[:, 0, :1]


def _tree_path(final: Any, x: Any) -> list[_Explained]:
    import numpy as np
    from sklearn.base import is_classifier

    if getattr(final, "n_outputs_", 1) != 1:
        raise ExplanationRefused(
            f"no exact explanation for {type(final).__name__} with several outputs"
        )
    kind = type(final).__name__
    classifier = is_classifier(final)
    if kind in _BOOSTING:
        return _boosting(final, x, classifier)
    trees = final.estimators_ if kind in _FORESTS else [final]
    node_values = _proportions if classifier else _means
    contrib = np.zeros((x.shape[0], x.shape[1], 1))
    root: Any = 0.0
    for tree in trees:
        c, r = _path_contributions(tree, x, node_values)
        contrib = contrib + c
        root = root + r
    contrib, root = contrib / len(trees), root / len(trees)
    out: list[_Explained] = []
    if classifier:
        proba = np.asarray(final.predict_proba(x), dtype=float)
        for i, k in enumerate(_class_index(final, proba).tolist()):
            out.append(
                (
                    f"probability of class {_class_name(final, k)}",
                    float(proba[i, k]),
                    float(root[k]),
                    contrib[i, :, k],
                )
            )
        return out
    values = np.asarray(final.predict(x), dtype=float).reshape(-1)
    for i in range(x.shape[0]):
        out.append(("predicted value", float(values[i]), float(root[0]), contrib[i, :, 0]))
    return out


def _boosting(final: Any, x: Any, classifier: bool) -> list[_Explained]:
    """Gradient boosting: raw score = initial estimate + learning rate x the trees' sum."""
    import numpy as np

    stages = final.estimators_  # (n_estimators, K) regression trees
    rate = float(final.learning_rate)
    k_count = stages.shape[1]
    contrib = np.zeros((x.shape[0], x.shape[1], k_count))
    roots = np.zeros(k_count)
    for k in range(k_count):
        for tree in stages[:, k]:
            c, r = _path_contributions(tree, x, _means)
            contrib[:, :, k] += rate * c[:, :, 0]
            roots[k] += rate * r[0]
    raw = (
        np.asarray(final.decision_function(x), dtype=float)
        if classifier
        else np.asarray(final.predict(x), dtype=float)
    )
    raw = raw.reshape(x.shape[0], -1)
    init = getattr(final, "_raw_predict_init", None)
    if init is not None:
        start = np.asarray(init(x), dtype=float).reshape(x.shape[0], -1)
    else:  # the initial estimate, from the identity raw = init + rate x sum of leaf values
        start = raw - contrib.sum(axis=1) - roots
    out: list[_Explained] = []
    for i in range(x.shape[0]):
        k = int(raw[i].argmax()) if k_count > 1 else 0
        if not classifier:
            target = "predicted value"
        elif k_count == 1:
            target = f"log-odds of class {_class_name(final, 1)}"
        else:
            target = f"raw score of class {_class_name(final, k)}"
        out.append((target, float(raw[i, k]), float(start[i, k] + roots[k]), contrib[i, :, k]))
    return out


def reference_row(setting: Any, names: Sequence[str] | None, width: int | None) -> list[float]:
    """``providerConfig.explainBaseline`` as a row in column order. Raises ``ValueError``."""
    if isinstance(setting, dict):
        if names is None:
            raise ValueError("a mapping needs the feature names (providerConfig.features)")
        missing = [n for n in names if n not in setting]
        if missing:
            raise ValueError(f"no value for {', '.join(missing[:5])}")
        row = [setting[n] for n in names]
    elif isinstance(setting, list):
        row = setting
        if width is not None and len(row) != width:
            raise ValueError(f"{len(row)} values for {width} features")
    else:
        raise ValueError("must be a mapping of feature to number or a list of numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
        raise ValueError("must hold numbers only")
    return [float(v) for v in row]
