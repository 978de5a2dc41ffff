"""cluster/*.yaml: Ray's own validation for the pinned Ray, a comment above every key, the MLflow server bound to
a private address, token authentication, shared storage, and a lock file that matches the local install."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import pytest
import ray
import yaml
from packaging import requirements as requirements_module
from ray.autoscaler._private import util as autoscaler_util

from sweeps.checks import cluster_checks

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
YAMLS = sorted(CLUSTER.glob("*.yaml"))
CLOUD_YAMLS = [path for path in YAMLS if path.stem != "onprem"]


def load(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def ray_prepared(config: dict) -> dict:
    """What `ray up` does before touching a provider: defaults merged, node types filled, schema validated.

    ``prepare_config`` merges ray/autoscaler/<provider>/defaults.yaml (and for provider ``local`` builds the
    single node type from head_ip/worker_ips); ``validate_config`` checks ray-schema.json and the node-type
    rules (ray.autoscaler._private.commands._bootstrap_config calls the same two, in this order).
    """
    prepared = autoscaler_util.prepare_config(copy.deepcopy(config))
    autoscaler_util.validate_config(prepared)
    return prepared


def start_mlflow_module():
    spec = importlib.util.spec_from_file_location("start_mlflow", CLUSTER / "start_mlflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_three_cluster_files_exist():
    assert [path.name for path in YAMLS] == ["aws-gpu.yaml", "gcp-gpu.yaml", "onprem.yaml"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_ray_validates_the_cluster_file(path):
    config = load(path)
    prepared = ray_prepared(config)
    node_types = prepared["available_node_types"]
    assert prepared["head_node_type"] in node_types
    # Every command list survives the merge with Ray's defaults (ours replace them, none is dropped).
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert prepared[key] == config[key]
    assert any("--autoscaling-config=~/ray_bootstrap_config.yaml" in command
               for command in prepared["head_start_ray_commands"])


def test_ray_validation_is_not_a_no_op():
    """The same calls reject what `ray up` would reject: an unknown key, too few max_workers, a bad head type."""
    config = load(CLUSTER / "aws-gpu.yaml")
    with pytest.raises(jsonschema.ValidationError, match="head_node_typo"):
        ray_prepared(dict(config, head_node_typo="x"))
    with pytest.raises(ValueError, match="max_workers"):
        broken = copy.deepcopy(config)
        broken["available_node_types"]["ray.worker.gpu"]["min_workers"] = 13
        ray_prepared(broken)
    with pytest.raises(ValueError, match="head_node_type"):
        ray_prepared(dict(config, head_node_type="ray.head.missing"))
    with pytest.raises(jsonschema.ValidationError):
        broken = copy.deepcopy(config)
        broken["available_node_types"]["ray.worker.gpu"]["resources"] = {"GPU": -1}
        ray_prepared(broken)


@pytest.mark.parametrize("path", CLOUD_YAMLS, ids=lambda path: path.name)
def test_cloud_clusters_have_a_cpu_head_and_autoscaled_gpu_workers_one_of_them_spot(path):
    config = ray_prepared(load(path))
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    workers = {name: value for name, value in node_types.items() if name != config["head_node_type"]}
    # The head has no GPU, so GPU trials never run there; 2 CPUs serve the driver's data preparation.
    assert head["resources"] == {"CPU": 2}
    assert len(workers) == 2
    for worker in workers.values():
        assert worker["resources"]["GPU"] == 1 and worker["resources"]["CPU"] >= 4
        assert worker["min_workers"] == 0 < worker["max_workers"]
    spot = [worker["node_config"] for worker in workers.values()
            if worker["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
            or worker["node_config"].get("scheduling", {}).get("provisioningModel") == "SPOT"]
    assert len(spot) == 1
    assert sum(worker["max_workers"] for worker in workers.values()) <= config["max_workers"]


def test_onprem_cluster_uses_the_local_provider_with_head_and_worker_ips():
    config = load(CLUSTER / "onprem.yaml")
    assert config["provider"]["type"] == "local"
    prepared = ray_prepared(config)
    node_type = prepared["available_node_types"]["local.cluster.node"]
    assert node_type["max_workers"] == len(config["provider"]["worker_ips"]) == 2
    for address in [config["provider"]["head_ip"], *config["provider"]["worker_ips"]]:
        assert start_mlflow_module().check_bind_address(address) == address  # private addresses only


def keys_without_a_comment_above(text: str) -> list[tuple[int, str]]:
    """Mapping keys (block or flow) whose line is not directly preceded by a comment line."""
    lines = text.splitlines()
    tokens = list(yaml.scan(text))
    missing, checked_lines = [], set()
    for index, token in enumerate(tokens):
        if not isinstance(token, yaml.KeyToken):
            continue
        line = tokens[index + 1].start_mark.line
        # Keys sharing a line (an inline {a: 1, b: 2}) are covered by that line's comment.
        if line in checked_lines:
            continue
        checked_lines.add(line)
        if line == 0 or not lines[line - 1].strip().startswith("#"):
            missing.append((line + 1, lines[line].strip()))
    return missing


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_every_key_has_a_comment_above_it(path):
    assert keys_without_a_comment_above(path.read_text()) == []


def test_the_comment_check_finds_an_uncommented_key():
    text = "# The name.\ncluster_name: x\nprovider:\n    # The type.\n    type: aws\n    region: us-west-2\n"
    assert keys_without_a_comment_above(text) == [(3, "provider:"), (6, "region: us-west-2")]


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_mlflow_server_and_dashboard_listen_on_private_addresses_only(path):
    config = load(path)
    text = path.read_text()
    assert "0.0.0.0" not in text
    head_start = " ".join(config["head_start_ray_commands"])
    # The server comes from start_mlflow.py, which refuses wildcard and public addresses.
    host = re.search(r"cluster/start_mlflow\.py --host (\S+)", head_start).group(1)
    assert host == "auto" or start_mlflow_module().check_bind_address(host)
    assert "--dashboard-host=127.0.0.1" in head_start
    # Workers log to the head's private address over HTTP: $RAY_HEAD_IP is the head's private IP.
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "MLFLOW_TRACKING_URI=http://%s:5000" in worker_start and '"$RAY_HEAD_IP"' in worker_start


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "8.8.8.8", "2001:4860:4860::8888", "head.example.com", ""])
def test_start_mlflow_refuses_wildcard_public_and_named_hosts(host):
    module = start_mlflow_module()
    with pytest.raises(ValueError, match="--host"):
        module.check_bind_address(host)
    with pytest.raises(ValueError, match="--host"):
        module.server_command(host=host, port=5000, store=pathlib.Path("/tmp/x"), artifacts_destination="/tmp/x")


@pytest.mark.parametrize("host", ["10.0.1.23", "172.31.5.6", "192.168.1.2", "127.0.0.1", "fd00::5"])
def test_start_mlflow_accepts_private_and_loopback_hosts(host):
    assert start_mlflow_module().check_bind_address(host) == host


def test_start_mlflow_binds_the_private_address_and_loopback_for_the_tunnel():
    module = start_mlflow_module()
    command = module.server_command(host="10.0.1.23", port=5000, store=pathlib.Path("/srv/mlflow"),
                                    artifacts_destination="s3://bucket/artifacts")
    joined = " ".join(command)
    assert command[command.index("--host") + 1] == "10.0.1.23"
    assert "--bind 127.0.0.1:5000" in command[command.index("--gunicorn-opts") + 1]
    assert "sqlite:////srv/mlflow/mlflow.db" in command and "--serve-artifacts" in command
    assert "0.0.0.0" not in joined
    allowed = module.allowed_hosts("10.0.1.23", 5000).split(",")
    assert {"10.0.1.23:5000", "localhost:*", "127.0.0.1:*"} <= set(allowed) and "*" not in allowed
    # On a loopback host there is nothing else to bind.
    assert module.bind_addresses("127.0.0.1") == ["127.0.0.1"]


def test_start_mlflow_detects_a_private_address_here():
    module = start_mlflow_module()
    assert module.check_bind_address(module.detect_private_address())


def test_start_mlflow_command_line_refuses_a_wildcard_before_starting_anything(tmp_path):
    result = subprocess.run([sys.executable, str(CLUSTER / "start_mlflow.py"), "--host", "0.0.0.0",
                             "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "binds every interface" in result.stderr
    assert not (tmp_path / "store" / "mlflow-server.pid").exists()


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_token_authentication_reaches_every_node(path):
    config = load(path)
    # The token generated by `ray get-auth-token --generate` is copied to every node ...
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # ... and every node's shell turns token mode on before `ray start` (setup_node.sh writes the env file).
    setup = " ".join(config["setup_commands"] + config["head_setup_commands"] + config["worker_setup_commands"])
    assert "cluster/setup_node.sh" in setup
    assert "export RAY_AUTH_MODE=token" in (CLUSTER / "setup_node.sh").read_text()
    assert "RAY_AUTH_MODE=disabled" not in path.read_text()


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_setup_installs_the_synced_checkout_with_the_locked_versions(path):
    config = load(path)
    assert config["file_mounts"]["~/glovesweep"] == "."
    assert config["rsync_filter"] == [".gitignore"]
    script = (CLUSTER / "setup_node.sh").read_text()
    assert '-c "$LOCK" -e "$PROJECT"' in script
    result = subprocess.run(["bash", "-n", str(CLUSTER / "setup_node.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def head_environment(config: dict) -> dict[str, str]:
    """The variables the head start command writes to ~/.glovesweep_cluster_env (its printf, evaluated)."""
    head_start = " ".join(config["head_start_ray_commands"])
    found = re.search(r"printf '([^']*)'\s+(.*?) > ~/\.glovesweep_cluster_env", head_start)
    template = found.group(1).replace("\\n", "\n")
    values = [value.strip('"') for value in re.findall(r'"[^"]*"|\S+', found.group(2))]
    text = template % tuple(values)
    return dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines() if line)


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_tune_storage_on_the_cluster_is_shared(path, monkeypatch):
    environment = head_environment(load(path))
    assert environment["MLFLOW_TRACKING_URI"] == "$MLFLOW_TRACKING_URI"
    # The driver's storage check treats the head as multi-node even before the autoscaler adds workers.
    assert environment["GLOVESWEEP_CLUSTER"] == "1"
    monkeypatch.setenv(cluster_checks.SHARED_STORAGE_ENV, environment.get("GLOVESWEEP_SHARED_STORAGE", ""))
    shared, reason = cluster_checks.is_shared_storage(environment["GLOVESWEEP_STORAGE_PATH"])
    assert shared, reason
    cluster_checks.check_storage_for_cluster(environment["GLOVESWEEP_STORAGE_PATH"], alive_nodes=1, cluster=True)


def locked_versions() -> dict[str, str]:
    versions = {}
    for line in (CLUSTER / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            versions[name.lower().replace("_", "-")] = version
    return versions


def test_lock_file_satisfies_pyproject_and_pins_the_installed_ray():
    locked = locked_versions()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for text in pyproject["project"]["dependencies"]:
        requirement = requirements_module.Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{name} missing from cluster/requirements-lock.txt"
        assert requirement.specifier.contains(locked[name], prereleases=True), (text, locked[name])
    # The YAMLs were validated with this Ray; the nodes must run the same one.
    assert locked["ray"] == ray.__version__
    assert locked["tensorflow"] == importlib.metadata.version("tensorflow")


# ------------------------------------------------------------------------------ the sweep service on a cluster
@pytest.mark.parametrize("path", YAMLS, ids=lambda path: path.name)
def test_the_head_serves_jobs_on_loopback_with_postgres_behind_mlflow(path):
    """The job server (the dashboard) on 127.0.0.1 only, reached through `ray dashboard`; the MLflow server's run
    store from cluster/setup_postgres.sh; the autoscaler config recorded for submit's resource check."""
    config = load(path)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--include-dashboard=false" not in head_start
    assert 'MLFLOW_DATABASE=$(bash ~/glovesweep/cluster/setup_postgres.sh)' in head_start
    assert '--backend-store-uri "$MLFLOW_DATABASE"' in head_start
    # PostgreSQL is installed and initialised at setup, before the first start needs it.
    setup = config["setup_commands"] + config["head_setup_commands"]
    assert setup.index(next(c for c in setup if "setup_node.sh" in c)) < setup.index(
        next(c for c in setup if "setup_postgres.sh" in c))
    assert not any("setup_postgres.sh" in command for command in config["worker_setup_commands"])
    environment = head_environment(config)
    assert environment["GLOVESWEEP_AUTOSCALING_CONFIG"] == "$HOME/ray_bootstrap_config.yaml"
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start


def test_setup_postgres_listens_on_loopback_and_keeps_the_password_off_command_lines():
    script = (CLUSTER / "setup_postgres.sh").read_text()
    result = subprocess.run(["bash", "-n", str(CLUSTER / "setup_postgres.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "listen_addresses=127.0.0.1" in script and "0.0.0.0" not in script and "listen_addresses='*'" not in script
    assert "--auth-host=scram-sha-256" in script and "chmod 600" in script
    # The password reaches psql on stdin (printf is a builtin), never as an argument.
    assert "PASSWORD '%s'" in script and '-c "CREATE ROLE' not in script


def test_pyproject_makes_ray_default_a_main_dependency():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ray_requirement = next(requirements_module.Requirement(text) for text in pyproject["project"]["dependencies"]
                           if text.startswith("ray"))
    assert {"default", "tune"} <= ray_requirement.extras
    assert importlib.util.find_spec("ray.job_submission") is not None
    import aiohttp_cors  # noqa: F401 - ray[default]'s dashboard dependency, present in a plain install
