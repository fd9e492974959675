"""Report figures written into run folders (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lowshot.io import atomic_path  # noqa: E402


def confusion_matrix_png(
    cm: list[list[int]], classes: list[str], path: Path, title: str = ""
) -> None:
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def learning_curve_png(history: list[dict], path: Path, title: str = "") -> None:
    """Training curve per epoch (deep strategies) or accuracy against labelled examples per
    class (linear probe): whatever x the history rows carry."""
    if not history:
        return
    xkey = "shots" if "shots" in history[0] else "epoch"
    xs = [h[xkey] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train_acc", "-o"), ("test_acc", "-s"), ("val_acc", "-^")):
        if any(key in h for h in history):
            ax.plot(xs, [h.get(key, np.nan) for h in history], style, label=key.replace("_", " "))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("labelled examples per class" if xkey == "shots" else "epoch")
    ax.set_ylabel("accuracy")
    if any("train_loss" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(
            xs,
            [h.get("train_loss", np.nan) for h in history],
            "--",
            color="grey",
            label="train loss",
        )
        ax2.set_ylabel("loss")
    ax.legend(loc="lower right")
    ax.set_title(title or "learning curve")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
