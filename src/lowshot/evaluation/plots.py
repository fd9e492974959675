"""Report figures written into run folders (PNG, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lowshot.io import atomic_path  # noqa: E402


def save_png(fig: Figure, path: Path | None = None, dpi: int = 110) -> bytes:
    """Write ``fig`` as a PNG at ``path`` (atomically) or return its bytes; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data


def confusion_matrix_png(
    cm: list[list[int]], classes: list[str], path: Path, title: str = ""
) -> None:
    save_png(confusion_matrix_figure(cm, classes, title), path)


def confusion_matrix_figure(cm: list[list[int]], classes: list[str], title: str = "") -> Figure:
    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(classes)
    size = max(4.0, min(16.0, 0.35 * n + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7 if n > 15 else 9)
    ax.set_yticks(range(n), classes, fontsize=7 if n > 15 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(int(m[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def learning_curve_png(history: list[dict], path: Path, title: str = "") -> None:
    """Training curve per epoch (deep strategies) or accuracy against labelled examples per
    class (linear probe): whatever x the history rows carry."""
    if history:
        save_png(learning_curve_figure(history, title), path)


def curve_keys(history: list[dict]) -> tuple[list[str], list[str]]:
    """The numeric series a history carries: accuracies (plotted on [0, 1]) and losses."""
    keys: list[str] = []
    for h in history:
        keys += [k for k, v in h.items() if k not in keys and k not in ("epoch", "shots")
                 and isinstance(v, (int, float)) and not isinstance(v, bool)]  # fmt: skip
    return [k for k in keys if "acc" in k], [k for k in keys if "loss" in k]


def learning_curve_figure(history: list[dict], title: str = "") -> Figure:
    xkey = "shots" if "shots" in history[0] else "epoch"
    xs = [h.get(xkey, i) for i, h in enumerate(history)]
    accs, losses = curve_keys(history)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in zip(accs, ("-o", "-s", "-^", "-v", "-D", "-x"), strict=False):
        ax.plot(xs, [h.get(key, np.nan) for h in history], style, label=key.replace("_", " "))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("labelled examples per class" if xkey == "shots" else "epoch")
    ax.set_ylabel("accuracy")
    if losses:
        ax2 = ax.twinx()
        for key in losses:
            ax2.plot(xs, [h.get(key, np.nan) for h in history], "--", label=key.replace("_", " "))
        ax2.set_ylabel("loss")
        ax2.legend(loc="upper right", fontsize=8)
    if accs:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "learning curve")
    fig.tight_layout()
    return fig


def embedding_png(
    *,
    before: tuple[np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray],
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
    path: Path,
    seed: int = 0,
) -> None:
    """t-SNE of source and target features before and after adaptation, coloured by
    domain (left) and by class (right; unlabelled target rows in grey)."""
    from sklearn.manifold import TSNE

    ys_before, ys_after, yt = labels
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    for row, ((Xs, Xt), ys, title) in enumerate(
        [(before, ys_before, "before"), (after, ys_after, "after")]
    ):
        X = np.vstack([Xs, Xt]).astype(np.float64)
        Z = TSNE(
            2, init="pca", random_state=seed, perplexity=min(30.0, (len(X) - 1) / 3)
        ).fit_transform(X)
        zs, zt = Z[: len(Xs)], Z[len(Xs) :]
        ax = axes[row, 0]
        ax.scatter(zs[:, 0], zs[:, 1], s=4, c="tab:blue", label="source", alpha=0.6)
        ax.scatter(zt[:, 0], zt[:, 1], s=4, c="tab:red", label="target", alpha=0.6)
        ax.set_title(f"{title} adaptation: by domain")
        ax.legend(markerscale=3)
        ax = axes[row, 1]
        n = int(max(ys.max(initial=0), yt.max(initial=0))) + 1
        cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
        ax.scatter(zs[:, 0], zs[:, 1], s=4, c=[cmap(int(c) % cmap.N) for c in ys], marker="o")
        known = yt >= 0
        ax.scatter(
            zt[known, 0],
            zt[known, 1],
            s=8,
            c=[cmap(int(c) % cmap.N) for c in yt[known]],
            marker="x",
        )
        ax.scatter(zt[~known, 0], zt[~known, 1], s=4, c="lightgrey", marker="x")
        ax.set_title(f"{title}: by class (o source, x target)")
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    save_png(fig, path)


def reliability_figure(rel: dict, title: str = "") -> Figure:
    """Reliability diagram: accuracy against mean confidence per confidence bin (bars),
    the diagonal of perfect calibration, and the bins' item counts underneath."""
    edges = np.asarray(rel["edges"])
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    count = np.asarray(rel["count"])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5, 5.5), height_ratios=[3, 1], sharex=True)
    shown = count > 0
    ax.bar(mids[shown], np.asarray(rel["accuracy"])[shown], width=width * 0.9,
           color="tab:blue", edgecolor="black", label="accuracy in bin")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    ax.set_title(title or f"reliability (ECE {rel['ece']:.3f})")
    ax2.bar(mids, count, width=width * 0.9, color="lightgrey", edgecolor="black")
    ax2.set_xlabel("confidence of the predicted class")
    ax2.set_ylabel("items")
    ax2.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def search_history_figure(trials: list[dict], title: str = "") -> Figure:
    """Cross-validated score of each search trial in order, coloured by strategy, with the
    best score so far as a step line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [t for t in trials if t.get("score") is not None]
    kinds = sorted({f"{t['strategy']} / {t['backbone']}" for t in done})
    cmap = plt.get_cmap("tab10")
    for i, k in enumerate(kinds):
        pts = [t for t in done if f"{t['strategy']} / {t['backbone']}" == k]
        ax.scatter([t["number"] for t in pts], [t["score"] for t in pts], s=18,
                   color=cmap(i % 10), label=k)  # fmt: skip
    if done:
        xs = [t["number"] for t in done]
        ax.step(xs, np.maximum.accumulate([t["score"] for t in done]), where="post",
                color="black", lw=1, label="best so far")  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel("cross-validated accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "search history")
    fig.tight_layout()
    return fig


def accuracy_ci_figure(names: list[str], acc: list[float], lo: list[float], hi: list[float],
                       title: str = "") -> Figure:  # fmt: skip
    """Runs' accuracies as points with their 95% intervals, one row a run."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    err = np.array([np.subtract(acc, lo), np.subtract(hi, acc)])
    ax.errorbar(acc, y, xerr=err, fmt="o", color="tab:blue", capsize=4)
    ax.set_yticks(y, names)
    ax.set_xlabel("test accuracy (95% interval)")
    ax.set_title(title or "accuracy")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
