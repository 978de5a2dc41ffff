"""The sweep file: its schema (``schema``, pydantic, every section ``extra="forbid"``) and the validated sweep
it becomes (``build`` checks it; ``sweep``: ``SweepSpec`` and its ``Trial`` list)."""

from sweeps.spec.sweep import DEFAULT_STORAGE_PATH
from sweeps.spec.sweep import DEFAULT_TRACKING_URI
from sweeps.spec.sweep import SweepSpec
from sweeps.spec.sweep import Trial
from sweeps.spec.sweep import cell_label
from sweeps.spec.build import load_sweep
from sweeps.spec.build import parse_sweep
from sweeps.spec.build import resolve_storage_path
from sweeps.spec.build import resolve_tracking_uri

__all__ = ["DEFAULT_STORAGE_PATH", "DEFAULT_TRACKING_URI", "SweepSpec", "Trial", "cell_label", "load_sweep",
           "parse_sweep", "resolve_storage_path", "resolve_tracking_uri"]
