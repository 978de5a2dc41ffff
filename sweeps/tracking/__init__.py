"""MLflow, as glovesweep writes and searches it: every tag, param and metric name (``names``), the parent and
child runs with bounded retries (``mlflow_runs``), searching runs page by page (``search``), a trial's child
run kept whole through outages (``trial_run``) and the writes that wait for the server (``outbox``)."""

from sweeps import lazy

_HOMES = {"start_parent_run": "mlflow_runs", "end_run": "mlflow_runs", "child_runs": "search",
          "search_runs": "search", "find_parent_run": "search", "TrialRun": "trial_run"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
