"""docs/extending.md runs: its code blocks register real methods that then work end to end."""

import re

import pytest
from conftest import REPO

from lowshot import registry


@pytest.fixture
def doc_namespace():
    before = dict(registry._METHODS)
    text = (REPO / "docs" / "extending.md").read_text()
    ns: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, "docs/extending.md", "exec"), ns)  # noqa: S102
    yield ns
    registry._METHODS.clear()
    registry._METHODS.update(before)


def test_documented_methods_register_and_run(doc_namespace, mini, tmp_path, cache_dir):
    from lowshot.api import fit

    names = {m.name: m.family for m in registry.list_methods()}
    assert (
        names["head-and-last-norms"] == "model" and names["closeness-to-target-mean"] == "instance"
    )
    assert names["moment-matching"] == "feature"
    assert names["cosine-protonet"] == "meta"
    assert names["scaled-by-first-loss"] == "multitask"
    assert names["central-then-far"] == "select"
    assert names["mean-pull"] == "generalization"
    from lowshot.catalogue import family

    family("select").check(registry.get_method("central-then-far"))  # the shared contract
    family("generalization").check(registry.get_method("mean-pull"))
    m = fit(
        mini["train"],
        test=mini["test"],
        strategy="head-and-last-norms",
        params={"epochs": 2, "min_steps": 0},
        baseline=False,
        progress=False,
        out=tmp_path / "run",
    )
    assert m["accuracy"] > 0.5 and m["info"]["trainable_params"] < 100_000
