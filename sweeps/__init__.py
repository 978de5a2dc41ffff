"""Sweep files -> Ray Tune trials -> MLflow runs -> the report. Imports ``trainer``, never the reverse.

Packages by concern, each importing only those below it (docs/DESIGN.md draws them):

- ``cli``, ``cli_train``, ``ui``: the ``glovesweep`` commands.
- ``service``: sweeps submitted to a cluster's Ray job server (``submit``, ``status``, ``list``, ``logs``,
  ``cancel``).
- ``run``: a sweep on Ray Tune: driver, resume, the trial function, progress, shared data, merging,
  checkpoints, the sweep's state, the plan, the parent run.
- ``report``: runs read back into frames, statistics, the gap, the answer, claims, text, plots, HTML.
- ``tracking``: MLflow: every name glovesweep writes, runs and their search, the trial's child run, the outbox.
- ``checks``: what a sweep must pass before compute starts (the tracking store, resources, the cluster).
- ``spec``: the sweep file's schema and the validated sweep.
- ``console``, ``storage``, ``lazy``, ``rest``: what every layer shares (one-line errors, the sweep folder's files,
  package faces, one JSON request over HTTP).
"""
