import shutil

import numpy as np
import pytest
import torch

from lowshot.backbones import Preprocessing, create_backbone
from lowshot.cache import FeatureCache
from lowshot.data import load_image_folder


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("lite0")


def test_features_are_computed_once_and_reused(tmp_path, mini, lite0, monkeypatch):
    s = load_image_folder(mini["train"])
    c = FeatureCache(tmp_path)
    calls = []
    orig = FeatureCache._compute

    def counting(*a, **k):
        calls.append(len(a[2]))
        return orig(*a, **k)

    monkeypatch.setattr(FeatureCache, "_compute", staticmethod(counting))
    f1 = c.features(lite0, s.files)
    assert f1.shape == (24, 1280) and calls == [24]
    # a fresh cache object (a new process) reads the chunks from disk
    f2 = FeatureCache(tmp_path).features(lite0, s.files[::-1])
    assert calls == [24] and np.allclose(f2, f1[::-1])
    # a subset plus unseen files computes only the unseen ones
    test = load_image_folder(mini["test"])
    FeatureCache(tmp_path).features(lite0, s.files[:5] + test.files[:3])
    assert calls == [24, 3]
    assert not list(tmp_path.rglob(".tmp-*"))
    # features match a direct forward pass of the same preprocessing
    from lowshot.data.torchdata import ImageFiles, eval_transform

    x, _ = ImageFiles(s.files[:2], None, eval_transform(lite0.preprocessing))[0]
    with torch.no_grad():
        direct = lite0(x[None]).numpy()[0]
    assert np.allclose(direct, f1[0], atol=2e-2, rtol=1e-2)  # draft JPEG decode differs slightly


def test_changes_invalidate(tmp_path, mini, lite0):
    s = load_image_folder(mini["train"])
    c = FeatureCache(tmp_path)
    base = c.features(lite0, s.files[:2])
    # an edited image gets new features
    edited = tmp_path / "edited.jpg"
    from PIL import Image

    Image.open(s.files[0]).convert("RGB").rotate(90).save(edited)
    assert not np.allclose(c.features(lite0, [edited])[0], base[0])
    # a copy with the same bytes reuses them
    copy = tmp_path / "copy.jpg"
    shutil.copy(s.files[1], copy)
    assert np.allclose(c.features(lite0, [copy])[0], base[1])
    # other weights or preprocessing give other cache keys
    other = create_backbone("lite0", pretrained=False)
    assert other.cache_key() != lite0.cache_key()
    p = lite0.preprocessing
    lite0.preprocessing = Preprocessing(192, p.crop_pct, p.mean, p.std, p.interpolation)
    try:
        assert c.features(lite0, s.files[:1]).shape == (1, 1280)
        assert len(list((tmp_path / "features").iterdir())) == 2
    finally:
        lite0.preprocessing = p


def test_intermediate_activations_are_cached_too(tmp_path, mini, lite0):
    s = load_image_folder(mini["train"])
    a = FeatureCache(tmp_path).features(lite0, s.files[:3], upto_stage=6)
    assert a.shape == (3, 112, 14, 14)
    with torch.no_grad():
        top = torch.nn.Sequential(*lite0.stages()[6:])
        pooled = top(torch.from_numpy(a)).numpy()
    full = FeatureCache(tmp_path).features(lite0, s.files[:3])
    assert np.allclose(pooled, full, atol=0.05)  # float16 storage of the activations


def test_cache_usage_and_clear(tmp_path, mini, lite0):
    from lowshot.cache import cache_usage, clear_cache

    s = load_image_folder(mini["train"])
    FeatureCache(tmp_path).features(lite0, s.files[:2])
    u = cache_usage(tmp_path)
    assert u["feature_sets"] == 1 and u["chunks"] == 1 and u["bytes"] > 2 * 1280 * 4
    assert clear_cache(tmp_path) == u["bytes"]
    assert cache_usage(tmp_path)["chunks"] == 0
