"""One conformance suite derived from the registry: every registered method, of every
family, against its family's contract (``Family.base`` and ``Family.check``)."""

import pytest

from lowshot import catalogue
from lowshot.registry import FAMILIES

METHODS = catalogue.list_methods()


def test_every_family_declares_a_contract_and_has_methods():
    assert [f.name for f in catalogue.families()] == list(FAMILIES)
    for f in catalogue.families():
        assert f.jobs and f.summary, f.name
        assert catalogue.names(f.name), f"family {f.name} has no method"


@pytest.mark.parametrize("info", METHODS, ids=[m.name for m in METHODS])
def test_method_meets_its_family_contract(info):
    fam = catalogue.family(info.family)
    assert info.summary, (
        f"{info.name}: the first docstring line is its summary in `lowshot methods`"
    )
    if fam.base is not None and isinstance(info.factory, type):
        assert issubclass(info.factory, fam.base), f"{info.name} is not a {fam.base}"
    if fam.check is not None:
        fam.check(info)


def test_cli_choices_come_from_the_registry():
    from typer.testing import CliRunner

    from lowshot.cli import app

    out = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "300"}).output
    assert all(name in out for name in catalogue.names("model"))
    listed = CliRunner().invoke(app, ["methods", "--json"]).output
    assert all(m.name in listed for m in METHODS)
