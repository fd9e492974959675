"""``lowshot auto --source S ... --unlabelled T``: choose a domain adaptation without
target labels, and ship it.

    validate -> load the source(s) and the target (its labels, if any, set aside unread)
    -> features (arrays as given, images through each candidate backbone's cache)
    -> train every candidate method (frozen features; cheapest first, while the budget
       lasts) on the labelled source and the unlabelled target
    -> EnsV: each candidate's agreement with the ensemble of all candidates on the target
    -> the most agreeing candidate is the model (``model.safetensors`` for images)
    -> scored on --test (else the target's own labels, never trained on) -> report.html

Why EnsV (:func:`lowshot.feature.selection.ensv`) rather than the per-run criteria of
``lowshot adapt --select``: across *methods* the entropy- and density-based scores
reward whichever loss sharpens predictions most (MCC, MDD), and DEV's weights are as
noisy as the source validation set is small; the ensemble of the candidates is at least
as good as the worst of them, so agreeing with it avoids the worst pick (Hu et al.,
NeurIPS 2024). It was chosen from that study, not from the benchmarks lowshot reports.

Each finished candidate is kept in ``RUN/auto/candidates/`` (its network and its target
predictions), so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.backbones import DEFAULT_BACKBONE, create_backbone
from lowshot.data.domainsets import Domain, align_classes, check_width, input_kind, load_domain
from lowshot.errors import DataError
from lowshot.evaluation.predictions import FILE as PREDICTIONS
from lowshot.evaluation.predictions import softmax, write_predictions
from lowshot.feature.selection import _entropy, ensv, snd
from lowshot.io import write_json
from lowshot.pipeline.adapt import domain_features, load_source_target, save_adapted
from lowshot.pipeline.autosearch import Budget, check_same_search, load_spent, save_spent
from lowshot.pipeline.results import RunResult, score_target
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import AutoSpec, budget_seconds
from lowshot.progress import status_line

# cheapest first, by the seconds per task of docs/benchmarks/da_office31.md and
# da_amazon.md (a cost order, not an accuracy one: the choice is EnsV's)
ORDER = ("erm", "dan", "coral", "jan", "mcc", "mdd", "dann", "cdan")
KEYS = ("sources", "unlabelled", "test", "seed", "backbones", "methods", "preprocess", "training")


@dataclasses.dataclass
class Candidate:
    """One trained method on one backbone: what the choice reads (``pool``: target
    probabilities), and what is read only after it (``test``)."""

    method: str
    backbone: str | None
    seconds: float
    pool: np.ndarray
    test: np.ndarray  # the test items, or the target's own when no --test
    state: dict[str, Any]  # the network's weights

    @property
    def key(self) -> str:
        return f"{self.backbone or 'arrays'}-{self.method}"


def run_auto_adapt(spec: AutoSpec) -> RunResult:
    """Train the candidate adaptations, choose one by EnsV, score it; see the module doc."""
    from lowshot.feature import deep_names

    spec.validate()
    check_same_search(spec, KEYS)
    budget = Budget(budget_seconds(spec.budget))
    methods = spec.methods or [m for m in ORDER if m in deep_names()] + [
        m for m in deep_names() if m not in ORDER]  # fmt: skip
    assert spec.unlabelled is not None and spec.sources is not None  # validate() made sure
    kind = input_kind([*spec.sources, spec.unlabelled] + ([spec.test] if spec.test else []))
    if kind == "arrays" and spec.backbones:
        raise DataError("--backbone: the domains are feature arrays; there is no backbone to choose.")
    S, T, E, y_e, evaluated_on = _domains(spec, kind)
    # a wrong backbone name fails here, before any training; arrays have none (key None)
    bbs = {n: create_backbone(n) for n in spec.backbones or [DEFAULT_BACKBONE]} if kind == "images" else {None: None}
    notes: list[str] = []
    if T.labelled:
        notes.append(f"{spec.unlabelled}: its labels were set aside before training; "
                     + ("they score the chosen model (transductive)." if E is None else "they are not used."))  # fmt: skip
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite) as rf:
        folder = rf.path / "auto" / "candidates" if rf is not None else None
        if rf is not None:
            rf.write_config({**spec.to_dict(), "classes": S.classes, "n_source": len(S),
                             "n_target": len(T), "modality": "image" if kind == "images" else "arrays"})  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            budget.before = load_spent(folder)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        with status_line("auto", spec.progress) as show:
            cands, feats = _train_all(spec, methods, bbs, S, T, E, folder, budget, notes, show)
        if len(cands) == 1 and len(methods) * len(bbs) > 1:
            notes.append(f"the budget allowed a single candidate: {cands[0].method}, trained first "
                         "as the cheapest, is the model.")  # fmt: skip
        scores = ensv([c.pool for c in cands])
        best = int(np.argmax(scores))  # ties: the earlier, cheaper candidate
        pick = cands[best]
        why = (f"{pick.method}" + (f" on {pick.backbone}" if pick.backbone else "")
               + f" agrees most with the ensemble of all {len(cands)} candidates on the unlabelled "
               f"target ({100 * scores[best]:.1f}% of its {len(T)} items; EnsV). No target label was read.")  # fmt: skip
        log.info("auto chose %s", why)
        rows = _rows(cands, scores, best, y_e)
        search = {"setting": "unsupervised domain adaptation", "criterion": "ensv", "why": why,
                  "notes": notes, "candidates": rows,
                  "chosen": {"method": pick.method, "backbone": pick.backbone, "params": {}},
                  "budget_seconds": budget.total, "search_seconds": round(time.perf_counter() - t0, 2),
                  "spent_seconds": round(budget.spent, 1)}  # fmt: skip
        if y_e is not None:
            ens = np.mean([c.test for c in cands], axis=0)
            search["ensemble_test_accuracy"] = float((ens.argmax(1) == y_e).mean())
        out = RunResult("auto", {
            "method": pick.method, "backbone": pick.backbone, "mode": "frozen",
            "n_source": len(S), "n_target": len(T), "classes": S.classes,
            "evaluated_on": evaluated_on, "transductive": E is None, "target_accuracy": None,
            "auto": search})  # fmt: skip
        if y_e is not None:
            score_target(out, pick.test, y_e, S.classes)
        net = _net(pick, feats[pick.backbone][0].shape[1], len(S.classes), spec)
        if pick.backbone is not None:
            out.metrics.update(_measure(net, feats[pick.backbone], S.labels, rf, spec.seed))
        out.timings["search"] = round(time.perf_counter() - t0, 2)
        if rf is not None:
            _write(rf, out, pick, net, bbs, S, E if E is not None else T, y_e)
    return out


def _train_all(spec: AutoSpec, methods: list[str], bbs: dict, S: Domain, T: Domain, E: Domain | None,
               folder: Path | None, budget: Budget, notes: list[str], show: Any) -> tuple[list[Candidate], dict]:  # fmt: skip
    """Every candidate (backbone-major, cheapest method first) that an earlier attempt
    kept or the budget allows; and each backbone's (source, target, test) features."""
    blind = dataclasses.replace(T, labels=np.full(len(T), -1, dtype=np.int64), labelled=False)
    cands: list[Candidate] = []
    feats: dict[str | None, tuple] = {}
    for name, bb in bbs.items():
        show(f"features of {len(S) + len(T)} source and target items ({name or 'arrays'})", budget)
        Fs, Ft = domain_features(S, bb, spec), domain_features(T, bb, spec)
        Fe = domain_features(E, bb, spec) if E is not None else Ft
        feats[name] = (Fs, Ft, Fe)
        for m in methods:
            c = _load(folder, m, name)
            if c is None:
                if cands and budget.left() < max(x.seconds for x in cands):
                    notes.append(f"{m} on {name or 'the arrays'} not trained: the budget had "
                                 f"{max(budget.left(), 0):.0f} s left, less than a candidate takes.")  # fmt: skip
                    continue
                show(f"training {m} on {name or 'arrays'} ({len(cands)} done, best picked at the end)", budget)
                c = _train(spec, m, name, S, blind, Fs, Ft, Fe, bb)
                _store(folder, c, budget)
            cands.append(c)
    return cands, feats


def _write(rf: Any, out: RunResult, pick: Candidate, net: Any, bbs: dict, S: Domain, scored: Domain,
           y_e: np.ndarray | None) -> None:  # fmt: skip
    """The run folder: the search, predictions, the model (images), report.html."""
    write_json(rf.file("auto/search.json"), out.metrics["auto"])
    out.artefacts.append("auto/search.json")
    if (rf.path / "embedding.png").is_file():
        out.artefacts.append("embedding.png")
    if out.probabilities is not None and y_e is not None:
        items = [str(f) for f in scored.files] if scored.files else [f"row {i}" for i in range(len(scored))]
        write_predictions(rf.file(PREDICTIONS), items, y_e, out.probabilities, S.classes)
        out.artefacts.append(PREDICTIONS)
    if pick.backbone is not None:
        save_adapted(net, bbs[pick.backbone], "frozen", 1, S.classes, rf.path, pick.method, job="auto")
        out.artefacts += ["model.safetensors", "model.json"]
    out.run_dir = rf.finish(out.to_json())


def _domains(spec: AutoSpec, kind: str) -> tuple:
    """Source, target, test domain, the labels scored on, and what they are."""
    assert spec.sources is not None and spec.unlabelled is not None
    S, T, y_t = load_source_target(spec.sources, spec.unlabelled, kind)
    if spec.test is None:
        on = f"{spec.unlabelled} (its labels used only here)" if T.labelled else None
        return S, T, None, (y_t if T.labelled else None), on
    E = load_domain([spec.test], kind, "target")
    y_e = align_classes(E, S.classes, spec.test)
    if kind == "arrays":
        check_width(S, E, spec.sources[0], spec.test)  # type: ignore[index]
    return S, T, E, (y_e if E.labelled else None), spec.test


def _train(spec: AutoSpec, method: str, backbone: str | None, S: Domain, blind: Domain,
           Fs: np.ndarray, Ft: np.ndarray, Fe: np.ndarray, bb: Any) -> Candidate:  # fmt: skip
    import torch

    from lowshot.feature.deep import embed
    from lowshot.feature.runner import DeepSettings, run_deep, tensors

    st = DeepSettings(method=method, seed=spec.seed, device=spec.device, progress=False,
                      **spec.training)  # fmt: skip
    t0 = time.perf_counter()
    res, _ = run_deep(S, blind, Fs, Ft, blind.labels, np.zeros(0, dtype=np.int64), bb, st)
    cpu = torch.device("cpu")
    res.net.to(cpu)
    pool = softmax(embed(res.net, tensors(Ft), cpu)[1])
    test = pool if Fe is Ft else softmax(embed(res.net, tensors(Fe), cpu)[1])  # no --test: the target
    seconds = round(time.perf_counter() - t0, 2)
    log.info("auto: %s on %s trained in %.1f s", method, backbone or "arrays", seconds)
    state = {k: v.detach().cpu().contiguous() for k, v in res.net.state_dict().items()}
    return Candidate(method, backbone, seconds, pool, test, state)


def _net(c: Candidate, n_in: int, n_classes: int, spec: AutoSpec) -> Any:
    from torch import nn

    from lowshot.nets import AdaptNet
    from lowshot.training.settings import NetTraining

    d = NetTraining(**spec.training)
    net = AdaptNet(nn.Identity(), n_in, n_classes, d.bottleneck, d.dropout)
    net.load_state_dict(c.state)
    return net.eval()


def _measure(net: Any, feats: tuple, ys: np.ndarray, rf: Any, seed: int) -> dict:
    """Domain distances and the t-SNE plot of the chosen network, as ``adapt`` draws them."""
    from lowshot.feature.runner import measure, tensors

    Fs, Ft, _ = feats
    inputs = SimpleNamespace(source_rows=np.arange(len(Fs)), eval_source=tensors(Fs), eval_target=tensors(Ft))
    return measure(SimpleNamespace(net=net), inputs, Fs, Ft, ys, np.zeros(len(Ft), dtype=np.int64),
                   rf.path if rf is not None else None, seed)  # fmt: skip


def _rows(cands: list[Candidate], scores: np.ndarray, best: int, y_e: np.ndarray | None) -> list[dict]:
    """The candidates as metrics.json lists them. ``test_accuracy`` is filled in after the
    choice, for the report and the benchmark; nothing above reads it."""
    rows = []
    for i, c in enumerate(cands):
        r = {"method": c.method, "backbone": c.backbone, "ensv": round(float(scores[i]), 4),
             "entropy": round(float(_entropy(c.pool).mean()), 4), "snd": round(snd(c.pool), 4),
             "seconds": c.seconds, "chosen": i == best}  # fmt: skip
        if y_e is not None:
            r["test_accuracy"] = float((c.test.argmax(1) == y_e).mean())
        rows.append(r)
    return rows


def _store(folder: Path | None, c: Candidate, budget: Budget) -> None:
    """Keep a finished candidate (weights, predictions, seconds) for a resumed search."""
    if folder is None:
        return
    from safetensors.numpy import save_file as save_arrays
    from safetensors.torch import save_file

    from lowshot.io import atomic_path

    with atomic_path(folder / f"{c.key}.net.safetensors") as tmp:
        save_file(c.state, str(tmp))
    arrays = {"pool": c.pool.astype(np.float32), "test": c.test.astype(np.float32)}
    with atomic_path(folder / f"{c.key}.predictions.safetensors") as tmp:
        save_arrays(arrays, str(tmp), metadata={"seconds": str(c.seconds)})
    save_spent(folder, budget)


def _load(folder: Path | None, method: str, backbone: str | None) -> Candidate | None:
    """A candidate an earlier attempt finished, or None (neither file may be missing)."""
    if folder is None:
        return None
    key = f"{backbone or 'arrays'}-{method}"
    net, pred = folder / f"{key}.net.safetensors", folder / f"{key}.predictions.safetensors"
    if not (net.is_file() and pred.is_file()):
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(pred), framework="np") as f:
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        seconds = float((f.metadata() or {}).get("seconds", 0.0))
    log.info("auto: %s on %s kept from the interrupted search", method, backbone or "arrays")
    return Candidate(method, backbone, seconds, arrays["pool"].astype(np.float64),
                     arrays["test"].astype(np.float64), load_file(str(net)))  # fmt: skip
