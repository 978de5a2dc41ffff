"""Can this cluster ever run one trial of a sweep? Refuse a sweep no node and no node type can hold.

Tune queues trials by resources, so a sweep whose per-trial resources (``resources: {cpu, gpu}``, one
placement-group bundle, so one node) fit nowhere would wait forever. One check, one rule, called once by
``glovesweep run``, ``resume`` and a submitted sweep's job (whose verdict ``submit`` waits for): a trial fits
when one alive node offers them in total (it may be busy now: the trial queues), or when a node type of the
autoscaler's config offers them and may be launched (the head type, or ``max_workers`` > 0): ``cluster/aws-gpu.yaml``'s
GPU workers count although they scale from 0; a type with ``max_workers: 0`` never launches and is skipped. The
autoscaler's config is ``$GLOVESWEEP_AUTOSCALING_CONFIG`` (the cluster files point it at
``~/ray_bootstrap_config.yaml``, which ``ray up`` writes on the head); without it (a single machine, a head
started by hand with ``ray start --head``) only the current nodes count.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import yaml

AUTOSCALING_CONFIG_ENV = "GLOVESWEEP_AUTOSCALING_CONFIG"
# Ray's resource names for the sweep file's per-trial keys.
RESOURCE_NAMES = {"cpu": "CPU", "gpu": "GPU"}


def fits(request: dict[str, float], offer: dict[str, float]) -> bool:
    """Whether one node offering ``offer`` (Ray resource names) holds a trial asking ``request`` (cpu/gpu)."""
    return all(offer.get(RESOURCE_NAMES[key], 0.0) >= amount for key, amount in request.items() if amount > 0)


def node_types(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Resources of each node type the autoscaler may launch (``max_workers`` > 0, or the head type).

    A type whose resources are not stated (Ray's ``local`` provider detects them when the machine joins)
    offers nothing here: its machines count once they are nodes.
    """
    head = config.get("head_node_type")
    offers = {}
    for name, node_type in (config.get("available_node_types") or {}).items():
        if name == head or int(node_type.get("max_workers", 0)) > 0:
            offers[name] = {key: float(value) for key, value in (node_type.get("resources") or {}).items()}
    return offers


def load_node_types(path: str | None = None) -> dict[str, dict[str, float]] | None:
    """Node types of the autoscaler config at ``path`` (default ``$GLOVESWEEP_AUTOSCALING_CONFIG``); None without
    one.

    Raises
    ------
    OSError
        The variable names a file that cannot be read.
    """
    path = path or os.environ.get(AUTOSCALING_CONFIG_ENV)
    if not path:
        return None
    file = pathlib.Path(path).expanduser()
    try:
        config = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise OSError(f"${AUTOSCALING_CONFIG_ENV}={path}: cannot read the autoscaler config ({error}); unset it "
                      f"on a head started by hand") from error
    return node_types(config or {})


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of every alive node of the Ray cluster this process joined."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def describe(request: dict[str, float]) -> str:
    return "{" + ", ".join(f"{key}: {value:g}" for key, value in request.items()) + "}"


def check_fits(request: dict[str, float], nodes: list[dict[str, float]],
               types: dict[str, dict[str, float]] | None) -> None:
    """Raise ``ValueError`` (one line: what was asked, what exists, the fix) when no node or node type fits.

    Parameters
    ----------
    request : dict
        Per-trial ``cpu`` and ``gpu`` (the sweep file's ``resources``).
    nodes : list of dict
        Total resources of each alive node (Ray names: ``CPU``, ``GPU``).
    types : dict or None
        Launchable node type -> resources (``node_types``); None when there is no autoscaler config.
    """
    if any(fits(request, node) for node in nodes) or any(fits(request, offer) for offer in (types or {}).values()):
        return
    asked = ", ".join(f"{RESOURCE_NAMES[key]}={amount:g}" for key, amount in request.items() if amount > 0)
    largest = ", ".join(f"{name}={max((node.get(name, 0.0) for node in nodes), default=0.0):g}"
                        for name in RESOURCE_NAMES.values())
    if types is None:
        where = f"and there is no autoscaler config (${AUTOSCALING_CONFIG_ENV}) to add a bigger one"
    else:
        offers = "; ".join(f"{name} {describe(offer)}" for name, offer in types.items()) or "none"
        where = f"and no node type the autoscaler may launch offers it either ({offers})"
    raise ValueError(f"each trial asks for {asked}, but none of the {len(nodes)} node(s) of this Ray cluster has "
                     f"that much (the largest: {largest}) {where}; lower resources in the sweep file (e.g. gpu: 0 "
                     f"without GPUs), or run on a cluster that has them (--address)")


def check_trial_resources(spec) -> None:
    """``check_fits`` for a ``SweepSpec`` on the cluster this process joined (call after ``ray.init``).

    Raises
    ------
    ValueError
        No alive node and no launchable node type holds one trial.
    OSError
        ``$GLOVESWEEP_AUTOSCALING_CONFIG`` names a file that cannot be read.
    """
    check_fits(dict(spec.resources), alive_node_resources(), load_node_types())
