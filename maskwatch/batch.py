"""``maskwatch batch``: archives of videos spread over a Ray cluster, each video one task running ``maskwatch run``.

Every task calls :func:`maskwatch.pipeline.run_pipeline` (the engine of ``run``,
no second loop) into the one configured store, its run's ``node`` naming the Ray
node it ran on. A video already finished in the store with the same config is
skipped, so a batch that was stopped is resumed by running it again.

Ray is optional (``pip install 'maskwatch[cluster]'``) and only imported here.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import select
from sqlalchemy.engine import make_url

from common import InputError, redact_url
from maskwatch.config import AppConfig

INSTALL_HINT = "maskwatch batch needs Ray: pip install 'maskwatch[cluster]'"
CONNECT_TIMEOUT_S = 5.0
INIT_TIMEOUT_S = 60.0
DEFAULT_RAY_PORT = 6379


class StoreUnavailable(Exception):
    """The store could not be opened from a task: worth another try (a database restarting), unlike a bad video."""


@dataclass
class BatchResult:
    finished: list[dict] = field(default_factory=list)  # one summary line per video: source, run_id, node, frames
    skipped: list[tuple[str, int]] = field(default_factory=list)  # (source, finished run id)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, one-line reason)
    interrupted: bool = False


def expand_sources(patterns: list[str]) -> list[Path]:
    """Videos (or image folders) named or matched by glob patterns, absolute, each once, in the order given."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no file matches {pattern}")
        elif not Path(pattern).exists():
            raise InputError(f"input not found: {pattern}")
        else:
            matches = [pattern]
        found.update((Path(m).resolve(), None) for m in matches)
    return list(found)


def config_hash(config: dict) -> str:
    """What makes two runs the same processing: the redacted config less ``store`` (where results go, not what they are)."""
    data = {key: value for key, value in config.items() if key != "store"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def video_out_dir(out: Path, source: Path) -> Path:
    """Each video's files (summary.json, tracks, MOTS) in its own folder: its name and a hash of its whole path."""
    return out / f"{source.name}-{hashlib.sha1(str(source).encode()).hexdigest()[:8]}"


def prepare_config(config: AppConfig, out: Path) -> AppConfig:
    """One store and one snapshot folder for every video: the configured ones, else SQLite and snapshots in ``out``."""
    config = config.model_copy(deep=True)
    if config.store.url is None:
        config.store.url = f"sqlite:///{(out / 'maskwatch.db').resolve()}"
    if config.store.snapshot_dir is None:
        config.store.snapshot_dir = str((out / "snapshots").resolve())
    return config


def finished_runs(url: str, sources: list[Path], config: AppConfig) -> dict[Path, int]:
    """The videos among ``sources`` already finished in the store with this config: path -> run id.

    Opening the store here also brings its schema up to date once, before tasks open it together.
    """
    from maskwatch.pipeline import store_errors
    from storage.schema import runs
    from storage.store import Store

    wanted = config_hash(config.redacted())
    by_name = {redact_url(str(path)): path for path in sources}  # as run_pipeline records a run's source
    done: dict[Path, int] = {}
    with store_errors(url), Store(url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            select(runs.c.id, runs.c.source, runs.c.config_json)
            .where(runs.c.status == "finished", runs.c.source.in_(list(by_name)))
            .order_by(runs.c.id)
        )
        for row in rows:
            try:
                same = config_hash(json.loads(row.config_json)) == wanted
            except ValueError:
                same = False
            if same:
                done[by_name[row.source]] = row.id
    return done


def _split_address(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, DEFAULT_RAY_PORT
    if not port.isdigit():
        raise InputError(f"--ray {address}: expected auto or HOST:PORT (the head's address, e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def _local_hosts() -> set[str]:
    hosts = {"localhost", socket.gethostname(), socket.getfqdn()}
    try:
        hosts.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    return hosts


def is_local(host: str) -> bool:
    """Whether ``host`` is this machine (loopback or one of its own names and addresses)."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in _local_hosts()


def check_reachable(address: str) -> None:
    """A one-line error, within seconds, when nothing listens at the cluster's address (Ray itself would retry for long)."""
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise InputError(f"cannot reach Ray cluster at {address}: {reason}") from None


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def check_store_for_cluster(url: str, node_hosts: list[str], address: str) -> None:
    """Refuse a store the cluster's other machines could not share: SQLite, or a database named as localhost."""
    remote = sorted({h for h in node_hosts if not is_local(h)})
    if not remote:
        return
    if _is_sqlite(url):
        raise InputError(f"a SQLite store is only for a cluster on this machine ({address} has nodes on "
                         f"{', '.join(remote)}): set store.url to a PostgreSQL database every node reaches")
    host = make_url(url).host
    if host is None or is_local(host):
        raise InputError(redact_url(f"store {url} names this machine ({host or 'local socket'}); workers on "
                                    f"{', '.join(remote)} would not reach it: use an address they can reach"))


def connect(address: str, url: str):
    """``ray.init`` for ``--ray auto`` (start or join a Ray on this machine) or ADDRESS (join that cluster); the ray module."""
    if importlib.util.find_spec("ray") is None:
        raise InputError(INSTALL_HINT)
    if address != "auto":
        host, _ = _split_address(address)
        if _is_sqlite(url) and not is_local(host):
            raise InputError(f"a SQLite store is only for a cluster on this machine, not {address}: "
                             "set store.url to a PostgreSQL database every node reaches")
        check_reachable(address)
    import ray

    _init(ray, address)
    here = ray.util.get_node_ip_address()  # this machine as Ray sees it (a local Ray binds to its network address)
    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive") and n["NodeManagerAddress"] != here]
    try:
        check_store_for_cluster(url, nodes, address)
    except InputError:
        ray.shutdown()
        raise
    return ray


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    return "not the main thread" not in record.getMessage()


def _init(ray, address: str) -> None:
    """``ray.init``, given ``INIT_TIMEOUT_S``: past the port check Ray itself waits on a GCS it cannot reach for minutes
    (e.g. a head started on 127.0.0.1 joined from a driver that resolves loopback to the machine's address)."""
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=None if address == "auto" else address, logging_level=logging.WARNING, log_to_driver=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    logging.getLogger("ray._private.worker").addFilter(_not_main_thread_warning)  # SIGTERM stays as the CLI set it
    thread = threading.Thread(target=init, name="ray-init", daemon=True)
    thread.start()
    thread.join(INIT_TIMEOUT_S)
    if thread.is_alive():
        raise InputError(f"cannot join Ray cluster at {address}: no answer within {INIT_TIMEOUT_S:.0f} s")
    if failure:
        exc = failure[0]
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot join Ray cluster at {address}: {detail}") from None


def process_video(source: str, config: AppConfig, out_dir: str) -> dict:
    """One Ray task: ``maskwatch run`` of one video, its run recorded as processed on this Ray node."""
    import ray

    from maskwatch.pipeline import run_pipeline

    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()}"
    try:
        summary = run_pipeline(Path(source), config, Path(out_dir), console=Console(stderr=True, quiet=True),
                               show_progress=False, node=node)
    except InputError as exc:  # the video's own fault (corrupt, unreadable): another try would fail the same way
        message = str(exc)
        if message.startswith("cannot open store"):
            raise StoreUnavailable(message) from None
        return {"source": source, "status": "failed", "error": message, "node": node}
    return {"source": source, "status": "interrupted" if summary["interrupted"] else "finished",
            "run_id": summary["run_id"], "frames": summary["frames"], "elapsed_s": summary["elapsed_s"], "node": node}


def _reason(exc: BaseException) -> str:
    """One line for a task that failed every try: the original exception's, not Ray's wrapper."""
    cause = getattr(exc, "cause", None) or exc
    text = (str(cause).strip().splitlines() or [""])[0]
    return redact_url(f"{type(cause).__name__}: {text}" if not isinstance(cause, StoreUnavailable) else text)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)


def run_batch(
    sources: list[Path],
    config: AppConfig,
    out: Path,
    address: str = "auto",
    *,
    retries: int = 2,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    console: Console | None = None,
) -> BatchResult:
    """Process every video of ``sources`` not yet finished in the store as a Ray task, spread over the cluster.

    Tasks whose worker or node dies, or whose store cannot be opened, are tried
    again up to ``retries`` times; a video that cannot be read fails at once and
    is listed with its reason. Ctrl-C cancels the tasks not yet done.
    """
    console = console or Console(stderr=True)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = prepare_config(config, out)
    url = config.store.url
    result = BatchResult()
    ray = connect(address, url)  # before the store: an unreachable cluster is reported without touching it
    try:
        done = finished_runs(url, sources, config)
        for source, run_id in done.items():
            result.skipped.append((str(source), run_id))
            console.print(f"skipped {source}: finished in run {run_id} with this config", markup=False, highlight=False)
        todo = [s for s in sources if s not in done]
        if not todo:
            return result
        task = ray.remote(process_video).options(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=retries,
            retry_exceptions=[StoreUnavailable, ConnectionError, TimeoutError], scheduling_strategy="SPREAD",
        )
        pending = {task.remote(str(s), config, str(video_out_dir(out, s))): str(s) for s in todo}
        try:
            with _progress(console) as progress:
                bar = progress.add_task("videos", total=len(todo), failed=0)
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                    for ref in ready:
                        source = pending.pop(ref)
                        try:
                            line = ray.get(ref)
                        except Exception as exc:  # every try failed: a crashed worker, a lost node, an unexpected error
                            line = {"source": source, "status": "failed", "error": _reason(exc)}
                        if line["status"] == "finished":
                            result.finished.append(line)
                        else:
                            result.failed.append((source, line.get("error", line["status"])))
                        progress.update(bar, advance=1, failed=len(result.failed))
        except KeyboardInterrupt:
            result.interrupted = True
            for ref in pending:
                ray.cancel(ref, force=True)
            result.failed.extend((source, "cancelled (Ctrl-C)") for source in pending.values())
        return result
    finally:
        ray.shutdown()
