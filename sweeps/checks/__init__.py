"""Checks a sweep must pass before any compute starts: its tracking store and storage path can be written
(``preflight``), some node or node type can hold one trial (``resources_check``), and a multi-node cluster
shares the sweep's storage (``cluster_checks``)."""

from sweeps import lazy

_HOMES = {"check_store_writable": "preflight", "check_storage_path": "preflight",
          "check_trial_resources": "resources_check", "check_storage_for_cluster": "cluster_checks"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
