"""`lowshot fewshot predict|eval` and `meta-train`: N-way K-shot episodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lowshot.cli._app import app, comma_list, console, fewshot_app, parse_params, setup_logging
from lowshot.cli.options import (
    Device,
    Devices,
    Json,
    NumNodes,
    Overwrite,
    Parallel,
    Precision,
    Seed,
)
from lowshot.pipeline.specs import MetaTrainSpec

_TtaOpt = Annotated[
    int,
    typer.Option(
        help="With a meta-train --run on pixels: average each image's embedding over itself "
        "and this many random affine distortions (test-time augmentation; 8 adds ~2.7 points "
        "on 20-way one-shot Omniglot, 9x the embedding time). 0: off."
    ),
]


@fewshot_app.command("predict")
def fewshot_predict_cmd(
    support: Annotated[
        Path, typer.Option(help="Folder with one sub-folder per class, 1-5 images each.")
    ],
    query: Annotated[
        Path,
        typer.Option(help="Images to classify (a folder; class folders also report accuracy)."),
    ],
    method: Annotated[str, typer.Option(help="simpleshot or label-propagation.")] = "simpleshot",
    backbone: Annotated[str, typer.Option(help="Backbone whose features are compared.")] = "lite0",
    run: Annotated[
        Path | None,
        typer.Option(
            help="A `lowshot fit` run (its backbone's features) or a `lowshot meta-train` run "
            "(its learner classifies)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSON file: query file -> predicted class.")
    ] = Path("predictions.json"),
    tta: _TtaOpt = 0,
) -> None:
    """Classify query images from a handful of support images per class; no training run."""
    setup_logging(False)
    from lowshot.pipeline.fewshot import fewshot_predict

    r = fewshot_predict(support, query, method=method, backbone=backbone, run=run, out=out, views=tta)
    console.print(f"{len(r['predictions'])} query images, {len(r['classes'])} classes -> {out}")
    if r["accuracy"] is not None:
        console.print(f"accuracy: {r['accuracy']:.4f}")


@fewshot_app.command("eval")
def fewshot_eval_cmd(
    data: Annotated[
        str,
        typer.Option(
            help="Labelled data: images (class folders, a list, office31:webcam), text "
            "(sentences:CR, a csv/jsonl table) or a feature array (svmlight, npz, mat)."
        ),
    ],
    query_data: Annotated[
        str | None,
        typer.Option(
            help="Draw the queries from this second labelled set with the same class names "
            "(cross-domain episodes, e.g. support office31:amazon, query office31:webcam)."
        ),
    ] = None,
    ways: Annotated[int, typer.Option(help="Classes per episode.")] = 5,
    shots: Annotated[str, typer.Option(help="Support examples per class (comma list).")] = "1,5",
    queries: Annotated[int, typer.Option(help="Query examples per class.")] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes (at least 600 for a CI).")] = 1000,
    method: Annotated[
        str, typer.Option(help="Training-free method: simpleshot or label-propagation.")
    ] = "simpleshot",
    backbone: Annotated[str, typer.Option(help="Backbone (features cached).")] = "lite0",
    seed: Annotated[int, typer.Option(help="Episode seed.")] = 0,
    run: Annotated[
        Path | None,
        typer.Option(help="Classify with a `lowshot meta-train` run's learner instead."),
    ] = None,
    exclude: Annotated[
        str | None,
        typer.Option(
            help="Drop classes whose name starts with these (comma list), e.g. Greek,Latin."
        ),
    ] = None,
    within_groups: Annotated[
        bool,
        typer.Option(
            help="Each episode's classes from one group of <group>/<class> folders (20 "
            "characters of one Omniglot alphabet: Lake et al.'s within-alphabet task)."
        ),
    ] = False,
    tta: _TtaOpt = 0,
    json_out: Json = False,
) -> None:
    """Mean accuracy and 95% confidence interval over seeded N-way K-shot episodes,
    on cached embeddings."""
    setup_logging(json_out)
    from lowshot.pipeline.fewshot import fewshot_eval

    shot_list = comma_list(shots, "--shots", int, "whole numbers")
    rows = fewshot_eval(
        data, query_data=query_data, ways=ways, shots=shot_list, queries=queries,
        episodes=episodes, method=method, backbone=backbone, seed=seed, run=run,
        exclude=exclude, within_groups=within_groups, progress=not json_out, views=tta,
    )  # fmt: skip
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        console.print(
            f"{r['method']} {r['ways']}-way {r['shots']}-shot: {100 * r['accuracy']:.2f} ± "
            f"{100 * r['ci95']:.2f} % (95% CI, {r['episodes']} episodes, {r['seconds']:.1f} s)"
        )


_DataOpt = Annotated[
    str,
    typer.Option(
        help="Labelled data of the training classes (omniglot:..., folders, text, arrays)."
    ),
]
_MethodOpt = Annotated[
    str,
    typer.Option(help="protonet, matchingnet, relationnet, gnn, maml, fomaml, anil or reptile."),
]
_EncoderOpt = Annotated[
    str,
    typer.Option(help="conv4 or resnet12 (from scratch on pixels), mlp (on --backbone features)."),
]
_BackboneOpt = Annotated[
    str | None,
    typer.Option(help="With --encoder mlp: the pretrained backbone whose features it reads."),
]
_LrOpt = Annotated[
    float | None, typer.Option(help="Outer learning rate (default 1e-3; reptile 1.0).")
]
_ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Method hyper-parameter NAME=VALUE, e.g. -p inner_steps=1."),
]
_RotationsOpt = Annotated[
    bool, typer.Option(help="Rotations by 90 degrees as extra classes (Omniglot).")
]
_ResumeOpt = Annotated[bool, typer.Option(help="Continue an interrupted run from its last epoch.")]


@app.command("meta-train")
def meta_train_cmd(
    data: _DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    method: _MethodOpt = "protonet",
    encoder: _EncoderOpt = "conv4",
    backbone: _BackboneOpt = None,
    ways: Annotated[int, typer.Option(help="Classes per training episode.")] = 5,
    shots: Annotated[int, typer.Option(help="Support examples per class.")] = 1,
    queries: Annotated[
        int | None, typer.Option(help="Query examples per class (default 15 at 5 ways, 5 beyond).")
    ] = None,
    episodes: Annotated[int, typer.Option(help="Episodes per epoch.")] = 100,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 20,
    meta_batch: Annotated[int, typer.Option(help="Episodes averaged per update.")] = 1,
    lr: _LrOpt = None,
    param: _ParamOpt = None,
    image_size: Annotated[int, typer.Option(help="Side of the square input images.")] = 28,
    channels: Annotated[int, typer.Option(help="1 (grey) or 3 (RGB).")] = 1,
    rotations: _RotationsOpt = True,
    invert: Annotated[
        str,
        typer.Option(
            help="auto: every image to a dark background (Omniglot's dark strokes on white "
            "become bright on black, whatever polarity a file has); yes: invert all; no: none."
        ),
    ] = "auto",
    augment: Annotated[
        bool, typer.Option(help="Random affine distortions of every training image (pixels).")
    ] = True,
    within_groups: Annotated[
        str,
        typer.Option(
            help="Each training episode's classes from one group of <group>/<class> folders "
            "(an Omniglot alphabet): auto (when a group has --ways classes), yes or no."
        ),
    ] = "auto",
    seed: Seed = 0,
    devices: Devices = 1,
    num_nodes: NumNodes = 1,
    precision: Precision = "auto",
    parallel: Parallel = "auto",
    device: Device = "auto",
    resume: _ResumeOpt = False,
    overwrite: Overwrite = False,
) -> None:
    """Meta-train a learner on N-way K-shot episodes; evaluate it with
    `lowshot fewshot eval --run OUT --data TEST`."""
    setup_logging(False)
    from lowshot import api  # loaded when a command runs, not for --help

    spec = MetaTrainSpec(
        data=data, method=method, encoder=encoder, backbone=backbone, ways=ways, shots=shots,
        queries=queries, episodes_per_epoch=episodes, epochs=epochs, meta_batch=meta_batch, lr=lr,
        params=parse_params(param), image_size=image_size, channels=channels,
        rotations=rotations, invert=invert, augment=augment,
        within_groups={"yes": True, "no": False}.get(within_groups, within_groups), seed=seed, device=device,
        devices=devices, num_nodes=num_nodes, precision=precision, parallel=parallel, out=out, resume=resume,
        overwrite=overwrite,
    )  # fmt: skip
    info = api.meta_train(spec)
    last = info["history"][-1] if info["history"] else {"train_episode_acc": float("nan")}
    console.print(
        f"{method}: {info['n_classes']} training classes, {epochs} x {episodes} episodes in "
        f"{info['train_seconds']:.0f} s; last epoch episode accuracy {last['train_episode_acc']:.3f}"
    )
    console.print(f"run folder: {out}")
