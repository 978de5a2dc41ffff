"""The sweep service on a cluster's Ray job server: ``submit``, ``logs`` and ``cancel`` (``commands``), ``status``
and ``list`` (``status_list``: no ``ray`` or ``mlflow`` import against ``http(s)://`` servers), the job server as
they use it (``jobs``) and a sweep's progress read from MLflow (``progress_read``)."""

from sweeps import lazy

_HOMES = {"SUBMIT": "commands", "STATUS": "status_list", "LIST": "status_list", "LOGS": "commands",
          "CANCEL": "commands", "Progress": "progress_read", "read_progress": "progress_read",
          "SweepStatus": "progress_read"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
