"""FixMatch (model/fixmatch.py, training/consistency.py): the self-adaptive thresholds
against their definition, consistency training on a toy where it must help, a fixed
threshold nobody reaches caught before training, and the strategy end to end on real
images (the shared contract runs it too: tests/test_strategies.py)."""

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from lowshot.api import make_strategy
from lowshot.backbones import create_backbone
from lowshot.cache import FeatureCache
from lowshot.data import load_image_folder
from lowshot.errors import ConfigError, DataError
from lowshot.model import FitContext
from lowshot.training.consistency import ConsistencyModule
from lowshot.training.loop import run_trainer
from lowshot.training.sampling import resampling_loader


def _module(net, **kw):
    opts = {"n_classes": 3, "threshold": None, "ema": 0.9, "weight": 1.0} | kw
    return ConsistencyModule(net, [(list(net.parameters()), 0.1, 0.0)], 5, **opts)


def test_self_adaptive_thresholds_follow_their_definition():
    mod = _module(nn.Linear(2, 3))
    tau, p = 1 / 3, np.full(3, 1 / 3)
    rng = np.random.default_rng(0)
    for _ in range(4):
        q = rng.dirichlet([4.0, 1.0, 1.0], size=8)
        got = mod.thresholds(torch.tensor(q, dtype=torch.float32)).numpy()
        tau = 0.9 * tau + 0.1 * q.max(1).mean()
        p = 0.9 * p + 0.1 * q.mean(0)
        assert np.allclose(got, tau * p / p.max(), atol=1e-5)
    # the class the model predicts most keeps the full bar, the others a lower one
    assert got.argmax() == 0 and got[1] < got[0] and got[2] < got[0]
    # started from a fitted model's probabilities on the pool rather than from 1/C
    start = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])
    mod = _module(nn.Linear(2, 3), start=start)
    assert torch.isclose(mod.tau, torch.tensor(0.7)) and torch.allclose(mod.p_model, torch.tensor([0.5, 0.35, 0.15]))
    fixed = _module(nn.Linear(2, 3), threshold=0.7).thresholds(torch.full((4, 3), 1 / 3))
    assert torch.allclose(fixed, torch.full((3,), 0.7))


class _Views(Dataset):
    """Unlabelled points as (weak, strong) views: a little noise, a lot of noise."""

    def __init__(self, X: torch.Tensor, seed: int) -> None:
        self.X, self.g = X, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int):
        x = self.X[i]
        return (x + 0.05 * torch.randn(2, generator=self.g), x + torch.randn(2, generator=self.g)), -1


def test_consistency_moves_the_boundary_into_the_gap():
    """Two blobs at x = -2 and x = +2 (one label each, at x = -1 and x = 3): the labels
    alone put the boundary at x = 1, through the right blob; consistency between weak
    and strongly perturbed views of the unlabelled points pushes it into the gap."""
    rng = np.random.default_rng(0)
    U = torch.tensor(np.r_[np.c_[rng.normal(-2, 1, 200), rng.normal(0, 1, 200)],
                           np.c_[rng.normal(2, 1, 200), rng.normal(0, 1, 200)]], dtype=torch.float32)  # fmt: skip
    truth = np.r_[np.zeros(200), np.ones(200)]
    labelled = TensorDataset(torch.tensor([[-1.0, 0.0], [3.0, 0.0]]), torch.tensor([0, 1]))
    acc = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        net = nn.Linear(2, 2)
        mod = _module(net, n_classes=2, weight=weight)
        mod.epochs = 10
        loader = CombinedLoader({"l": resampling_loader(labelled, 2, 20, 0),
                                 "u": resampling_loader(_Views(U, 0), 40, 400, 1)}, mode="min_size")  # fmt: skip
        run_trainer(mod, loader, 10, FitContext(seed=0, progress=False))
        with torch.no_grad():
            acc[weight] = float((net(U).argmax(1).numpy() == truth).mean())
        row = mod.history[-1]
        assert 0 < row["pseudo_labelled"] <= 1 and 0.5 < row["threshold"] < 1
    assert acc[0.0] < 0.93 and acc[1.0] > acc[0.0] + 0.03, acc


@pytest.fixture(scope="module")
def webcam(mini):
    train = load_image_folder(mini["train"])
    return train, load_image_folder(mini["test"]).relabel(train.classes)


def test_a_threshold_no_pool_image_reaches_is_caught_before_training(webcam, cache_dir):
    train, test = webcam
    strat = make_strategy("fixmatch", {"threshold": 0.99999})
    ctx = FitContext(cache=FeatureCache(cache_dir), seed=0, progress=False, unlabelled=list(test.files))
    with pytest.raises(DataError, match=r"threshold=0.99999: no unlabelled example .* highest confidence on the pool is 0\.\d\d"):
        strat.fit(train, create_backbone("lite0"), ctx)


@pytest.mark.parametrize("params, match", [
    ({"threshold": 1.5}, "a confidence in"), ({"ema": 1.0}, "a momentum"),
    ({"mu": 0}, "-p mu=0"), ({"weight": -1.0}, "-p weight=-1.0"), ({"blocks": 99}, "-p blocks must be in"),
])  # fmt: skip
def test_bad_hyper_parameters_are_refused_before_work(webcam, cache_dir, params, match):
    train, test = webcam
    ctx = FitContext(cache=FeatureCache(cache_dir), seed=0, progress=False, unlabelled=list(test.files))
    with pytest.raises(ConfigError, match=match):
        make_strategy("fixmatch", params).fit(train, create_backbone("lite0"), ctx)


def test_fixmatch_needs_a_pool(webcam, cache_dir):
    train, _ = webcam
    with pytest.raises(ConfigError, match="give --unlabelled"):
        make_strategy("fixmatch").fit(train, create_backbone("lite0"), FitContext(cache=FeatureCache(cache_dir)))


def test_a_combined_backbone_is_told_to_train_every_weight(webcam, cache_dir):
    train, test = webcam
    ctx = FitContext(cache=FeatureCache(cache_dir), seed=0, progress=False, unlabelled=list(test.files))
    with pytest.raises(ConfigError, match="give -p blocks=0"):
        make_strategy("fixmatch").fit(train, create_backbone("lite0+lite1"), ctx)
