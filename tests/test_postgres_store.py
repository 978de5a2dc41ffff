"""The cluster's tracking store for many writers: a real PostgreSQL (set up by ``cluster/setup_postgres.sh``, as on
a head) behind a real MLflow server (``cluster/start_mlflow.py``), and two sweeps submitted at once writing to it.

PostgreSQL's initdb refuses root, and CI runs as root: the script then runs the server as ``postgres``.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from conftest import free_port
from test_multinode import listening_addresses
from test_service import assert_every_cell_once, service, submit, tiny_home, wait_for_state, write_sweep  # noqa: F401

from sweeps.service import jobs

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres_mlflow():
    """PostgreSQL on a free loopback port in a temporary folder, and an MLflow server using it."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run does it)")
    folder = pathlib.Path(tempfile.mkdtemp(prefix="gs-pg-", dir="/tmp"))
    folder.chmod(0o755)  # The server may run as `postgres`, which must reach its data folder.
    port, mlflow_port = free_port(), free_port()
    password_file = folder / "pgpass"
    store = folder / "mlflow"
    try:
        result = subprocess.run(["bash", str(ROOT / "cluster" / "setup_postgres.sh"), "--folder", str(folder / "pg"),
                                 "--port", str(port), "--password-file", str(password_file)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        uri = result.stdout.strip().splitlines()[-1]
        started = subprocess.run([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--host", "127.0.0.1",
                                  "--port", str(mlflow_port), "--store", str(store), "--backend-store-uri", uri,
                                  "--database-password-file", str(password_file), "--timeout", "180"],
                                 capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stderr[-3000:] + (store / "mlflow-server.log").read_text()[-3000:]
        # The server requires its login (MLflow's basic-auth app); the credentials file is the owner's only.
        credentials = store / "credentials.env"
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        login = dict(line.split("=", 1) for line in credentials.read_text().splitlines() if "=" in line)
        yield {"database_uri": uri, "port": port, "password_file": password_file, "folder": folder,
               "tracking_uri": started.stdout.strip().splitlines()[-1], "setup_output": result.stdout,
               "login": login}
    finally:
        subprocess.run([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--stop", "--store", str(store)],
                       timeout=60)
        pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, pg_ctl, "-D", str(folder / "pg" / "data"), "stop", "-m", "fast"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_listens_on_loopback_only_with_its_password_in_a_0600_file(postgres_mlflow):
    uri = postgres_mlflow["database_uri"]
    assert uri == f"postgresql+psycopg2://glovesweep@127.0.0.1:{postgres_mlflow['port']}/mlflow"  # no password
    assert listening_addresses(postgres_mlflow["port"]) == {"127.0.0.1"}
    assert stat.S_IMODE(postgres_mlflow["password_file"].stat().st_mode) == 0o600
    (line,) = postgres_mlflow["password_file"].read_text().splitlines()
    assert line.startswith(f"127.0.0.1:{postgres_mlflow['port']}:mlflow:glovesweep:") and len(line.split(":")[-1]) == 48
    # Idempotent (every head start runs it): same URI, same password, nothing re-initialised.
    again = subprocess.run(["bash", str(ROOT / "cluster" / "setup_postgres.sh"), "--folder",
                            str(postgres_mlflow["folder"] / "pg"), "--port", str(postgres_mlflow["port"]),
                            "--password-file", str(postgres_mlflow["password_file"])],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == uri
    assert postgres_mlflow["password_file"].read_text().splitlines() == [line]
    # A wrong password is refused: authentication is really on.
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=postgres_mlflow["port"], dbname="mlflow", user="glovesweep",
                         password="wrong", connect_timeout=10)


def test_start_mlflow_refuses_a_password_in_the_database_url(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--host", "127.0.0.1",
                             "--store", str(tmp_path / "store"), "--backend-store-uri",
                             "postgresql+psycopg2://glovesweep:secret@db.internal:5432/mlflow"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "~/.pgpass" in result.stderr and "secret" not in result.stderr
    assert not (tmp_path / "store" / "mlflow-server.pid").exists()


@pytest.mark.slow
def test_two_submitted_sweeps_write_to_mlflow_on_postgres(postgres_mlflow, service, ray_head, capsys, tiny_home,
                                                          tmp_path, monkeypatch):
    uri = postgres_mlflow["tracking_uri"]
    for name, value in postgres_mlflow["login"].items():
        monkeypatch.setenv(name, value)
    names = ("postgres-a", "postgres-b")
    ids = []
    for name, extra in zip(names, ([], ["--upload-code"])):
        (tmp_path / name).mkdir()
        ids.append(submit(service, capsys, write_sweep(tmp_path / name, name=name, tracking_uri=uri, seeds=1),
                          tiny_home, *extra))
    for sweep_id in ids:
        assert wait_for_state(service, capsys, sweep_id, jobs.TERMINAL)["state"] == "succeeded"
    # The second shipped this checkout with the job (Ray's working_dir) instead of the cluster's install.
    client = jobs.connect(ray_head.url)
    assert client.get_job_info(ids[0]).entrypoint.startswith("glovesweep run --sweep-from-env ")
    second = client.get_job_info(ids[1])
    assert second.entrypoint.startswith("python -m sweeps.cli run --sweep-from-env ")
    assert second.runtime_env["working_dir"].startswith("gcs://")
    parents = {assert_every_cell_once(uri, name, seeds=1, epochs=2, sweep_id=sweep_id)[0].info.run_id
               for name, sweep_id in zip(names, ids)}
    assert len(parents) == 2
    # The runs are rows of the PostgreSQL database (not a fallback store).
    import psycopg2

    password = postgres_mlflow["password_file"].read_text().strip().split(":")[-1]
    with psycopg2.connect(host="127.0.0.1", port=postgres_mlflow["port"], dbname="mlflow", user="glovesweep",
                          password=password) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid, status FROM runs")
        rows = dict(cursor.fetchall())
    assert parents <= set(rows) and len(rows) == 4 and set(rows.values()) == {"FINISHED"}
