"""Fan work out as Ray tasks and merge the results in order.

Every command that takes ``--ray`` splits its work into independent items (a fleet batch, a
family's evaluation fleet, a log file, a chunk of drives), runs one Ray task an item and gets
the results back in item order, so merging them is the same code as locally. Ray is imported
here and only when a command asks for it: without ``--ray`` nothing changes.

Faults: a task whose worker process or node dies is retried (``MAX_RETRIES``); its result is
taken once, when it finally returns, so nothing is counted twice. The head node holds the
cluster's state: once it is gone nothing can be recovered, and the command fails with one
sentence (a re-run starts over). Ray itself would hang for minutes on an unreachable head, so
the address is checked with a plain TCP connect first, and while tasks run the head's port is
watched.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import posixpath
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from dojo.errors import ClusterError, DojoConfigError, DojoError

ENV = "DOJO_RAY_ADDRESS"
AUTO = "auto"
MAX_RETRIES = 3  # attempts after the first, per task, when its worker or node dies
_CONNECT_S = 5.0  # [s] TCP check of the head before Ray is asked to connect
_WATCH_S = 1.0  # [s] how often the head is checked while tasks run
_PROBE_S = 60.0  # [s] the longest a reachability probe may take on a node

T = TypeVar("T")
R = TypeVar("R")


def resolve_address(flag: str | None) -> str | None:
    """The Ray address to use: ``flag`` (``--ray``), else ``$DOJO_RAY_ADDRESS``, else None (local).

    An address is ``HOST:PORT`` (a head started with ``ray start --head``) or ``auto`` (the
    cluster this machine belongs to).
    """
    value = flag if flag is not None else os.environ.get(ENV) or None
    if value is None:
        return None
    value = value.strip()
    if value == AUTO:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        where = "--ray" if flag is not None else ENV
        raise DojoConfigError(
            f"{where}={value!r} is not a Ray address; give HOST:PORT (the head's GCS port, "
            f"6379 by default) or 'auto'."
        )
    return value


def add_ray_flag(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` on a command; a bare ``--ray`` means ``auto``."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=AUTO,
        default=None,
        metavar="ADDRESS",
        help=f"run the work as Ray tasks on the cluster at ADDRESS (HOST:PORT, or 'auto' when "
        f"bare; default ${ENV}, else local processes). Needs dojo[ray] on every node",
    )


def _reachable(host: str, port: int, timeout_s: float) -> str | None:
    """None when a TCP connection to host:port opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def connect(address: str) -> Any:
    """Connect this process to the Ray cluster at ``address`` (once) and return the ray module."""
    # Ray holds back repeated driver messages (a lost raylet's log tail) and prints them when it
    # shuts down, on the main thread, after a command's result; printed at once, they go where
    # the CLI sends other threads' output (stderr). Read when ray is first imported.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"--ray {address} needs Ray, which is not installed; pip install 'dojo[ray]'.",
            address=address,
        ) from None
    if ray.is_initialized():
        return ray
    if address != AUTO:
        why = _reachable(*_split(address), _CONNECT_S)
        if why is not None:
            raise ClusterError(
                f"No Ray cluster answers at {address} ({why}); start one with "
                f"`ray start --head --port {_split(address)[1]}` or check the address.",
                address=address,
            )
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep a command's --json output clean
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ... with long messages
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "version" in str(e).lower() and "mismatch" in str(e).lower():
            raise ClusterError(
                f"The Ray cluster at {address} runs another Ray or Python version than this "
                f"machine (ray {ray.__version__}, Python {sys.version.split()[0]}); install the "
                f"same versions on every node ({first}).",
                address=address,
            ) from None
        raise ClusterError(
            f"Cannot connect to the Ray cluster at {address} ({first}).", address=address
        ) from None
    return ray


def cluster_cpus(address: str) -> int:
    """The CPUs of the cluster's live nodes."""
    ray = connect(address)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """One task: ``fn(shared, item)`` with one torch thread (a task a core, as the local pool)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    return fn(shared, item)


def _head(ray: Any, address: str) -> tuple[str, int]:
    if address != AUTO:
        return _split(address)
    return _split(ray.get_runtime_context().gcs_address)


def _lost(address: str, why: str) -> ClusterError:
    return ClusterError(
        f"The Ray cluster at {address} was lost mid-run ({why}); nothing was merged, re-run the "
        f"command once the cluster is back.",
        address=address,
    )


def _task_error(ray: Any, address: str, e: BaseException) -> BaseException:
    """The error to raise for a task that failed for good: the task's own error where it is ours."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, DojoError):
        return cause
    text = str(e)
    if "No module named 'dojo" in text:
        return ClusterError(
            f"The Ray workers at {address} cannot import dojo; install the same dojo (and "
            f"dojo[ray]) on every node.",
            address=address,
        )
    died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
    if isinstance(e, died) or isinstance(cause, died):
        return ClusterError(
            f"A task on the Ray cluster at {address} lost its worker {MAX_RETRIES + 1} times "
            f"({type(e).__name__}); nothing was merged.",
            address=address,
        )
    return e


def map_tasks(
    fn: Callable[[Any, T], R],
    items: Sequence[T],
    address: str,
    shared: Any = None,
    finished: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(shared, item) for item in items]``, one Ray task an item, results in item order.

    ``fn`` must be a module-level function (it is sent by reference); ``shared`` is put in the
    object store once for all tasks. ``finished(i, result)`` is called as each task returns.
    """
    ray = connect(address)
    head = _head(ray, address)
    remote = ray.remote(_call).options(num_cpus=1, max_retries=MAX_RETRIES)
    results: list[Any] = [None] * len(items)
    with contextlib.redirect_stdout(sys.stderr):
        ref = ray.put(shared)
        pending = {remote.remote(fn, ref, item): i for i, item in enumerate(items)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_WATCH_S)
            if not ready:
                why = _reachable(*head, _CONNECT_S)
                if why is not None:
                    raise _lost(address, f"its head at {head[0]}:{head[1]}: {why}")
                continue
            for r in ready:
                i = pending.pop(r)
                try:
                    results[i] = ray.get(r)
                except Exception as e:
                    raise _task_error(ray, address, e) from None
                if finished is not None:
                    finished(i, results[i])
    return results


def _probe_one(url: str, marker: str | None, size: int | None) -> str | None:
    """On one node: None when ``url`` is there as the driver sees it, else why not."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
        if marker is not None:
            return None if fs.exists(marker) else "the folder is not the one this machine sees"
        got = fs.size(root)
        return None if got == size else f"the file there has {got} bytes, not {size}"
    except FileNotFoundError:
        return "it does not exist there"
    except Exception as e:  # a missing filesystem driver, no credentials, ...
        return f"{type(e).__name__}: {e}"


def _probe(checks: list[tuple[str, str | None, int | None]]) -> list[str | None]:
    """On one node, every path at once (one task a node, however many paths)."""
    return [_probe_one(*check) for check in checks]


@contextlib.contextmanager
def _marker(fs: Any, folder: str, url: str) -> Iterator[str]:
    """A uniquely named empty file in ``folder`` while the nodes look for it; its URL."""
    path = posixpath.join(folder, f".dojo-reach-{uuid.uuid4().hex}")
    fs.pipe_file(path, b"")
    try:
        yield fs.unstrip_protocol(path) if "://" in url else path
    finally:
        with contextlib.suppress(OSError):
            fs.rm(path)


def check_shared_path(
    address: str,
    urls: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    what: str,
) -> None:
    """Raise ClusterError unless every live node of the cluster sees ``urls`` as this machine does.

    A folder is probed with a marker file written here; a file by its size; all of them in one
    task a node. ``what`` names the path in the error (``store``, ``input``, ...).
    """
    import fsspec
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray = connect(address)
    many = [urls] if isinstance(urls, str | os.PathLike) else list(urls)
    texts = [os.fspath(u) for u in many]
    probe = ray.remote(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    with contextlib.ExitStack() as stack:
        checks: list[tuple[str, str | None, int | None]] = []
        for text in texts:
            fs, root = fsspec.core.url_to_fs(text)
            if fs.isdir(root):
                checks.append((text, stack.enter_context(_marker(fs, root, text)), None))
            else:
                checks.append((text, None, fs.size(root)))
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        refs = [
            probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(checks)
            for n in nodes
        ]
        try:
            answers = ray.get(refs, timeout=_PROBE_S)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(
                f"Checking that the Ray nodes at {address} reach the {what} {', '.join(texts)} "
                f"took over {_PROBE_S:.0f} s; a node does not answer.",
                address=address,
            ) from None
    for node, whys in zip(nodes, answers, strict=True):
        for text, why in zip(texts, whys, strict=True):
            if why is not None:
                raise ClusterError(
                    f"The {what} {text} is not reachable from Ray node "
                    f"{node.get('NodeManagerAddress', '?')} ({why}); put it where every node "
                    f"reaches it (a shared folder or an fsspec object-store URL such as s3://...).",
                    address=address,
                )
