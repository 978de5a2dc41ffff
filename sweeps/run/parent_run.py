"""The sweep's parent run carries the answer, and one URL opens its runs in MLflow's runs table.

At the start (``parent_params``): the sweep's factors, values, seeds, epochs and search mode as params. At the
end of a sweep (``summarize``, after the report): the answer in Markdown as the run's description (MLflow's
note), per-cell mean of the objective (the parent's ``glovesweep.objective``; validation accuracy for the
built-in trainer) at each reported epoch count, the gap and each factor's share as
metrics, the devices and data checksums as tags; the report itself (HTML with its images inside, Markdown,
PNGs, Parquet) is logged by ``sweeps.report.make`` under ``report/``. A search's report (``SearchReport``) puts its best
configuration on the parent instead: tags ``glovesweep.best.<factor>`` (tags, not params: a resumed search may find
a better one), metrics ``best_<objective>``, ``best_epochs`` and each factor's importance with its interval.

``runs_table_url`` saves a view of the experiment (MLflow's shared view state: an experiment tag holding the
UI state) that shows the sweep's child runs with their factor and objective columns, best first, and returns
the ``#/experiments/<id>/runs?viewStateShareKey=...`` URL of MLflow's classic runs table.
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.parse
from typing import Any

import pandas as pd

from sweeps.report import newsgroups
from sweeps.tracking import names
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs

NOTE_TAG = "mlflow.note.content"  # MLflow's own: the run's description, rendered as Markdown.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3: which UI an experiment opens in.
CLASSIC_KIND = "custom_model_development"  # the runs table, not the GenAI overview
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
DIGITS = 4


def parent_params(spec: spec_module.SweepSpec) -> dict[str, str]:
    """The sweep's design as params: ``factor.<name>`` = values, seeds, epochs, search mode, trial count."""
    params = {f"factor.{name}": "|".join(map(str, values)) for name, values in spec.factors.items()}
    params.update({f"factor.{name}": distribution.text() for name, distribution in spec.space.items()})
    params.update({f"fixed.{name}": str(value) for name, value in spec.fixed.items()})
    params.update(seeds=",".join(map(str, spec.seeds)), epochs=",".join(map(str, spec.epochs)),
                  search=spec.search["mode"], trials=str(spec.total_trials))
    if spec.answer:
        params.update({role: spec_module.cell_label(cell) for role, cell in spec.answer.items()})
    if spec.confirm:
        params.update(confirm=f"top={spec.confirm.top},seeds={','.join(map(str, spec.confirm.seeds))}")
    if spec.final:
        seeds = ",".join(map(str, spec.final.seeds))
        params.update(final=f"{spec_module.cell_label(spec.final.settings)};seeds={seeds}")
    return params


def cell_metric_name(epochs: int, values: list[Any], metric: str = names.VAL_ACC) -> str:
    """``mean_val_acc_at_2/19997/none`` (``mean_rmse_at_2/...`` for a sweep whose objective is ``rmse``): MLflow
    metric names allow letters, digits, ``_-./`` and spaces."""
    return f"mean_{names.metric_at(metric, epochs)}/" + "/".join(str(value) for value in values)


def summary_metrics(report) -> dict[str, float]:
    """Per-cell means, the gap and the factors' shares from a ``sweeps.report.make.Report``, rounded."""
    metrics: dict[str, float] = {}
    tables = report.tables
    objective = report.sweep.objective.name
    for cell in tables.cells:
        # The trainer's own cells (a reference's, the baselines', have no epoch count).
        if cell.get("epochs") is not None:
            metrics[cell_metric_name(int(cell["epochs"]), [cell[name] for name in tables.factors],
                                     objective)] = cell["mean"]
    for gap in tables.gaps:
        if not math.isnan(gap.gap_points):
            metrics[f"gap_points_at_{gap.epochs}"] = gap.gap_points
            for part in gap.contributions:
                metrics[f"gap_points_at_{gap.epochs}/{part.factor}"] = part.points
    for effect in tables.effects:
        if effect.kind == "main":
            metrics[f"share_at_{effect.epochs}/{effect.term}"] = effect.share
    for item in getattr(report.answer, "by_epochs", []):
        for name in ("leak_effect", "remainder"):
            contrast = getattr(item, name)
            if contrast is not None:
                metrics[f"answer_at_{item.epochs}/{name}_points"] = contrast.points
        metrics[f"answer_at_{item.epochs}/leak_share"] = item.leak_share
    for verdict in getattr(report, "verdicts", []):
        slug = "".join(character if character.isalnum() else "_" for character in verdict.source)[:60].strip("_")
        metrics[f"claim/{slug}/at_{verdict.epoch}/measured"] = verdict.mean
        metrics[f"claim/{slug}/at_{verdict.epoch}/published"] = verdict.published
    return {key: round(float(value), DIGITS) for key, value in metrics.items()
            if isinstance(value, (int, float)) and math.isfinite(value)}


def search_summary(report, spec: spec_module.SweepSpec | None = None) -> tuple[dict[str, str], dict[str, float]]:
    """(tags, metrics) of a search's ``SearchReport``: the best configuration as ``glovesweep.best.<factor>`` tags
    (and ``glovesweep.best_run``), ``best_<objective>`` (``/low``, ``/high``: its interval over the seeds, where it
    has several), ``best_epochs``, ``trials_finished`` and ``importance/<factor>`` (``/low``, ``/high``: the
    bootstrap interval).

    A search with a confirm stage (``spec.confirm``) writes the best configuration only once that stage is
    complete, and then the confirmed one (``glovesweep.best_confirmed=true``), with ``confirmed_<objective>_mean``
    (``_low``, ``_high``), ``search_<objective>`` (the search's own value of it), ``optimism_<objective>`` (``_low``,
    ``_high``) and the final stage's score ``test_<objective>_mean`` (``_low``, ``_high``)."""
    tables, objective = report.search, report.sweep.objective.name
    best = tables.best
    tags = {names.BEST_TAG_PREFIX + name: str(value) for name, value in report.best_configuration.items()}
    metrics = {"trials_finished": float(tables.trials["status"].eq("FINISHED").sum())}
    if best is not None:
        tags[names.BEST_RUN_TAG] = str(best["run_id"])
        metrics.update({f"best_{objective}": best["value"], "best_epochs": best["epochs"]})
        # A configuration trained at several seeds: the interval of its mean (NaN with one seed, left out below).
        metrics.update({f"best_{objective}/{end}": best.get(end) for end in ("low", "high")})
    confirmed = report.confirmed
    if spec is not None and spec.confirm and not confirm_complete(report, spec):
        tags = {}  # Not confirmed yet: the best configuration is written once, when it is.
    elif confirmed is not None:
        tags[names.CONFIRMED_TAG] = "true"
        tags[names.BEST_RUN_TAG] = confirmed.search_run
        score = confirmed.score
        metrics.update({names.stage_metric("confirmed", objective, part): getattr(score, part)
                        for part in names.CONFIRMED_PARTS})
        metrics.update({names.stage_metric("search", objective): confirmed.search_value,
                        names.stage_metric("optimism", objective): confirmed.optimism,
                        names.stage_metric("optimism", objective, "low"): confirmed.optimism_low,
                        names.stage_metric("optimism", objective, "high"): confirmed.optimism_high})
    final = report.stages.final if report.stages else None
    if final is not None:
        metrics.update({names.stage_metric("test", objective, part): getattr(final, part)
                        for part in names.CONFIRMED_PARTS})
    for item in tables.importances:
        metrics.update({f"importance/{item.factor}": item.value, f"importance/{item.factor}/low": item.low,
                        f"importance/{item.factor}/high": item.high})
    return tags, {key: round(float(value), DIGITS) for key, value in metrics.items()
                  if value is not None and not pd.isna(value) and math.isfinite(float(value))}


def confirm_complete(report, spec: spec_module.SweepSpec) -> bool:
    """Whether the report holds every configuration of the confirm stage at every fresh seed."""
    found = report.stages.confirmed if report.stages else []
    # A search that finished fewer trials than ``top`` confirms them all.
    expected = min(spec.confirm.top, int(report.search.trials["status"].eq("FINISHED").sum()))
    return len(found) >= expected and all(item.score.seeds >= len(spec.confirm.seeds) for item in found)


def answer_markdown(spec: spec_module.SweepSpec, report, *, report_url: str = "") -> str:
    """The parent run's description: the question, the answer sentences, where the full report is."""
    if getattr(report, "search", None) is not None:
        lines = [f"## {spec.name}: the best configuration of a {spec.search['mode']} search", ""]
        lines += ([spec.description.strip(), ""] if spec.description else [])
        lines += [f"- {sentence}" for sentence in report.answers]
        return "\n".join(lines + ["", f"Full report: the `report/` artifacts (report.html renders here){report_url}."])
    study = newsgroups.is_newsgroups(report.sweep.runs)
    objective = report.sweep.objective
    lines = [f"## {spec.name}: why does the Keras GloVe example score differently?" if study else
             f"## {spec.name}: which factor explains the gap in {objective.name}?", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += [f"**The answer** (computed by `glovesweep report` from the cell means"
              f"{' and the logged leak fractions' if study else f' of {objective.name}'}):", ""]
    lines += [f"- {sentence}" for sentence in report.answers]
    verdicts = getattr(report, "verdicts", [])
    if verdicts:
        lines += ["", "**Published claims** (measured mean [95% interval]; inside the 95% prediction interval of one "
                      "run?):", ""]
        lines += [f"- {verdict.source}, {spec_module.cell_label(verdict.cell)} @{verdict.epoch}: published "
                  f"{verdict.published:.2f}, {verdict.verdict}" for verdict in verdicts]
    lines += ["", f"Full report: the `report/` artifacts (report.html renders here){report_url}.",
              f"Design: {len(spec.cells())} cells x {len(spec.seeds)} seeds, epochs {spec.epochs}."]
    return "\n".join(lines)


def summarize(tracking_uri: str, experiment_id: str, parent_run_id: str, spec: spec_module.SweepSpec, report, *,
              data_checksums: dict[str, str]) -> None:
    """Write the answer onto the parent run: description, summary metrics, device and data tags."""
    devices = sorted({run.data.tags.get(names.DEVICE_TAG, "") for run in
                      mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id)
                      if run.data.tags.get(names.DEVICE_TAG)})
    tags = {NOTE_TAG: answer_markdown(spec, report), names.DEVICE_TAG: "; ".join(devices),
            "glovesweep.data_sha256": ";".join(f"{name}={digest}" for name, digest in sorted(data_checksums.items()))}
    if getattr(report, "search", None) is not None:
        best_tags, metrics = search_summary(report, spec)
        tags.update(best_tags)
    else:
        metrics = summary_metrics(report)
    mlflow_runs.log_to_run(tracking_uri, parent_run_id, tags=tags, metrics=metrics)


def view_state(spec: spec_module.SweepSpec, parent_run_id: str) -> dict[str, Any]:
    """MLflow UI state for the sweep's runs: its children only, factor and objective columns, best first (lowest
    first for a ``min`` objective)."""
    last = spec.max_epochs
    objective = spec.main_trainer.objective
    columns = ["attributes.`Run Name`", "attributes.`Dataset`"]
    columns += [f"params.`{name}`" for name in spec.factor_names if name != "epochs"]
    columns += [f"metrics.`{names.metric_at(objective.name, epochs)}`" for epochs in spec.epochs]
    extra = ("best_epoch", names.LEAK_FRACTION_VAL, "epoch_seconds_median") if spec.main_trainer.leak_metric else ()
    columns += [f"metrics.`{name}`" for name in extra]
    return {
        "searchFilter": f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'",
        "orderByKey": f"metrics.`{names.metric_at(objective.name, last)}`", "orderByAsc": objective.mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "selectedColumns": columns, "columnOrder": columns, "runsHiddenMode": "SHOW_ALL", "runsExpanded": {},
        "runsPinned": [], "runsHidden": [], "runsVisibilityMap": {}, "viewMaximized": False, "runListHidden": False,
        "groupBy": None, "groupsExpanded": {}, "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        "isAccordionReordered": False, "autoRefreshEnabled": True,
    }


def runs_table_url(tracking_uri: str, experiment_id: str, spec: spec_module.SweepSpec, parent_run_id: str,
                   *, ui_address: str) -> str:
    """Save the sweep's view on its experiment and return the URL of MLflow's classic runs table showing it."""
    state = view_state(spec, parent_run_id)
    key = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    mlflow_runs.set_experiment_tags(tracking_uri, experiment_id, {EXPERIMENT_KIND_TAG: CLASSIC_KIND,
                                                               SHARED_VIEW_PREFIX + key: json.dumps(state)})
    # The view carries the filter, order and columns; workflowType opens the model-training runs table.
    query = urllib.parse.urlencode({"workflowType": "machine_learning", "viewStateShareKey": key})
    return f"{ui_address.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def ui_address(tracking_uri: str, port: int = 5000) -> tuple[str, str]:
    """(UI address, command that serves it): a tracking server serves its own UI; a store needs ``glovesweep ui``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), f"(served by the tracking server {tracking_uri})"
    return f"http://127.0.0.1:{port}", f"glovesweep ui --tracking-uri {tracking_uri} --port {port}"


def conclude(spec: spec_module.SweepSpec, result, *, data_checksums: dict[str, str], write_report: bool = True,
             out_dir: str | None = None) -> None:
    """After a sweep: write its report, put the answer on the parent run, print the answer and where to look."""
    address, serve = ui_address(result.tracking_uri)
    url = runs_table_url(result.tracking_uri, result.experiment_id, spec, result.parent_run_id, ui_address=address)
    if write_report and result.done:
        from sweeps import report as report_module

        cells = {role: {name: str(value) for name, value in cell.items()} for role, cell in (spec.answer or {}).items()}
        report = report_module.make_report(result.parent_run_id, tracking_uri=result.tracking_uri, out_dir=out_dir,
                                           blog_cell=cells.get("blog_cell"), user_cell=cells.get("user_cell"))
        summarize(result.tracking_uri, result.experiment_id, result.parent_run_id, spec, report,
                  data_checksums=data_checksums)
        print("glovesweep: the best configuration:" if getattr(report, "search", None) is not None else
              "glovesweep: the answer:", flush=True)
        for sentence in report.answers or ["(none: the sweep lacks the blog's or the user's cell; see the report)"]:
            print(f"  {sentence}", flush=True)
        for verdict in getattr(report, "verdicts", []):
            print(f"  claim: {verdict.source} @{verdict.epoch} = {verdict.published:.2f}: {verdict.verdict}", flush=True)
        print(f"glovesweep: report: {report.files['markdown']} (also on the parent run under report/)", flush=True)
    elif write_report:
        print("glovesweep: no trial finished, so no report", flush=True)
    print(f"glovesweep: runs in MLflow: {url}", flush=True)
    print(f"glovesweep: serve that page with: {serve}", flush=True)
