"""cluster.yaml against Ray's own cluster-launcher schema, without contacting AWS."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def load_cluster_config():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_ray_schema():
    config = load_cluster_config()
    validate_config(config)
    validate_config(prepare_config(config))


def test_cluster_yaml_layout():
    config = load_cluster_config()
    worker = config["available_node_types"]["worker.gpu"]
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] == "head.cpu"
    assert worker["min_workers"] == 0
    assert worker["max_workers"] == config["max_workers"]
    assert worker["node_config"]["InstanceType"].startswith("g")
    assert any("smoe-study @ git+" in command for command in config["setup_commands"])


def test_schema_rejects_unknown_key():
    config = load_cluster_config()
    config["available_node_types"]["worker.gpu"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)
