"""Start the sweep's MLflow tracking server on a cluster's head node, reachable from the private network only.

Run by ``head_start_ray_commands`` in ``cluster/*.yaml`` (and by ``tests/test_multinode.py`` on 127.0.0.1):

    python cluster/start_mlflow.py --store ~/glovesweep-mlflow [--host auto] [--port 5000]
        [--artifacts-destination s3://bucket/mlflow-artifacts]
        [--backend-store-uri "$(bash cluster/setup_postgres.sh)" [--database-password-file ~/.pgpass]]

What it does:

- binds the server to the head's private address (``--host auto``: the address the head uses to reach other
  machines, the way Ray picks a node's IP) and to 127.0.0.1, so workers log over HTTP and users reach the UI
  through ``ray attach --port-forward 5000`` (an SSH tunnel to the head's 127.0.0.1); a public or wildcard
  address (``0.0.0.0``) is refused;
- accepts only Host headers naming that address or loopback (``MLFLOW_SERVER_ALLOWED_HOSTS``);
- keeps runs in the database ``--backend-store-uri`` names: on a cluster the head's own PostgreSQL
  (``cluster/setup_postgres.sh``, on 127.0.0.1; an external database's URL can replace it), because many trials
  write at once; a sqlite file on the head's disk when none is given. A URI never holds the password (it would
  show in ``ps``): libpq reads it from ``~/.pgpass`` or ``--database-password-file`` (mode 0600);
- proxies artifacts (``--serve-artifacts``) to ``--artifacts-destination`` (a bucket, or a folder on the head),
  so workers need no bucket credentials;
- stops a server it started before (pid file), waits until ``/health`` answers, writes the tracking URI to
  ``<store>/tracking_uri`` and prints it as the last stdout line;
- requires a login (``--auth basic``, the default): MLflow's basic-auth app (``--app-name basic-auth``) with
  its config in ``<store>/basic_auth.ini`` and the clients' credentials in ``<store>/credentials.env``
  (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``), both created once with mode 0600; a request
  without them gets 401 (``/health`` stays open for health checks).

It uses gunicorn (shipped with MLflow on Linux) because gunicorn binds several addresses in one server;
uvicorn, MLflow's default, binds one.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

DEFAULT_PORT = 5000
LOOPBACK = "127.0.0.1"
AUTH_CONFIG = "basic_auth.ini"
CREDENTIALS = "credentials.env"
ADMIN_USERNAME = "glovesweep"


def detect_private_address() -> str:
    """The IPv4 address this machine uses to reach other hosts (no packet is sent).

    Ray picks a node's IP the same way (``node_ip_address_from_perspective``): a UDP socket "connected" to
    an outside address reports the source address of the route to it. Falls back to the host name's address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("8.8.8.8", 80))
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def check_bind_address(host: str) -> str:
    """Return ``host`` if it is a private or loopback IP address; raise ``ValueError`` otherwise.

    Parameters
    ----------
    host : str
        An IPv4 or IPv6 address (no host names: a name could resolve to a public address later).

    Raises
    ------
    ValueError
        For a wildcard (``0.0.0.0``, ``::``), a public address, or something that is not an IP address.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--host {host!r}: not an IP address; give the head's private IP, or 'auto'") from None
    if address.is_unspecified:
        raise ValueError(f"--host {host}: binds every interface, public ones included; give the head's private "
                         f"IP (e.g. 10.0.1.23), or 'auto'")
    if not (address.is_private or address.is_loopback) or address.is_global:
        raise ValueError(f"--host {host}: a public address; the MLflow server must listen on the private network "
                         f"only. Give the head's private IP (10.x, 172.16-31.x, 192.168.x), or 'auto'")
    return host


def bind_addresses(host: str) -> list[str]:
    """Addresses the server listens on: the private one, plus 127.0.0.1 for SSH port-forwarding."""
    host = check_bind_address(host)
    return [host] if ipaddress.ip_address(host).is_loopback else [host, LOOPBACK]


def allowed_hosts(host: str, port: int) -> str:
    """Host headers the server accepts (MLflow's DNS-rebinding guard): the bind address and loopback names.

    MLflow's default list covers loopback and RFC 1918 ranges only, so a head whose private address lies
    elsewhere (100.64/10, or 192.0.2.0/24 on this test machine) would answer its own workers 403. Passed as
    ``MLFLOW_SERVER_ALLOWED_HOSTS``: the ``--allowed-hosts`` flag is refused together with ``--gunicorn-opts``.
    """
    hosts = [host, f"{host}:{port}"] if ":" not in host else [f"[{host}]", f"[[]{host}]:{port}"]
    return ",".join(hosts + ["localhost", "localhost:*", LOOPBACK, f"{LOOPBACK}:*"])


def server_command(*, host: str, port: int, store: pathlib.Path, artifacts_destination: str,
                   backend_store_uri: str = "", workers: int = 2, auth: str = "basic") -> list[str]:
    """The ``mlflow server`` command line (without starting it)."""
    addresses = bind_addresses(host)
    backend = backend_store_uri or f"sqlite:///{store / 'mlflow.db'}"
    # gunicorn takes one --bind per address; MLflow passes the first address itself (-b host:port).
    extra_binds = " ".join(f"--bind {address}:{port}" for address in addresses[1:])
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--serve-artifacts", "--artifacts-destination", artifacts_destination,
        "--host", addresses[0], "--port", str(port), "--workers", str(workers),
        "--gunicorn-opts", f"{extra_binds} --timeout 120".strip(),
        *(["--app-name", "basic-auth"] if auth == "basic" else []),
    ]


def write_private(path: pathlib.Path, text: str) -> None:
    """Create ``path`` readable and writable by its owner only (0600, whatever the umask) and write ``text``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def auth_environment(store: pathlib.Path) -> dict[str, str]:
    """The basic-auth app's environment; creates its config and the client credentials on the first call.

    MLflow creates the admin user from ``admin_password`` when its user store is empty (MLflow ships no default
    password); the same password goes to ``credentials.env`` for clients. The Flask secret key (CSRF) must be
    the same in every gunicorn worker, so it is kept beside them.
    """
    config, credentials, secret_key = store / AUTH_CONFIG, store / CREDENTIALS, store / "flask_secret_key"
    if not (config.exists() and credentials.exists() and secret_key.exists()):
        password = secrets.token_urlsafe(24)
        write_private(config, "[mlflow]\ndefault_permission = READ\n"
                              f"database_uri = sqlite:///{store / 'basic_auth.db'}\n"
                              f"admin_username = {ADMIN_USERNAME}\nadmin_password = {password}\n"
                              "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        write_private(credentials, f"MLFLOW_TRACKING_USERNAME={ADMIN_USERNAME}\nMLFLOW_TRACKING_PASSWORD={password}\n")
        write_private(secret_key, secrets.token_hex(32))
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key.read_text().strip()}


def check_backend_store_uri(uri: str) -> str:
    """Return ``uri`` unless it carries a password (``user:secret@host``); raise ``ValueError`` naming the fix."""
    from urllib import parse

    if "://" in uri and not uri.startswith("sqlite"):
        if parse.urlsplit(uri).password:
            raise ValueError("--backend-store-uri holds a password, which every user of this machine sees in ps; "
                             "drop it from the URI and put it in ~/.pgpass (host:port:database:user:password, "
                             "mode 0600) or --database-password-file")
    return uri


def wait_healthy(url: str, *, timeout_seconds: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/health`` until it answers 200; raise ``OSError`` on timeout or when the server exited."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise OSError(f"the MLflow server exited with code {process.returncode} before answering {url}/health")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise OSError(f"the MLflow server did not answer {url}/health within {timeout_seconds:.0f} s")


def stop_previous(pid_file: pathlib.Path) -> None:
    """Stop the server a previous run started (its process group), if it is still alive."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pid_file.unlink(missing_ok=True)
        return
    for _ in range(50):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


def start(*, host: str, port: int, store: str | os.PathLike, artifacts_destination: str = "",
          backend_store_uri: str = "", database_password_file: str = "", timeout_seconds: float = 90.0,
          auth: str = "basic") -> str:
    """Start the server detached (its own session, survives the SSH command), return its tracking URI.

    Parameters
    ----------
    host : str
        Private IP to bind, or ``auto``.
    port : int
        TCP port.
    store : path-like
        Head folder for the sqlite file, the log, the pid file and (by default) the artifacts.
    artifacts_destination : str
        Bucket URI or folder the server stores artifacts in; default ``<store>/artifacts``.
    backend_store_uri : str
        SQLAlchemy URI of the run store, without a password; default ``sqlite:///<store>/mlflow.db``.
    database_password_file : str
        libpq password file (``PGPASSFILE``) for the run store; default ``~/.pgpass``.
    timeout_seconds : float
        How long to wait for ``/health``, in seconds.
    auth : str
        ``basic`` (a login, see the module docstring) or ``none``.
    """
    host = detect_private_address() if host == "auto" else host
    backend_store_uri = check_backend_store_uri(backend_store_uri)
    store = pathlib.Path(store).expanduser().resolve()
    store.mkdir(parents=True, exist_ok=True)
    if auth == "basic":
        store.chmod(0o700)  # The run and user stores (password hashes) are the owner's only.
    artifacts_destination = artifacts_destination or str(store / "artifacts")
    command = server_command(host=host, port=port, store=store, artifacts_destination=artifacts_destination,
                             backend_store_uri=backend_store_uri, auth=auth)
    pid_file = store / "mlflow-server.pid"
    stop_previous(pid_file)
    # Tracking needs no MLflow job runners (MLflow 3.x starts several huey workers otherwise).
    environment = dict(os.environ, MLFLOW_SERVER_ALLOWED_HOSTS=allowed_hosts(host, port),
                       MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                       **(auth_environment(store) if auth == "basic" else {}))
    if database_password_file:
        environment["PGPASSFILE"] = str(pathlib.Path(database_password_file).expanduser().resolve())
    with open(store / "mlflow-server.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=store, env=environment)
    pid_file.write_text(str(process.pid))
    url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    try:
        wait_healthy(url, timeout_seconds=timeout_seconds, process=process)
    except OSError:
        stop_previous(pid_file)
        raise
    (store / "tracking_uri").write_text(url + "\n")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="auto", help="Private IP to bind, or 'auto' (default).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 5000).")
    parser.add_argument("--store", default="~/glovesweep-mlflow", help="Head folder for the run store and log.")
    parser.add_argument("--artifacts-destination", default="", help="Bucket URI or folder; default <store>/artifacts.")
    parser.add_argument("--backend-store-uri", default="",
                        help="Run store URI without a password (cluster/setup_postgres.sh prints one); default "
                             "sqlite:///<store>/mlflow.db.")
    parser.add_argument("--database-password-file", default="",
                        help="libpq password file for the run store (default: ~/.pgpass).")
    parser.add_argument("--timeout", type=float, default=90.0, help="Seconds to wait for /health.")
    parser.add_argument("--stop", action="store_true", help="Stop the server started from --store and exit.")
    parser.add_argument("--auth", choices=("basic", "none"), default="basic",
                        help="basic (default): require the login in <store>/credentials.env; none: no login.")
    args = parser.parse_args(argv)
    if args.stop:
        stop_previous(pathlib.Path(args.store).expanduser().resolve() / "mlflow-server.pid")
        return 0
    try:
        url = start(host=args.host, port=args.port, store=args.store, artifacts_destination=args.artifacts_destination,
                    backend_store_uri=args.backend_store_uri, database_password_file=args.database_password_file,
                    timeout_seconds=args.timeout, auth=args.auth)
    except (ValueError, OSError) as error:
        print(f"start_mlflow: error: {error}", file=sys.stderr)
        return 2
    if args.auth == "basic":
        credentials = pathlib.Path(args.store).expanduser().resolve() / CREDENTIALS
        print(f"start_mlflow: clients log in with {credentials} (set -a; . {credentials}; set +a)", file=sys.stderr)
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
