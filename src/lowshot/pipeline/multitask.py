"""The ``multitask`` job: a :class:`MultitaskSpec` in, a run folder and a result out.

validate the spec -> load the task tables -> backbone -> open the run folder,
write config.json -> train together and each alone -> model -> metrics.json
"""

from __future__ import annotations

import dataclasses

from lowshot.backbones.select import backbone_for
from lowshot.cache import default_cache
from lowshot.multitask.run import MultitaskSettings, load_tasks, save_multitask, train_multitask
from lowshot.multitask.weighting import make_weighting
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import MultitaskSpec


def run_multitask(spec: MultitaskSpec) -> RunResult:
    spec.validate()
    make_weighting(spec.weighting, ["classification"])  # an unknown name fails before any work
    train, test = load_tasks(
        spec.tasks, table=spec.table, label_columns=spec.label_columns,
        input_column=spec.input_column, regression=spec.regression, shots=spec.shots,
        seed=spec.seed, mask_fraction=spec.mask_fraction,
    )  # fmt: skip
    bb = backbone_for(train, spec.backbone, seed=spec.seed)
    names = {f.name for f in dataclasses.fields(MultitaskSettings)}
    st = MultitaskSettings(**{k: v for k, v in spec.to_dict().items() if k in names})
    with maybe_run(spec.out, resume=False, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config({**spec.to_dict(), "backbone_weights_id": bb.weights_id})
        outcome = train_multitask(
            train, test, bb, st, cache=default_cache(spec.cache_dir), progress=spec.progress
        )
        out = RunResult("multitask", outcome.metrics, {"wall": outcome.metrics["seconds"]})
        if rf is not None:
            save_multitask(outcome.net, train.tasks, bb, train.modality, rf.path,
                           outcome.train_settings, outcome.body)  # fmt: skip
            out.artefacts += ["model.safetensors", "model.json", "log.txt"]
            out.run_dir = rf.finish(out.to_json())
    return out
