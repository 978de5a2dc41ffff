"""The child run of one trial, created or continued inside the Ray trial, and kept whole through outages.

Metric values go through a buffer: while the tracking server does not answer, training goes on, values wait
and are sent with bounded backoff (1 s doubling to 30 s between attempts) when it answers again. At the end
the trial waits up to ``END_WAIT_SECONDS`` for the server; after that its unsent values and final status go
to the sweep's outbox (``sweeps.tracking.outbox``), which the driver and ``resume`` replay. Other calls (creating the
run, params, tags) retry with the same backoff for up to ``CALL_WAIT_SECONDS``, then fail with one line
naming the tracking URI. Each single MLflow call fails fast (``outbox.trial_client_settings``): the waiting is
done here, where it is bounded, never inside MLflow's own retries.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sweeps.tracking import names
from sweeps.tracking import outbox
from sweeps.tracking import mlflow_runs

logger = logging.getLogger(__name__)

END_WAIT_SECONDS = 120.0
CALL_WAIT_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# Summary metrics are rounded for reading in the UI; step metrics keep full precision.
SUMMARY_DIGITS = 4


class TrialRun:
    """The child run of one trial, created or continued; used inside the Ray trial.

    Parameters
    ----------
    tracking_uri, experiment_id, parent_run_id : str
    trial_id : str
        Ray Tune's trial id: stable across retries and ``Tuner.restore``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str, *,
                 sweep_dir: str = "") -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.trial_id = trial_id
        self.sweep_dir = sweep_dir
        self.client = mlflow_runs.client_for(tracking_uri)
        self.run_id = ""
        self.continued = False
        self.unreachable_since: float | None = None
        self._logged_steps: set[tuple[str, int]] = set()
        self._logged_params: dict[str, str] = {}
        self._pending: list = []
        self._next_attempt = 0.0
        self._backoff = 1.0

    @property
    def pending(self) -> int:
        """Metric values waiting for the tracking server."""
        return len(self._pending)

    def _failed(self, error: BaseException) -> None:
        """Note an unanswered call: the next attempt waits a growing, bounded pause."""
        now = time.monotonic()
        if self.unreachable_since is None:
            self.unreachable_since = now
            logger.warning("MLflow at %s is unreachable (%s); buffering, training goes on", self.tracking_uri,
                           str(error).splitlines()[0][:200])
        self._next_attempt = now + self._backoff
        self._backoff = min(2 * self._backoff, MAX_BACKOFF_SECONDS)

    def _answered(self) -> None:
        self.unreachable_since, self._backoff, self._next_attempt = None, 1.0, 0.0

    def _call(self, call, *, what: str, wait: float = CALL_WAIT_SECONDS):
        """An MLflow call that waits out an outage for up to ``wait`` seconds, then fails naming the URI."""
        deadline = time.monotonic() + wait
        while True:
            try:
                with outbox.trial_client_settings():
                    result = mlflow_runs.with_lock_retries(call, what=what)
            except Exception as error:  # noqa: BLE001 - MLflow wraps connection errors in several types
                if not outbox.unreachable(error):
                    raise
                self._failed(error)
                if time.monotonic() + self._backoff > deadline:
                    raise OSError(f"MLflow tracking server {self.tracking_uri} did not answer for {wait:.0f} s "
                                  f"({what}); check that it is running") from None
                time.sleep(max(0.0, self._next_attempt - time.monotonic()))
                continue
            self._answered()
            return result

    def flush(self, *, wait: float = 0.0) -> bool:
        """Send the buffered metric values; True when none is left. Never waits longer than ``wait``."""
        deadline = time.monotonic() + wait
        while self._pending:
            now = time.monotonic()
            if now < self._next_attempt:
                if self._next_attempt > deadline:
                    return False
                time.sleep(self._next_attempt - now)
            batch = self._pending[:1000]
            try:
                with outbox.trial_client_settings():
                    mlflow_runs.with_lock_retries(lambda: self.client.log_batch(self.run_id, metrics=batch),
                                                  what="log metrics")
            except Exception as error:  # noqa: BLE001 - see _call
                if not outbox.unreachable(error):
                    raise
                self._failed(error)
                continue
            del self._pending[:len(batch)]
            self._answered()
        return True

    def record_tune_trial(self, existing, tune_trial_id: str) -> dict[str, str]:
        """The tags naming ``tune_trial_id`` as the latest and among all Tune trials that ran this trial.

        Tune gives a retried or resumed trial a new id and folder (``trial_<id>``); the list lets a reader map any
        such folder back to its run, even one whose ``params.json`` was never written (a full disk).
        """
        earlier = existing.data.tags.get(names.TUNE_TRIAL_IDS_TAG, "") if existing is not None else ""
        ids = [value for value in earlier.split(",") if value]
        if tune_trial_id not in ids:
            ids.append(tune_trial_id)
        # MLflow caps a tag value at 8,000 characters; the newest ids matter most to a reader.
        text = ",".join(ids)
        while len(text) > 8000:
            ids.pop(0)
            text = ",".join(ids)
        return {names.TUNE_TRIAL_ID_TAG: tune_trial_id, names.TUNE_TRIAL_IDS_TAG: text}

    def find(self):
        """This trial's earlier child run (``mlflow.entities.Run``), or None."""
        return self._call(lambda: mlflow_runs.find_trial_run(self.tracking_uri, self.experiment_id, self.parent_run_id,
                                                          self.trial_id), what="find the trial's run")

    def start(self, *, run_name: str, cell: str, trainer: str, params: dict[str, Any], tags: dict[str, str],
              existing=None) -> str:
        """Create the child run, or continue ``existing`` (this trial's earlier run; status back to RUNNING).

        Returns the run id.
        """
        if existing is None:
            run_tags = {names.PARENT_TAG: self.parent_run_id, names.ROLE_TAG: names.ROLE_TRIAL,
                        names.TRIAL_ID_TAG: self.trial_id, names.CELL_TAG: cell, names.TRAINER_TAG: trainer}
            run = self._call(lambda: self.client.create_run(self.experiment_id, tags=run_tags, run_name=run_name),
                         what="create trial run")
            self.run_id = run.info.run_id
        else:
            self.run_id = existing.info.run_id
            self.continued = True
            self._logged_params = dict(existing.data.params)
            for key in sorted(set(names.STEP_METRICS) | set(existing.data.metrics)):
                history = self._call(lambda: self.client.get_metric_history(self.run_id, key), what="metric history")
                self._logged_steps.update((key, metric.step) for metric in history)
            self._call(lambda: self.client.update_run(self.run_id, status="RUNNING"), what="reopen trial run")
        self.log_params(params)
        self.set_tags(tags)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params not logged yet (MLflow params are write-once; a continued run keeps its values)."""
        from mlflow import entities

        new = {key: mlflow_runs.param_text(value) for key, value in params.items() if key not in self._logged_params}
        if not new:
            return
        items = [entities.Param(key, value) for key, value in new.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params.
            self._call(lambda: self.client.log_batch(self.run_id, params=items[start:start + 100]), what="log params")
        self._logged_params.update(new)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow import entities

        if tags:
            items = [entities.RunTag(key, str(value)) for key, value in tags.items()]
            self._call(lambda: self.client.log_batch(self.run_id, tags=items), what="set tags")

    def log_metrics(self, metrics: dict[str, float], *, step: int = 0) -> None:
        """Log metrics at ``step`` (buffered through outages); a step already logged for a key is skipped."""
        from mlflow import entities

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if (key, step) in self._logged_steps or value is None:
                continue
            self._pending.append(entities.Metric(key, float(value), now, step))
            self._logged_steps.add((key, step))
        self.flush()

    def log_epoch(self, epoch: int, metrics: dict[str, float], *, requested_epochs: list[int],
                  summary: tuple[str, ...] | list[str] = (names.VAL_ACC, names.VAL_LOSS),
                  step_keys: tuple[str, ...] | None = names.STEP_METRICS) -> None:
        """Step metrics for a 1-based ``epoch`` (only ``step_keys`` where given), plus ``<name>_at_<E>`` for each
        ``summary`` name when E is a requested epoch count (``val_acc_at_<E>``, ``val_loss_at_<E>``)."""
        self.log_metrics({key: value for key, value in metrics.items() if step_keys is None or key in step_keys},
                         step=epoch)
        if epoch in requested_epochs:
            self.log_metrics({names.metric_at(key, epoch): round(float(metrics[key]), SUMMARY_DIGITS)
                              for key in summary if key in metrics}, step=0)

    def log_history(self, history: dict[str, list[float]], *, requested_epochs: list[int]) -> None:
        """Log each epoch of a checkpoint's ``history`` (lists per metric, ``epoch`` 1-based) that the run lacks.

        A trial resumed from a checkpoint continues after its epoch; the epochs before it whose values a killed
        worker still held (the server was down, or the driver died with its trials) are in the checkpoint's
        history, and only those are sent: steps already logged are skipped (``log_metrics``).
        """
        for index, epoch in enumerate(history.get("epoch", [])):
            metrics = {key: values[index] for key, values in history.items() if key != "epoch" and index < len(values)}
            self.log_epoch(int(epoch), metrics, requested_epochs=requested_epochs)

    def log_input(self, *, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        """Record the training data as an MLflow dataset input (the runs table's Dataset column)."""
        import json

        from mlflow import entities

        dataset = entities.Dataset(name=name, digest=digest[:36], source_type="local",
                                   source=json.dumps({"uri": source}), profile=json.dumps(profile))
        tags = [entities.InputTag("mlflow.data.context", "training")]
        self._call(lambda: self.client.log_inputs(self.run_id, datasets=[entities.DatasetInput(dataset, tags)]),
               what="log input")

    def end(self, status: str) -> None:
        """Send what is buffered and set the final status; a server still down after ``END_WAIT_SECONDS``
        leaves both in the sweep's outbox (applied when it answers, or at the next ``resume``)."""
        if self.flush(wait=END_WAIT_SECONDS if self._pending or self.unreachable_since else 0.0):
            try:
                self._call(lambda: self.client.set_terminated(self.run_id, status=status), what="end trial run",
                           wait=END_WAIT_SECONDS if self.unreachable_since else CALL_WAIT_SECONDS)
                return
            except OSError:
                pass
        if not self.sweep_dir:
            raise OSError(f"MLflow tracking server {self.tracking_uri} is unreachable: {len(self._pending)} metric "
                          f"values and the status of run {self.run_id} could not be sent")
        kept = [{"key": metric.key, "value": metric.value, "timestamp": metric.timestamp, "step": metric.step}
                for metric in self._pending]
        path = outbox.write(self.sweep_dir, run_id=self.run_id, metrics=kept, status=status)
        self._pending.clear()
        logger.warning("MLflow at %s unreachable: kept %d values and status %s of run %s in %s", self.tracking_uri,
                       len(kept), status, self.run_id, path)


def summary_from_history(history: dict[str, Any], requested_epochs: list[int]) -> dict[str, float]:
    """Rounded summaries: ``val_acc_at_<E>``/``val_loss_at_<E>`` for every requested E the history reached,
    the best epoch and its accuracy, and the median epoch time (epochs after the first, which traces the graph).
    """
    summary = {}
    epochs = history.get("epoch", [])
    for epoch_count in requested_epochs:
        if epoch_count in epochs:
            index = epochs.index(epoch_count)
            summary[names.val_acc_at(epoch_count)] = history[names.VAL_ACC][index]
            summary[names.val_loss_at(epoch_count)] = history[names.VAL_LOSS][index]
    if epochs:
        best = max(range(len(epochs)), key=lambda index: history[names.VAL_ACC][index])
        summary.update(best_epoch=epochs[best], best_val_acc=history[names.VAL_ACC][best])
        seconds = sorted(history[names.EPOCH_SECONDS][1:] or history[names.EPOCH_SECONDS])
        summary["epoch_seconds_median"] = seconds[len(seconds) // 2]
    return {key: round(float(value), SUMMARY_DIGITS) for key, value in summary.items()}


def stats_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The summary metrics taken from ``Prepared.stats`` (``names.STATS_METRICS``; absent ones are skipped)."""
    chosen = {}
    for key in names.STATS_METRICS:
        value = stats.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            chosen[key] = round(float(value), SUMMARY_DIGITS)
    return chosen


