"""One place that picks the network for a data set: an image backbone or a sentence encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lowshot._log import log
from lowshot.backbones import DEFAULT_BACKBONE, create_backbone
from lowshot.backbones.text import create_text_encoder, is_text_backbone
from lowshot.errors import ConfigError


def backbone_for(
    data: Any, name: str | None = None, *, weights: str | Path | None = None, seed: int = 0
) -> Any:
    """The backbone ``name`` for ``data`` (anything with ``modality``); ``None`` is the
    default for the data: ``lite0`` for images, the sentence encoder ``minilm``
    (all-MiniLM-L6-v2) for text. The default image backbone named for text data (every
    command's ``--backbone`` defaults to it) also means minilm; any other backbone of the
    other modality is an error naming ``--backbone``."""
    if name is not None and "+" in name and any(is_text_backbone(p.strip()) for p in name.split("+")):
        raise ConfigError(
            f"--backbone {name}: only image backbones combine; a sentence encoder is used alone."
        )
    text = getattr(data, "modality", "image") == "text"
    if name is None or (text and name == DEFAULT_BACKBONE):
        name = "minilm" if text else DEFAULT_BACKBONE
        log.info("%s data: backbone %s", "text" if text else "image", name)
    if text and not is_text_backbone(name):
        raise ConfigError(
            f"--backbone: {name} is an image backbone, but the data are text; use minilm."
        )
    if text:
        return create_text_encoder(name)
    if is_text_backbone(name):
        raise ConfigError(
            f"--backbone: {name} encodes text, but the data are images; use an image backbone."
        )
    return create_backbone(name, pretrained=True, weights=weights, seed=seed)
