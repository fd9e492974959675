"""Instance weighting and shallow feature adaptation on arrays, beside skada.

Tasks: MNIST <-> USPS (JDA protocol: L2-normalised pixels, 1-NN; all source rows
labelled, all target rows unlabelled) and the 12 Amazon-review tasks (DANN protocol:
2,000 labelled source + 2,000 unlabelled target training rows, scored on the target
test file; features: log1p word counts, L2-normalised, then a 256-dimensional
TruncatedSVD fitted on the unlabelled source + target training rows, the same for
every method; logistic regression). Methods with randomness run 3 seeds (mean).
skada runs the methods it shares with lowshot with the same hyper-parameters.

    python benchmarks/shallow_da.py
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import ResultStore, machine
from sklearn.base import clone
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from lowshot.data import load_benchmark_arrays
from lowshot.domains import stack_domains
from lowshot.feature.runner import array_methods, make_estimator
from lowshot.io import write_text
from lowshot.kernels import median_gamma

HERE = Path(__file__).parent
METHODS = ["erm", *array_methods()]  # every registered adapter and reweighter
AMAZON = ["books", "dvd", "electronics", "kitchen"]


def tasks(
    root: str | None,
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]]:
    out = []
    digits = {d: load_benchmark_arrays("mnist-usps", d, root=root) for d in ("mnist", "usps")}
    for s, t in (("mnist", "usps"), ("usps", "mnist")):
        S, T = digits[s], digits[t]
        Xs, Xt = normalize(S.dense().astype(float)), normalize(T.dense().astype(float))
        out.append((f"{s[0].upper()}->{t[0].upper()}", Xs, S.labels, Xt, Xt, T.labels, "1nn"))
    for s, t in itertools.permutations(AMAZON, 2):
        S = load_benchmark_arrays("amazon-reviews", s, "train", root=root)
        T = load_benchmark_arrays("amazon-reviews", t, "train", root=root)
        TT = load_benchmark_arrays("amazon-reviews", t, "test", root=root)
        pre = [normalize(a.X.log1p()) for a in (S, T, TT)]
        svd = TruncatedSVD(256, random_state=0).fit(sp.vstack(pre[:2]))
        Xs, Xt, Xtt = (normalize(svd.transform(x)) for x in pre)
        out.append((f"{s[0].upper()}->{t[0].upper()}", Xs, S.labels, Xt, Xtt, TT.labels, "logreg"))
    return out


def skada_for(method: str, clf: object, gamma: float) -> object | None:
    import skada
    import sklearn

    # skada routes importance weights through scikit-learn's metadata routing
    sklearn.set_config(enable_metadata_routing=True)
    c = clone(clf)
    from sklearn.utils.validation import has_fit_parameter

    wants = method in ("kmm", "nn-weighting", "discriminative") and has_fit_parameter(
        clf, "sample_weight"
    )
    weighted = clone(clf).set_fit_request(sample_weight=True) if wants else c
    return {
        "coral-linear": lambda: skada.CORAL(c, reg=1.0),
        "subspace-alignment": lambda: skada.SubspaceAlignment(c, n_components=50),
        "tca": lambda: skada.TransferComponentAnalysis(
            c, kernel="linear", n_components=100, mu=0.1
        ),
        "kmm": lambda: skada.KMMReweight(weighted, gamma=gamma, B=1000.0),
        "nn-weighting": lambda: skada.NearestNeighborReweight(weighted, laplace_smoothing=True),
        "discriminative": lambda: skada.DiscriminatorReweight(weighted),
        "ot": lambda: skada.EntropicOTMapping(c, reg_e=1.0),
    }.get(method, lambda: None)()


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    store = ResultStore(
        HERE / "results" / "shallow_da.json", {"benchmark": "shallow_da", "machine": machine()}
    )
    for name, Xs, ys, Xt, Xe, ye, clf_name in tasks(None):
        X, y, sd = stack_domains(Xs, Xt, ys)
        clf = (
            KNeighborsClassifier(1)
            if clf_name == "1nn"
            else LogisticRegression(C=1.0, max_iter=3000)
        )
        gamma = median_gamma(Xs)
        for method in METHODS:
            est = make_estimator(method, clf_name, {"gamma": gamma} if method == "kmm" else {})
            seeds = (
                [0, 1, 2]
                if "seed" in est.get_params() or any(k.endswith("__seed") for k in est.get_params())
                else [0]
            )
            for seed in seeds:
                key = f"{name}|{method}|{seed}"
                if store.has(key):
                    continue
                e = clone(est)
                seed_keys = [k for k in e.get_params() if k == "seed" or k.endswith("__seed")]
                e.set_params(**{k: seed for k in seed_keys})
                t0 = time.perf_counter()
                e.fit(Xs, ys) if method == "erm" else e.fit(X, y, sample_domain=sd)
                acc = float((e.predict(Xe) == ye).mean())
                store.put(
                    key,
                    {
                        "task": name,
                        "method": method,
                        "seed": seed,
                        "accuracy": acc,
                        "seconds": time.perf_counter() - t0,
                        "library": "lowshot",
                    },
                )
            sk = skada_for(method, clf, gamma)
            key = f"{name}|{method}|skada"
            if sk is not None and not store.has(key):
                y_masked = np.r_[
                    ys, np.full(len(Xt), -1)
                ]  # skada marks unlabelled target rows with -1
                t0 = time.perf_counter()
                try:
                    sk.fit(X, y_masked, sample_domain=np.where(sd > 0, 1, -2))
                    acc = float((sk.predict(Xe) == ye).mean())
                except Exception as exc:  # report, don't hide, a failure of the other library
                    acc = float("nan")
                    print(f"skada {method} failed on {name}: {exc}")
                store.put(
                    key,
                    {
                        "task": name,
                        "method": method,
                        "seed": 0,
                        "accuracy": acc,
                        "seconds": time.perf_counter() - t0,
                        "library": "skada",
                    },
                )
        print(name, "done", flush=True)
    write_text(HERE.parent / "docs" / "benchmarks" / "shallow_da.md", table(store))


def table(store: ResultStore) -> str:
    recs = store.records()
    names = list(dict.fromkeys(r["task"] for r in recs))
    lines = [
        "# Instance weighting and shallow adaptation on arrays (target accuracy %)",
        "",
        "MNIST<->USPS: JDA protocol (L2-normalised pixels, 1-NN). Amazon: DANN data, log1p + L2 + "
        "256-d TruncatedSVD fitted on unlabelled source+target rows, logistic regression, scored on the "
        "target test file. Mean over 3 seeds for methods with randomness. `skada` rows: skada 0.6 with the "
        "same hyper-parameters; time ratio = lowshot / skada wall time (fit + predict), summed over tasks.",
        "",
        f"Produced by `python benchmarks/shallow_da.py` on {store.data['meta']['machine'].get('cpus')} CPU cores, "
        f"{store.commits()}.",
        "",
        "| method | " + " | ".join(names) + " | Amazon avg | time ratio |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    amazon = [n for n in names if n[0] in "BDEK"]
    for method in METHODS:
        for lib in ("lowshot", "skada"):
            rows = [r for r in recs if r["method"] == method and r["library"] == lib]
            if not rows:
                continue
            acc = {
                n: np.mean([r["accuracy"] for r in rows if r["task"] == n])
                for n in names
                if any(r["task"] == n for r in rows)
            }
            cells = [f"{100 * acc[n]:.1f}" if n in acc else "–" for n in names]
            avg = (
                np.mean([acc[n] for n in amazon if n in acc])
                if all(n in acc for n in amazon)
                else np.nan
            )
            ratio = ""
            if lib == "skada":
                mine = sum(
                    np.mean(
                        [
                            r["seconds"]
                            for r in recs
                            if r["method"] == method
                            and r["library"] == "lowshot"
                            and r["task"] == n
                        ]
                    )
                    for n in acc
                )
                theirs = sum(r["seconds"] for r in rows)
                ratio = f"{mine / theirs:.2f}"
            label = method if lib == "lowshot" else f"  skada {method}"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * avg:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
