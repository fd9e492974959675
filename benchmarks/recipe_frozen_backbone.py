"""The seed article's recipe, as plain PyTorch: a frozen pretrained backbone whose last
layer is trained for 10 epochs, the backbone recomputed for every image in every epoch
(train and validation phases each epoch, as in PyTorch's transfer-learning tutorial).

It is the baseline that ``benchmarks/speed.py`` times against ``lowshot fit``. It uses
lowshot only to load the same offline Lite0 weights and the same K-shot split.

    python benchmarks/recipe_frozen_backbone.py TRAIN_LIST TEST_LIST
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

t_start = time.perf_counter()

import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402


class Files(Dataset):
    def __init__(self, rows: list[tuple[str, int]], tf: T.Compose) -> None:
        self.rows, self.tf = rows, tf

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, y = self.rows[i]
        return self.tf(Image.open(path).convert("RGB")), y


def main() -> None:
    from lowshot.backbones import create_backbone  # same weights as lowshot uses

    train_rows = [(p, int(y)) for p, y in json.loads(Path(sys.argv[1]).read_text())]
    test_rows = [(p, int(y)) for p, y in json.loads(Path(sys.argv[2]).read_text())]
    n_classes = 1 + max(y for _, y in train_rows)
    # Plain PyTorch runs NCHW; the "tuned" variant gets lowshot's runtime tuning
    # (malloc, set by lowshot at import, and channels-last) to isolate what caching gives.
    tuned = os.environ.get("LOWSHOT_TUNE_MALLOC") != "0"
    fmt = torch.channels_last if tuned else torch.contiguous_format
    backbone = create_backbone("lite0").model.to(memory_format=fmt)
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    fc = torch.nn.Linear(backbone.num_features, n_classes)
    norm = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
    train_dl = DataLoader(Files(train_rows, train_tf), batch_size=16, shuffle=True)
    test_dl = DataLoader(Files(test_rows, test_tf), batch_size=16)
    opt = torch.optim.SGD(fc.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    acc = 0.0
    for _epoch in range(10):
        fc.train()
        for x, y in train_dl:
            with torch.no_grad():
                f = backbone(x)
            loss = torch.nn.functional.cross_entropy(fc(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        fc.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_dl:
                correct += int((fc(backbone(x)).argmax(1) == y).sum())
        acc = correct / len(test_rows)
    print(json.dumps({"accuracy": acc, "seconds": time.perf_counter() - t_start}))


if __name__ == "__main__":
    main()
