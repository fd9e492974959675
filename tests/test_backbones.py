import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from lowshot.backbones import create_backbone
from lowshot.backbones.efficientnet_lite import checkpoint_path, convert_state_dict
from lowshot.data.torchdata import eval_transform
from lowshot.errors import BackboneError


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("lite0")


def _imagenet_top5(b, images):
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    tf = eval_transform(b.preprocessing)
    x = torch.stack([tf(Image.fromarray(np.asarray(i)).convert("RGB")) for i in images])
    with torch.no_grad():
        logits = b.source_head(b(x))
    return [
        [info.index_to_description(int(j)).lower() for j in row.topk(5).indices] for row in logits
    ]


def test_lite0_names_real_photos(lite0):
    """Photos shipped with scikit-learn and scikit-image, named by the mapped ImageNet head."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    images = [china, flower, skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    expect = [
        ("palace", "monastery", "pagoda", "bell cote"),
        ("daisy",),
        ("cat",),
        ("espresso", "cup"),
        ("missile",),
    ]
    for top5, words in zip(_imagenet_top5(lite0, images), expect, strict=True):
        assert any(w in name for w in words for name in top5[:2]), top5


def test_mapping_is_complete_and_strict():
    sd = torch.load(checkpoint_path(0), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    converted = convert_state_dict(sd, [len(s) for s in model.blocks])
    assert set(converted) == set(model.state_dict())
    for k, v in converted.items():
        assert v.shape == model.state_dict()[k].shape, k
    with pytest.raises(BackboneError, match="unexpected checkpoint tensor"):
        convert_state_dict({"_blocks.0._weird.weight": torch.zeros(1)}, [1, 2, 2, 3, 3, 4, 1])


@pytest.mark.parametrize("name,size", [("lite1", 240), ("lite2", 260)])
def test_bigger_lite_variants_load(name, size):
    b = create_backbone(name)
    assert b.preprocessing.input_size == size and b.preprocessing.mean == (0.5, 0.5, 0.5)
    assert b.weights_id.startswith("sha256:")


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(BackboneError, match="Did you mean.*lite0"):
        create_backbone("lite00")
    with pytest.raises(BackboneError, match="resnet50"):
        create_backbone("resnet5O")


def test_local_checkpoint_roundtrip_and_no_pickles(tmp_path, lite0):
    sd = {k: v.contiguous() for k, v in lite0.model.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    b = create_backbone("tf_efficientnet_lite0", weights=tmp_path / "w.safetensors")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(b(x), lite0(x), atol=1e-5)
    assert b.weights_id.startswith("file:")

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(BackboneError, match="never unpickles"):
        create_backbone("tf_efficientnet_lite0", weights=tmp_path / "evil.pth")


def test_random_init_differs_and_stages_compose(lite0):
    r = create_backbone("lite0", pretrained=False, seed=1)
    assert r.weights_id == "random:seed=1" and r.source_head is None
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = x
        for s in lite0.stages():
            y = s(y)
        assert torch.allclose(y, lite0(x), atol=1e-5)
        assert not torch.allclose(r(x), lite0(x))


def test_combined_backbone_is_its_members_side_by_side(mini, cache_dir, tmp_path):
    """``lite0+lite1``: the cache gives each member's own features side by side; forward
    (one batch at the larger member's preprocessing) comes close to them; a linear-probe
    run with it saves, reloads and predicts as it tested."""
    import csv

    from lowshot import api
    from lowshot.cache import default_cache
    from lowshot.data import load_image_folder
    from lowshot.data.torchdata import ImageFiles

    bb = create_backbone("lite0+lite1")
    assert bb.name == "lite0+lite1" and bb.num_features == 2560
    m0, m1 = bb.members
    assert bb.weights_id not in (m0.weights_id, m1.weights_id)
    files = load_image_folder(mini["test"]).files[:6]
    cache = default_cache()
    both = cache.features(bb, files)
    np.testing.assert_allclose(both, np.hstack([cache.features(m0, files), cache.features(m1, files)]))
    pre = bb.preprocessing
    assert pre.input_size == m1.preprocessing.input_size
    x = torch.stack([ImageFiles(files, None, eval_transform(pre), min_side=pre.resize)[i][0]
                     for i in range(len(files))])  # fmt: skip
    with torch.inference_mode():
        f = bb(x).numpy()
    cos = (f * both).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(both, axis=1)
    assert cos.min() > 0.9, cos
    r = api.fit(str(mini["train"]), test=str(mini["test"]), backbone="lite0+lite1",
                out=tmp_path / "run", baseline="none", progress=False)  # fmt: skip
    assert r["feature_dim"] == 2560 and r["backbone_members"] == {"lite0": 1280, "lite1": 1280}
    preds = api.predict(tmp_path / "run", [mini["test"]], progress=False)
    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        tested = {row["item"]: row["predicted"] for row in csv.DictReader(fh)}
    assert {p["file"]: p["class"] for p in preds} == tested


@pytest.mark.parametrize(
    "name, msg", [("lite0+lite0", "appears twice"), ("lite0+minilm", "only image backbones"),
                  ("lite0+lite9", "lite9")],  # fmt: skip
)
def test_combined_backbone_bad_names(name, msg):
    from types import SimpleNamespace

    from lowshot.backbones.select import backbone_for
    from lowshot.errors import LowshotError

    with pytest.raises(LowshotError, match=msg):
        backbone_for(SimpleNamespace(modality="image"), name)
