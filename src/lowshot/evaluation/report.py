"""``report.html``: one self-contained page per run folder, and side-by-side comparisons.

The page is built from what the run folder holds (``config.json``, ``metrics.json``,
``predictions.csv``, ``embedding.png``), so ``lowshot report RUN`` can rebuild it at any
time. Figures are drawn with matplotlib and embedded as base64 PNGs, image thumbnails as
base64 JPEGs, tables are HTML and the style sheet is inline: the file opens from disk with
no network and no script.

The accuracy's 95% interval is Wilson's score interval for a binomial proportion
(Wilson, JASA 1927), over the test items; the calibration error is described in
:mod:`lowshot.evaluation.predictions`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lowshot.evaluation.predictions import (
    FILE as PREDICTIONS,
)
from lowshot.evaluation.predictions import (
    Predictions,
    confused_pairs,
    read_predictions,
    reliability,
)
from lowshot.io import write_text

FILE = "report.html"
# headline numbers, in the order shown, with how they read
HEADLINE = {
    "accuracy": "accuracy", "target_accuracy": "target accuracy",
    "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
    "baseline_accuracy": "no-transfer baseline", "transfer_gain": "transfer gain",
    "student_accuracy": "student accuracy", "teacher_accuracy": "teacher accuracy",
    "episode_accuracy": "episode accuracy", "delta_mtl": "Δ multi-task (%)",
}  # fmt: skip
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:14px}main{padding:10px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px}table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #dde1e6;border-radius:8px;
padding:10px 16px;min-width:150px;background:#fafbfc}.card b{display:block;font-size:24px}
.card span{font-size:12px;color:#57606a}img.fig{max-width:100%;height:auto}
.thumbs img{height:88px;margin:2px;border:1px solid #ccc}pre{background:#f0f2f5;padding:8px;
overflow-x:auto;font-size:12px}.warn{color:#9a3412}.pair{margin:8px 0}.quote{font-size:13px;
margin:2px 0 2px 12px;color:#333}.best{background:#e7f5e9}
"""


def wilson(correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval of the proportion ``correct / n``."""
    from scipy.stats import binomtest

    if n <= 0:
        return math.nan, math.nan
    ci = binomtest(int(correct), int(n)).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _read(run: Path, name: str) -> dict[str, Any]:
    p = run / name
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _esc(v)
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return _esc(v)


def _png(data: bytes, alt: str) -> str:
    return f'<img class="fig" alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(header: list[str], rows: list[list[Any]], best: int | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="best"' if i == best else ""
        cells = "".join(
            f'<td class="num">{_fmt(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{_esc(c) if not str(c).startswith('<') else c}</td>"
            for c in r
        )  # fmt: skip
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_esc(title)}</h2>{body}</section>'


def _figure(fig: Any, alt: str) -> str:
    from lowshot.evaluation.plots import save_png

    return _png(save_png(fig, dpi=90), alt)


def _plot(run: Path, name: str, draw: Any, alt: str) -> str:
    """The run's own ``plots/NAME.png`` (drawn from the same metrics when the run
    finished), else drawn now."""
    p = run / "plots" / f"{name}.png"
    return _png(p.read_bytes(), alt) if p.is_file() else _figure(draw(), alt)


def _thumb(item: str, size: int = 88) -> str:
    """A small JPEG of an image file, inline; the path as text when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(item) as src:
            im = src.convert("RGB")
        im.thumbnail((size * 2, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    except (OSError, ValueError):
        return f"<code>{_esc(Path(item).name)}</code>"
    b64 = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{_esc(Path(item).name)}" title="{_esc(item)}" src="data:image/jpeg;base64,{b64}">'


def _primary(m: dict) -> tuple[str, float] | None:
    for key in ("accuracy", "target_accuracy", "student_accuracy", "episode_accuracy"):
        if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool):
            return key, float(m[key])
    return None


def headline(m: dict, preds: Predictions | None) -> dict[str, Any]:
    """The numbers at the top of the page: the primary accuracy with its 95% interval,
    the other known scores, and the calibration error when predictions were written."""
    out: dict[str, Any] = {}
    prim = _primary(m)
    n = len(preds.items) if preds is not None else m.get("n_test") or m.get("n_target_test")
    if prim is not None:
        key, acc = prim
        out[key] = acc
        if isinstance(n, int) and n > 0 and key != "episode_accuracy":
            out["ci95"] = wilson(round(acc * n), n)
            out["n"] = n
    for key in HEADLINE:
        v = m.get(key)
        if key not in out and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    if preds is not None and len(preds.items):
        out["ece"] = reliability(preds.confidence, preds.correct)["ece"]
    if "baseline_accuracy" in out and m.get("baseline_model"):
        out["baseline_model"] = m["baseline_model"]  # which no-transfer model, under its card
    return out


def _cards(h: dict[str, Any]) -> str:
    cards = []
    for key, v in h.items():
        if key in ("ci95", "n", "baseline_model"):
            continue
        label = HEADLINE.get(key, "calibration error (ECE)" if key == "ece" else key)
        sub = ""
        if key == _first_acc(h) and "ci95" in h:
            lo, hi = h["ci95"]
            sub = f"95% CI {lo:.3f}–{hi:.3f} (n = {h['n']})"
        if key == "baseline_accuracy":
            sub = h.get("baseline_model", "")
        val = f"{v:+.3f}" if key == "transfer_gain" else f"{v:.3f}"
        cards.append(f'<div class="card"><b>{val}</b><span>{_esc(label)}<br>{_esc(sub)}</span></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _first_acc(h: dict) -> str | None:
    return next((k for k in ("accuracy", "target_accuracy", "student_accuracy") if k in h), None)


def _overview(cfg: dict, m: dict) -> str:
    keys = ("job", "strategy", "method", "backbone", "shots", "seed", "train", "test", "sources",
            "target", "target_test", "teacher", "data")  # fmt: skip
    rows = [[k, _scalar(cfg.get(k, m.get(k)))] for k in keys if cfg.get(k, m.get(k)) not in (None, [], "")]
    for k in ("n_train", "n_test", "n_source", "n_target", "classes"):
        v = m.get(k, cfg.get(k))
        if v is not None:
            rows.append([k, len(v) if k == "classes" else v])
    return _table(["setting", "value"], rows)


def _scalar(v: Any) -> Any:
    return ", ".join(map(str, v)) if isinstance(v, list) else v


def _per_class(m: dict) -> str:
    rows = [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in m["per_class"]]
    rows.sort(key=lambda r: r[3])
    return "<p>Worst F1 first.</p>" + _table(["class", "precision", "recall", "F1", "support"], rows)


def _confused(m: dict, preds: Predictions | None, classes: list[str], text: bool,
              arrays: bool = False) -> str:  # fmt: skip
    pairs = confused_pairs(m["confusion_matrix"], classes)
    if not pairs:
        return "<p>No test item was misclassified.</p>"
    parts = []
    for p in pairs:
        head = f"<b>{_esc(p['true'])}</b> taken for <b>{_esc(p['predicted'])}</b>: {p['count']} of {p['of']}"
        ex = ""
        if preds is not None and not arrays:
            items = [it for it, t, q in zip(preds.items, preds.true, preds.predicted, strict=True)
                     if t == p["true"] and q == p["predicted"]][:4]  # fmt: skip
            if text:
                ex = "".join(f'<p class="quote">“{_esc(it[:240])}”</p>' for it in items)
            else:
                ex = f'<div class="thumbs">{"".join(_thumb(it) for it in items)}</div>'
        parts.append(f'<div class="pair">{head}{ex}</div>')
    return "".join(parts)


def _auto(m: dict) -> str:
    from lowshot.evaluation.plots import search_history_figure

    a = m["auto"]
    body = f"<p>{_esc(a.get('why', ''))}</p>"
    for note in a.get("notes", []):
        body += f'<p class="warn">{_esc(note)}</p>'
    if a.get("backbones"):
        rows = [[b["backbone"], b.get("logme"), b.get("seconds"), "yes" if b.get("shortlisted") else "no"]
                for b in a["backbones"]]  # fmt: skip
        body += "<h3>Backbones (LogME on the labelled training data)</h3>"
        body += _table(["backbone", "LogME", "seconds", "shortlisted"], rows)
    if a.get("candidates"):  # auto --source: adaptation methods chosen by EnsV
        cols = ["method", "backbone", "EnsV (agreement with the ensemble)", "mean entropy", "SND",
                "seconds", "test accuracy (after the choice)"]  # fmt: skip
        rows = [[c["method"], c.get("backbone") or "arrays", c["ensv"], c.get("entropy"), c.get("snd"),
                 c.get("seconds"), c.get("test_accuracy", "")] for c in a["candidates"]]  # fmt: skip
        best = next((i for i, c in enumerate(a["candidates"]) if c.get("chosen")), None)
        body += "<h3>Candidates (chosen one shaded)</h3>" + _table(cols, rows, best=best)
        if a.get("ensemble_test_accuracy") is not None:
            body += (f"<p>The ensemble of all candidates scores {a['ensemble_test_accuracy']:.4f} on the "
                     "test items; the test accuracies above were read after the choice, never by it.</p>")  # fmt: skip
    trials = a.get("trials", [])
    if trials:
        body += _figure(search_history_figure(trials), "search history")
        cols = ["trial", "strategy", "backbone", "parameters", "CV accuracy", "std", "folds",
                "seconds", "state", "note"]  # fmt: skip

        def row(t: dict) -> list:
            return [t["number"], t["strategy"], t["backbone"], _params(t.get("params", {})),
                    t.get("score"), t.get("score_std"), t.get("folds_done"), t.get("seconds"),
                    t["state"], t.get("note", "")]  # fmt: skip

        top = sorted(trials, key=lambda t: -(t.get("score") or -1))[:10]
        best = next((i for i, t in enumerate(top) if t["number"] == a.get("best_trial")), None)
        body += "<h3>The ten best candidates (chosen one shaded)</h3>" + _table(cols, [row(t) for t in top], best=best)
        body += (f"<details><summary>all {len(trials)} trials in order</summary>"
                 + _table(cols, [row(t) for t in trials]) + "</details>")  # fmt: skip
    return body


def _calibration_text(rel: dict, preds: Predictions) -> str:
    conf, acc = float(preds.confidence.mean()), float(preds.correct.mean())
    side = "under-confident (it is right more often than it claims)" if conf < acc - 0.05 else \
        "over-confident (it claims more than it gets right)" if conf > acc + 0.05 else "about right"  # fmt: skip
    return (f"<p>Expected calibration error {rel['ece']:.3f} over {len(preds.items)} test items "
            f"(10 bins). Mean confidence {conf:.3f} against accuracy {acc:.3f}: the model's "
            f"probabilities are {side}. The ranking of classes, and so the accuracy, does not "
            "depend on it.</p>")  # fmt: skip


def _deployment(run: Path, m: dict) -> str:
    """Each artefact side by side: the distilled student beside its teacher (a distill
    run), and the run's ONNX exports beside PyTorch (after ``lowshot export``)."""
    body = ""
    sp = m.get("speed")
    if isinstance(sp, dict) and {"teacher", "student"} <= set(sp):
        rows = [[who, sp[who].get("mb"), sp[who].get("image_size"), sp[who].get("latency_ms"),
                 sp[who].get("throughput"), acc]
                for who, acc in (("teacher", m.get("teacher_accuracy")), ("student", m.get("accuracy")))]  # fmt: skip
        body += "<h3>Teacher and student (PyTorch, this machine)</h3>" + _table(
            ["model", "MB", "input px", "batch-1 latency ms", "images/s at batch 32", "test accuracy"], rows)  # fmt: skip
        if m.get("speedup"):
            agree = m.get("agreement_with_teacher")
            body += (f"<p>The student runs {m['speedup']:.1f}x the teacher's throughput"
                     + (f" and agrees with it on {100 * agree:.1f}% of the test items" if agree is not None else "")
                     + ".</p>")  # fmt: skip
    ex = _read(run, "export.json")
    if ex.get("fp32"):
        model = run / "model.safetensors"
        rows = []
        first = ex["fp32"].get("check") or {}
        if first:
            rows.append(["PyTorch (the run's model)", model.stat().st_size / 2**20 if model.is_file() else "",
                         first["items"] / max(first["seconds_torch"], 1e-9), 1.0, 0.0, first.get("accuracy_torch", "")])  # fmt: skip
        for kind in ("fp32", "int8"):
            r = ex.get(kind)
            if not r:
                continue
            c = r.get("check") or {}
            rows.append([f"ONNX Runtime {kind} ({Path(r['file']).name})", r["mb"],
                         c["items"] / max(c["seconds_onnx"], 1e-9) if c else "", c.get("top1_agreement", ""),
                         c.get("max_logit_difference", ""), c.get("accuracy_onnx", "")])  # fmt: skip
        n = first.get("items", 0)
        body += (f"<h3>Exports (lowshot export, opset {ex.get('opset')})</h3>"
                 + _table(["artefact", "MB", "items/s", "top-1 agreement with PyTorch", "max logit difference",
                           f"accuracy on {n} test items"], rows)
                 + "<p>Items per second over the checked test items, preparation excluded; "
                   "`python benchmarks/deployment.py` measures latency and throughput carefully.</p>")  # fmt: skip
    return body


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def _reproduce(cfg: dict, run: Path) -> str:
    cmd = cfg.get("command") or f"lowshot rerun {run}"
    env = cfg.get("environment") or cfg.get("machine") or {}
    rows = [[k, v] for k, v in env.items()]
    body = f"<p>The command that made this run:</p><pre>{_esc(cmd)}</pre>"
    body += f"<p>Replay it from its settings: <code>lowshot rerun {_esc(run)} --out NEW_RUN</code>.</p>"
    if rows:
        body += _table(["environment", "value"], rows)
    body += "<details><summary>config.json</summary><pre>"
    body += _esc(json.dumps(cfg, indent=1, default=str)[:20000]) + "</pre></details>"
    return body


def _numbers(m: dict) -> str:
    rows = [[k, v] for k, v in m.items() if isinstance(v, (int, float, str, bool)) and k not in HEADLINE]
    return "<details open><summary>every number in metrics.json</summary>" + _table(["metric", "value"], rows) + "</details>"


def build_report(run: str | Path) -> str:
    """The HTML page for one run folder."""
    from lowshot.evaluation.plots import (
        confusion_matrix_figure,
        curve_keys,
        learning_curve_figure,
        reliability_figure,
    )

    run = Path(run)
    cfg, m = _read(run, "config.json"), _read(run, "metrics.json")
    preds = read_predictions(run / PREDICTIONS)
    job = cfg.get("job") or m.get("job") or "run"
    classes = cfg.get("classes") or m.get("classes") or []
    text = cfg.get("modality") == "text" or (preds is not None and bool(preds.items)
                                             and not Path(preds.items[0]).suffix)  # fmt: skip
    h = headline(m, preds)
    what = m.get("strategy") or m.get("method") or cfg.get("strategy") or cfg.get("method") or ""
    s = [_section("headline", "Headline", _cards(h) + _overview(cfg, m))]
    if "auto" in m:
        s.append(_section("search", "How auto chose", _auto(m)))
    if m.get("history") and any(curve_keys(m["history"])):
        s.append(_section("learning-curve", "Learning curve", _plot(
            run, "learning_curve", lambda: learning_curve_figure(m["history"], what), "learning curve")))  # fmt: skip
    if m.get("confusion_matrix") and classes:
        s.append(_section("confusion", "Confusion matrix", _plot(
            run, "confusion_matrix", lambda: confusion_matrix_figure(m["confusion_matrix"], classes), "confusion matrix")))  # fmt: skip
        s.append(_section("confused", "Most confused classes",
                          _confused(m, preds, classes, text, arrays=cfg.get("modality") == "arrays")))  # fmt: skip
    if m.get("per_class"):
        s.append(_section("per-class", "Per-class scores", _per_class(m)))
    if preds is not None and len(preds.items):
        rel = reliability(preds.confidence, preds.correct)
        s.append(_section("calibration", "Calibration", _figure(reliability_figure(rel), "reliability diagram")
                          + _calibration_text(rel, preds)))  # fmt: skip
    if (run / "embedding.png").is_file():
        s.append(_section("domains", "Domains before and after adaptation",
                          _png((run / "embedding.png").read_bytes(), "t-SNE of the domains")))  # fmt: skip
    deploy = _deployment(run, m)
    if deploy:
        s.append(_section("deployment", "Deployment: size, speed and accuracy of each artefact", deploy))
    if isinstance(m.get("tasks"), dict):
        rows = [[k] + [v.get(c) for c in ("accuracy", "balanced_accuracy", "rmse")] for k, v in m["tasks"].items()]
        s.append(_section("tasks", "Tasks", _table(["task", "accuracy", "balanced accuracy", "RMSE"], rows)))
    if isinstance(m.get("candidates"), list) and m["candidates"] and isinstance(m["candidates"][0], dict):
        cols = list(m["candidates"][0])
        s.append(_section("candidates", "Candidates", _table(cols, [[_scalar(c.get(k)) for k in cols] for c in m["candidates"]])))
    s.append(_section("numbers", "All numbers", _numbers(m)))
    s.append(_section("reproduce", "Reproduce", _reproduce(cfg, run)))
    title = f"lowshot {job}: {what}".rstrip(": ")
    sub = f"{run.name} · lowshot {cfg.get('lowshot_version', '?')}"
    return _page(title, sub, "".join(s))


def _page(title: str, sub: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><header><h1>{_esc(title)}</h1><p>{_esc(sub)}</p></header><main>{body}</main></body></html>")  # fmt: skip


def write_report(run: str | Path) -> Path:
    """Build ``report.html`` inside the run folder (atomically) and return its path."""
    run = Path(run)
    write_text(run / FILE, build_report(run))
    return run / FILE


def _resolved_params(cfg: dict, m: dict) -> dict:
    """The hyper-parameters a run trained with: auto's choice, else the strategy's, with
    any left to the strategy (``None``, e.g. C by cross-validation) filled from ``info``."""
    chosen = m.get("auto", {}).get("chosen", {}).get("params")
    if chosen:
        return dict(chosen)
    got = dict(cfg.get("strategy_params") or cfg.get("params") or {})
    info = m.get("info") or {}
    return {k: info.get(k, v) if v is None else v for k, v in got.items()}


def _ci_plot(names: list[str], heads: list[dict]) -> str:
    from lowshot.evaluation.plots import accuracy_ci_figure

    keep = [(n, h) for n, h in zip(names, heads, strict=True) if "ci95" in h and _first_acc(h)]
    if not keep:
        return ""
    acc = [h[_first_acc(h)] for _, h in keep]  # type: ignore[index]
    fig = accuracy_ci_figure([n for n, _ in keep], acc, [h["ci95"][0] for _, h in keep],
                             [h["ci95"][1] for _, h in keep])  # fmt: skip
    return _figure(fig, "accuracies with their 95% intervals")


def compare_report(runs: Sequence[str | Path]) -> str:
    """One page comparing finished runs side by side: their headline numbers, per-class
    recall (when they share the classes) and, for runs scored on the same test items,
    the paired difference with McNemar's exact test."""
    from scipy.stats import binomtest

    paths = [Path(r) for r in runs]
    info = [(_read(p, "config.json"), _read(p, "metrics.json"), read_predictions(p / PREDICTIONS)) for p in paths]
    names = [p.name for p in paths]
    heads = [headline(m, pr) for _, m, pr in info]
    keys = [k for k in [*HEADLINE, "ece"] if any(k in h for h in heads)]
    rows = [["job", *[c.get("job", "?") for c, _, _ in info]],
            ["strategy / method", *[m.get("strategy") or m.get("method") or "" for _, m, _ in info]],
            ["backbone", *[m.get("backbone") or c.get("backbone") or "" for c, m, _ in info]]]  # fmt: skip
    for k in keys:
        rows.append([HEADLINE.get(k, "ECE" if k == "ece" else k), *[h.get(k, "") for h in heads]])
    rows.append(["95% CI", *[f"{h['ci95'][0]:.3f}–{h['ci95'][1]:.3f}" if "ci95" in h else "" for h in heads]])
    rows.append(["fit seconds", *[m.get("fit_seconds", "") for _, m, _ in info]])
    rows.insert(3, ["parameters", *[_params(_resolved_params(c, m)) for c, m, _ in info]])
    body = _section("headline", "Runs", _table(["", *names], rows) + _ci_plot(names, heads))
    pairs = []
    for i in range(len(info)):
        for j in range(i + 1, len(info)):
            a, b = info[i][2], info[j][2]
            if a is None or b is None or a.items != b.items:
                continue
            ca, cb = a.correct, b.correct
            only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
            p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
            pairs.append([f"{names[i]} vs {names[j]}", float(ca.mean() - cb.mean()), only_a, only_b, p])
    if pairs:
        body += _section("paired", "Paired comparison on the same test items",
                         _table(["runs", "accuracy difference", "right only in first", "right only in second",
                                 "McNemar exact p"], pairs))  # fmt: skip
    else:
        body += _section("paired", "Paired comparison", "<p>The runs were not scored on the same test items; only their numbers compare.</p>")
    pcs: list[list[dict]] = [m.get("per_class") or [] for _, m, _ in info]
    if all(pcs) and len({tuple(r["class"] for r in pc) for pc in pcs}) == 1:
        cls = [r["class"] for r in pcs[0]]
        prow = [[c, *[pc[i]["recall"] for pc in pcs]] for i, c in enumerate(cls)]
        body += _section("per-class", "Per-class recall", _table(["class", *names], prow))
    return _page("lowshot: runs compared", " · ".join(names), body)
