"""What a report compares besides the runs: the blog's and the user's cells and the published claims.

They come from, in order: the ``--blog-cell`` / ``--user-cell`` flags; the sweep file's ``answer:`` and ``claims:``
blocks (``SweepSpec.answer`` / ``SweepSpec.claims``), read from the report folder's ``sweep.yaml`` copy or from
the parent run's ``sweep.yaml`` artifact; else ``DEFAULT_BLOG_CELL`` / ``DEFAULT_USER_CELL`` and no claims.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
from typing import Any

from sweeps.report import reader
from sweeps import spec as spec_module
from sweeps.tracking import names

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"  # the sweep file: artifact of the parent run, copy in a report folder
# Keras blog "Using pre-trained word embeddings in a Keras model" (2016): the 19,997-post 20_newsgroup folder,
# headers kept. The user's cell: bydate with scikit-learn's fetch_20newsgroups(remove=("headers", "footers",
# "quotes")), the setup of the Stack Exchange answer (about 0.55 at 10 epochs) and of the study.
DEFAULT_BLOG_CELL = {"dataset": "19997", "strip": "none"}
DEFAULT_USER_CELL = {"dataset": "bydate", "strip": "sklearn_all"}
FROM_FLAGS = "the --blog-cell/--user-cell flags"


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """The two cells (values as text), where they came from, the claims, and the sweep file's text if found."""

    blog_cell: dict[str, str]
    user_cell: dict[str, str]
    cells_from: str
    claims: list[dict[str, Any]]
    sweep_text: str = ""


def sweep_text(source: str, swept: reader.SweepFrame) -> str:
    """The sweep file's text: ``<folder>/sweep.yaml`` for a report folder, else the parent run's artifact; or ""."""
    if reader.is_folder(source):
        path = pathlib.Path(source) / SWEEP_FILE
        return path.read_text() if path.is_file() else ""
    import mlflow
    from mlflow import exceptions as mlflow_exceptions

    client = mlflow.MlflowClient(tracking_uri=swept.tracking_uri or None)
    with tempfile.TemporaryDirectory(prefix="glovesweep-sweep-file-") as scratch:
        try:
            path = client.download_artifacts(swept.parent_run_id, SWEEP_FILE, scratch)
        except (mlflow_exceptions.MlflowException, OSError) as error:
            logger.info("parent run %s has no readable %s (%s)", swept.parent_run_id, SWEEP_FILE, error)
            return ""
        return pathlib.Path(path).read_text()


def sweep_file_path(source: str, swept: reader.SweepFrame) -> str:
    """Where the sweep file is said to be: for runs read from MLflow, the parent run's ``glovesweep.sweep_file``
    tag, so that a trainer named ``module:function`` resolves beside the file as it did for the sweep; else
    ``<source>:sweep.yaml``."""
    fallback = f"{source}:{SWEEP_FILE}"
    if reader.is_folder(source):
        return fallback
    import mlflow
    from mlflow import exceptions as mlflow_exceptions

    try:
        tags = mlflow.MlflowClient(tracking_uri=swept.tracking_uri or None).get_run(swept.parent_run_id).data.tags
    except mlflow_exceptions.MlflowException:
        return fallback
    return tags.get(names.SWEEP_FILE_TAG) or fallback


def parse_spec(text: str, where: str) -> spec_module.SweepSpec | None:
    """The validated sweep file, or None (with a warning) when it no longer validates."""
    if not text:
        return None
    try:
        return spec_module.parse_sweep(text, source_path=where)
    except ValueError as error:
        logger.warning("the sweep file %s does not validate, so its answer and claims are not used: %s", where, error)
        return None


def resolve(source: str, swept: reader.SweepFrame, *, blog_cell: dict[str, Any] | None = None,
            user_cell: dict[str, Any] | None = None) -> ReportInputs:
    """The cells and claims of a report on ``swept`` (read from ``source``); see the module docstring."""
    text = sweep_text(str(source), swept)
    sweep = parse_spec(text, sweep_file_path(str(source), swept)) if text else None
    claims = list(sweep.claims) if sweep else []
    if blog_cell or user_cell:
        cells_from = FROM_FLAGS
        blog, user = blog_cell or DEFAULT_BLOG_CELL, user_cell or DEFAULT_USER_CELL
    elif sweep and sweep.answer:
        cells_from = "the sweep file's answer block"
        blog, user = sweep.answer["blog_cell"], sweep.answer["user_cell"]
    else:
        cells_from = "the defaults, as the sweep file names no answer cells"
        blog, user = DEFAULT_BLOG_CELL, DEFAULT_USER_CELL
    return ReportInputs(blog_cell={key: str(value) for key, value in blog.items()},
                        user_cell={key: str(value) for key, value in user.items()}, cells_from=cells_from,
                        claims=claims, sweep_text=text)
