"""Every shipped config option composes and validates; README command-line keys exist."""
from pathlib import Path

import pytest

from jobs import settings
from jobs.settings import ROOT
from tests.jobs.helpers import compose

GROUPS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "experiment")


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in GROUPS
                                          for p in sorted((ROOT / "conf" / g).glob("*.yaml"))])
def test_every_group_option_composes(group, option):
    cfg = compose("ifd", [f"{group}={option}"])
    settings.validate(cfg)


@pytest.mark.parametrize("exp", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes(exp):
    cfg = compose("ifd", [f"+experiment={exp}"])
    settings.validate(cfg)
    assert cfg.output_dir.startswith("out/")


def test_readme_keys_exist():
    cfg = compose("ifd", ["data.path=train.jsonl", "selection.budget=0.05", "output_dir=out/",
                          "cluster=auto", "method.variant=cherry", "model.name=/some/dir",
                          "backend.num_actors=2", "data.format=jsonl", "model.max_length=1024",
                          "selection.score=ifd_ppl", "method.template=vicuna", "resume=false"])
    settings.validate(cfg)
    rc = settings.render_config(cfg)
    assert rc.mode == "cherry" and cfg.cluster.address == "auto"
    sel = compose("select", ["scores=out/scores.parquet", "selection.budget=100", "output_dir=out2"])
    assert sel.scores == "out/scores.parquet" and sel.selection.budget == 100


@pytest.mark.parametrize("override,match", [
    ("method.variant=bogus", "method.variant"), ("method.template=llama9", "template"),
    ("selection.score=rouge", "selection.score"), ("data.format=csv", "data.format"),
])
def test_bad_values_fail_early_with_choices(override, match):
    with pytest.raises(ValueError, match=match):
        settings.validate(compose("ifd", [override]))


def test_variant_presets():
    sf = compose("ifd", ["method=superfilter"])
    assert settings.render_config(sf).template == "none"
    assert settings.variant_value(sf, "score", "selection") == "ifd_ppl"
    ch = compose("ifd", ["method.variant=cherry"])
    assert settings.render_config(ch).uncond_prefix == "header"


def test_bundled_data_path_resolves_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = settings.resolve_data_path(compose("ifd", []).data.path)
    assert p.exists() and p.name == "alpaca_sample.jsonl"
