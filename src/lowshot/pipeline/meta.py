"""The ``meta-train`` job: a :class:`MetaTrainSpec` in, a run folder and a result out.

validate the spec -> load the episodes' data -> open (or resume) the run folder,
write config.json -> meta-train (checkpointed every epoch) -> model -> metrics.json
"""

from __future__ import annotations

from lowshot.fewshot import load_episode_data
from lowshot.fewshot.meta import meta_train
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import MetaTrainSpec


def run_meta_train(spec: MetaTrainSpec) -> RunResult:
    spec.validate()
    data = load_episode_data(spec.data)
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config(spec.to_dict())
        info = meta_train(
            data, method=spec.method, encoder=spec.encoder, backbone=spec.backbone,
            ways=spec.ways, shots=spec.shots, queries=spec.queries,
            episodes_per_epoch=spec.episodes_per_epoch, epochs=spec.epochs,
            meta_batch=spec.meta_batch, lr=spec.lr, params=dict(spec.params),
            image_size=spec.image_size, channels=spec.channels, rotations=spec.rotations,
            invert=spec.invert, augment=spec.augment,
            within_groups=spec.within_groups, seed=spec.seed,
            device=spec.device,
            out=rf.path if rf is not None else None, resume=spec.resume, progress=spec.progress,
        )  # fmt: skip
        metrics = {k: v for k, v in info.items() if k != "learner"}
        out = RunResult("meta-train", metrics, {"train": info["train_seconds"]})
        if rf is not None:
            out.artefacts += ["model.safetensors", "model.json", "log.txt", "checkpoints/last.ckpt"]
            out.run_dir = rf.finish(out.to_json())
    return out
