"""Every shipped config option composes and validates; README command-line keys exist."""
import importlib.util
from pathlib import Path

import pytest
import yaml

from jobs import baseline, cherry, compare, curate, dedup, diverse_evol, ifd, kb_build, rds, recost, settings, specs
from jobs.train import train_params
from jobs.settings import ROOT
from tests.jobs.helpers import compose

HAS_VLLM = importlib.util.find_spec("vllm") is not None
GROUPS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "experiment")

# combinations refused on purpose (tested in test_recost_bad_values_fail_early)
REFUSED = {("recost", "method", "cherry"), ("dedup", "dedup", "none")}
# each job's own validate (what its run calls first); recost needs a kb.index to name
def _with_paths(validate):
    """A job's validate on a config whose required paths (kb.path, kb.index) are filled in."""
    def check(cfg):
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.kb.index = cfg.kb.get("index") or "kb/"
            cfg.kb.path = cfg.kb.get("path") or "trusted.jsonl"
        validate(cfg)
    return check


def _with_target(cfg):
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.target.path = str(ROOT / "data" / "alpaca_sample.jsonl")
    rds.validate(cfg)


def _with_arm(cfg):
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.compare.selections = [str(ROOT / "data" / "alpaca_sample.jsonl")]
    compare.validate(cfg)


VALIDATE = {"ifd": ifd.validate, "kb_build": _with_paths(kb_build.validate), "cherry": cherry.validate,
            "diverse_evol": diverse_evol.validate, "recost": _with_paths(recost.validate),
            "baseline": baseline.validate, "dedup": dedup.validate, "rds": _with_target,
            "compare": _with_arm, "curate": curate.validate}
_validate_recost = VALIDATE["recost"]


def _validate_trained(cfg):
    diverse_evol.validate(cfg)


def _jobs_using(group: str, option: str) -> list[str]:
    """Top-level configs whose defaults list has ``group`` (a selection option belongs to its job)."""
    jobs = [j for j in VALIDATE
            if any(isinstance(d, dict) and group in d for d in yaml.safe_load((ROOT / "conf" / f"{j}.yaml").read_text())["defaults"])]
    return [j for j in jobs if (group != "selection" or j == option) and (j, group, option) not in REFUSED]


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in GROUPS
                                          for p in sorted((ROOT / "conf" / g).glob("*.yaml"))])
def test_every_group_option_composes(group, option):
    jobs = _jobs_using(group, option)
    assert jobs, f"conf/{group}/{option}.yaml is used by no job"
    for job in jobs:
        cfg = compose(job, [f"{group}={option}"])
        if (group, option) == ("backend", "vllm") and not HAS_VLLM:
            with pytest.raises(ValueError, match="needs the vllm package"):  # the error names the fix
                VALIDATE[job](cfg)
            continue
        VALIDATE[job](cfg)


def test_scoring_actor_resources_per_backend():
    """GPUs per scoring actor: tp x pp for vLLM, num_gpus_per_actor for HF; none on CPU."""
    from scoring.passes import RenderConfig

    rc = RenderConfig()
    v = compose("ifd", ["backend=vllm", "backend.device=cuda", "backend.tensor_parallel=2",
                        "backend.pipeline_parallel=2", "model.max_length=2048"])
    spec = specs.scorer_spec(v, Path("/m"), rc)
    assert spec.backend == "vllm" and specs.scorer_resources(v).gpus == 4.0
    assert spec.vllm.max_num_batched_tokens == specs.AUTO_VLLM_STEP["cuda"]
    assert spec.vllm.max_model_len == 2048 and spec.vllm.enable_prefix_caching is False
    h = compose("ifd", ["backend.device=cuda", "backend.num_gpus_per_actor=0.5"])
    spec = specs.scorer_spec(h, Path("/m"), rc)
    assert specs.scorer_resources(h).gpus == 0.5 and spec.compile is True and spec.vllm is None
    assert spec.policy.max_batch_tokens == specs.AUTO_BATCH_TOKENS["cuda"]
    cpu_cfg = compose("ifd", ["backend=vllm", "backend.device=cpu"])
    cpu = specs.scorer_spec(cpu_cfg, Path("/m"), rc)
    assert specs.scorer_resources(cpu_cfg).gpus == 0.0 and cpu.vllm.device == "cpu"
    assert specs.scorer_spec(compose("ifd", ["backend.device=cpu"]), Path("/m"), rc).compile is False


@pytest.mark.parametrize("override,match", [
    (["backend.device=cuda", "backend.num_gpus_per_actor=2"], "tensor_parallel"),
    (["backend.name=nope"], "choose one of hf, vllm"),
])
def test_backend_resource_mistakes_fail_early(override, match):
    with pytest.raises(ValueError, match=match):
        ifd.validate(compose("ifd", override))


@pytest.mark.parametrize("exp", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes(exp):
    cfg = compose("ifd", [f"+experiment={exp}"])
    ifd.validate(cfg)
    assert cfg.output_dir.startswith("out/")


def test_pack_width_and_prefix_reuse_resolve_per_device():
    cfg = compose("ifd", ["backend.device=cpu"])
    spec = specs.scorer_spec(cfg, ROOT, settings.render_config(cfg))
    assert spec.reuse_prefix and spec.policy.pack_width == specs.AUTO_PACK_WIDTH
    off = compose("ifd", ["backend.device=cpu", "backend.reuse_prefix=false", "backend.pack_width=0"])
    spec = specs.scorer_spec(off, ROOT, settings.render_config(off))
    assert not spec.reuse_prefix and spec.policy.pack_width == 0
    assert specs.pack_width(compose("ifd", []).backend, "cuda") == 0
    assert not specs.reuse_prefix(compose("ifd", []).backend, "cuda")


def test_readme_keys_exist():
    cfg = compose("ifd", ["data.path=train.jsonl", "selection.budget=0.05", "output_dir=out/",
                          "cluster=auto", "method.variant=cherry", "model.name=/some/dir",
                          "backend.num_actors=2", "data.format=jsonl", "model.max_length=1024",
                          "selection.score=ifd_ppl", "method.template=vicuna", "resume=false"])
    ifd.validate(cfg)
    rc = settings.render_config(cfg)
    assert rc.mode == "cherry" and cfg.cluster.address == "auto"
    sel = compose("select", ["scores=out/scores.parquet", "selection.budget=100", "output_dir=out2"])
    assert sel.scores == "out/scores.parquet" and sel.selection.budget == 100


@pytest.mark.parametrize("override,match", [
    ("method.variant=bogus", "method.variant"), ("method.template=llama9", "template"),
    ("selection.score=rouge", "selection.score"), ("data.format=csv", "data.format"),
    ("backend.pack_width=-5", "backend.pack_width"), ("backend.pack_width=wide", "backend.pack_width"),
])
def test_bad_values_fail_early_with_choices(override, match):
    with pytest.raises(ValueError, match=match):
        ifd.validate(compose("ifd", [override]))


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


def test_recost_readme_keys_exist():
    kb = compose("kb_build", ["kb.path=trusted.jsonl", "kb.output=kb/", "kb.index_type=ivf", "encoder.pooling=last"])
    settings.validate_backend(kb)
    assert kb.kb.path == "trusted.jsonl" and kb.kb.output == "kb/"
    cfg = compose("recost", ["data.path=pool.jsonl", "kb.index=kb/", "selection.budget=0.01", "output_dir=out/",
                             "kb.k=3", "selection.weight=0.7", "selection.window=8", "selection.rpe=ratio",
                             "selection.fusion=rrf", "selection.tau=0.9", "selection.clusters=20",
                             "kb.style=plain", "kb.exclude_sim=0.999"])
    _validate_recost(cfg)
    assert cfg.kb.index == "kb/" and cfg.selection.budget == 0.01 and cfg.model.max_length == 1024
    assert recost.params(cfg).n_clusters == 20


@pytest.mark.parametrize("override,match", [
    ("selection.rpe=log", "selection.rpe"), ("selection.weight=2", "selection.weight"),
    ("selection.fusion=borda", "selection.fusion"), ("method.variant=cherry", "cherry"),
])
def test_recost_bad_values_fail_early(override, match):
    with pytest.raises(ValueError, match=match):
        _validate_recost(compose("recost", [override]))


def test_model_in_loop_readme_keys_exist():
    c = compose("cherry", ["data.path=pool.jsonl", "selection.budget=0.05", "output_dir=out/",
                           "cherry.pre_experienced=/my/checkpoint", "cherry.clusters=50", "train.lr=1e-5"])
    cherry.validate(c)
    assert train_params(c).epochs == 1 and c.cherry.per_cluster == 10 and list(c.cherry.band) == [25, 75]
    d = compose("diverse_evol", ["data.path=pool.jsonl", "evol.init=100", "evol.per_round=100", "evol.rounds=10",
                                 "output_dir=out/", "evol.warm_start=true", "evol.save_checkpoints=true"])
    _validate_trained(d)
    assert d.evol.epochs == 3 and train_params(d, d.evol.epochs).epochs == 3 and train_params(d).lr == 2e-5


def test_new_methods_readme_keys_exist():
    b = compose("baseline", ["baseline=longest", "data.path=pool.jsonl", "selection.budget=0.05"])
    baseline.validate(b)
    d = compose("dedup", ["data.path=pool.jsonl", "dedup.threshold=0.9", "dedup.clusters=50", "embed.what=instruction"])
    dedup.validate(d)
    assert dedup.params(d).threshold == 0.9 and dedup.params(d).clusters == 50
    r = compose("rds", [f"target.path={ROOT / 'data' / 'alpaca_sample.jsonl'}", "data.path=pool.jsonl",
                        "selection.budget=0.05", "rds.aggregate=max", "dedup=semantic"])
    rds.validate(r)
    assert dedup.params(r).threshold == 0.95
    assert dedup.params(compose("recost", ["dedup=semantic"])) is not None
    assert dedup.params(compose("recost", [])) is None
    sel = compose("select", ["scores=out/rds/scores.parquet", "rds.aggregate=max", "seed=1", "baseline=longest",
                             "dedup=semantic"])
    assert sel.rds.aggregate == "max" and sel.seed == 1 and dedup.params(sel) is not None
    assert compose("select", ["scores=s.parquet"]).get("dedup") is None  # unset: the run's own


@pytest.mark.parametrize("job,override,match", [
    ("rds", "rds.aggregate=mean", "rds.aggregate"), ("rds", "rds.pooling=max", "rds.pooling"),
    ("dedup", "dedup.threshold=0", "dedup.threshold"), ("dedup", "embed.what=all", "embed.what"),
    ("baseline", "baseline=median", "baseline"), ("rds", "dedup=semantic dedup.threshold=2", "dedup.threshold"),
])
def test_new_methods_bad_values_fail_early(job, override, match):
    with pytest.raises(ValueError, match=match):
        VALIDATE[job](compose(job, override.split()))


@pytest.mark.parametrize("override,match", [
    ("compare.bootstrap=10", "compare.bootstrap"), ("compare.random_seeds=-1", "compare.random_seeds"),
    ("compare.eval=[]", "compare.eval"), ("compare.budget=0", "budget"),
    ("compare.parallel_arms=0", "compare.parallel_arms"),
])
def test_compare_bad_values_fail_early(override, match):
    with pytest.raises(ValueError, match=match):
        VALIDATE["compare"](compose("compare", [override]))
