"""A sandbox for tenant code: Debian's bubblewrap, resource limits, a wall clock.

A tenant's training script runs in namespaces of its own (``bwrap --unshare-all``):

- a mount namespace holding only the Python environment and the system's ``/usr`` (read-only),
  the tenant's code (read-only, ``/job/code``), its dataset (read-only, ``/job/data``) and the
  job's folder (read-write, ``/job/work``, also its home), a private ``/tmp`` and a minimal
  ``/dev``; nothing else of the host: no other tenant's folder, no job store, no service
  config;
- no network: a network namespace with loopback alone, so processes of one job can talk to each
  other (``torchrun``'s rendezvous) and to nothing else;
- a PID namespace (no other process is visible), its own IPC and UTS;
- user 65534 (nobody) with no capabilities, a cleared environment (only what :func:`run` sets);
- limits through ``setrlimit`` inherited by everything it starts: address space, processes
  (also a pids cgroup where the host allows one: a fork bomb stops at the cap), open files, the size of any one file it writes (a disk
  filler gets ``EFBIG``), CPU seconds; and a wall clock after which the whole process group is
  killed. The job folder's total size is checked after the run against ``output_bytes``.

When the agent runs as root (as on the CI machines), bubblewrap maps the sandbox's user onto
root outside the namespace, so what it writes in its job folder is root's; nothing else is in
its mount namespace. A production agent runs as a dedicated unprivileged user, and the sandbox
is then that user outside as well.

``available()`` says whether bubblewrap runs here; the agent refuses tenant code without it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dojo.errors import ConfigError, ServiceError

BWRAP = "bwrap"
SANDBOX_UID = 65534  # nobody
CODE, DATA, WORK = "/job/code", "/job/data", "/job/work"
HOSTS_FILE = Path(__file__).with_name("sandbox_hosts")
KILL_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL [s]


@dataclass(frozen=True)
class Limits:
    """What one sandboxed job may use; each a hard limit."""

    memory_bytes: int = 8 << 30  # address space of each process
    processes: int = 256  # processes and threads of the sandbox's user
    open_files: int = 1024  # per process
    file_bytes: int = 2 << 30  # the largest file it may write
    output_bytes: int = 4 << 30  # the job folder in all, checked after the run
    cpu_s: int = 24 * 3600  # CPU seconds of each process
    wall_s: float = 3600.0  # [s] the whole run

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "processes",
            "open_files",
            "file_bytes",
            "output_bytes",
            "cpu_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"sandbox {name}={value!r} must be a whole number >= 1.")
        if (
            isinstance(self.wall_s, bool)
            or not isinstance(self.wall_s, (int, float))
            or not self.wall_s > 0
        ):
            raise ConfigError(f"sandbox wall_s={self.wall_s!r} must be a number of seconds > 0.")


@dataclass(frozen=True)
class SandboxResult:
    returncode: int  # the command's exit status (negative: killed by that signal)
    timed_out: bool  # killed at the wall clock
    output_bytes: int  # the job folder's size after the run
    over_output: bool  # it exceeded Limits.output_bytes
    wall_s: float


def available() -> str | None:
    """None when bubblewrap can start a sandbox here, else the reason it cannot."""
    path = shutil.which(BWRAP)
    if path is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    try:
        probe = subprocess.run(
            [path, *_mounts([]), "--unshare-all", "--die-with-parent", "/usr/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap cannot start ({e})"
    if probe.returncode != 0:
        why = (
            probe.stderr.strip().splitlines()[-1]
            if probe.stderr.strip()
            else f"exit {probe.returncode}"
        )
        return f"bubblewrap cannot create namespaces here ({why})"
    return None


def python_paths() -> list[str]:
    """What the sandbox needs to run this Python and import dojo: the interpreter's installation,
    the virtual environment and the folder dojo is imported from (an editable install's)."""
    import dojo

    paths = {sys.base_prefix, sys.prefix, str(Path(dojo.__file__).resolve().parents[1])}
    return sorted(p for p in paths if p and Path(p).exists())


def _mounts(read_only: Sequence[str], tmp_bytes: int = 256 << 20) -> list[str]:
    """The system's /usr and the given host paths, read-only at the same place, and the rest
    of a minimal root (a private /tmp of ``tmp_bytes``, /proc of its own PID namespace, a
    minimal /dev); the root itself is made read-only last (:func:`command`)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path(f"/usr/{link}").exists():
            args += ["--symlink", f"usr/{link}", f"/{link}"]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    # localhost must resolve: torchrun's rendezvous and c10d's store name it
    args += ["--ro-bind", str(HOSTS_FILE), "/etc/hosts"]
    for path in read_only:
        args += ["--ro-bind", path, path]
    return [*args, "--size", str(tmp_bytes), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]


def command(
    argv: Sequence[str],
    code: str | os.PathLike[str],
    work: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    read_only: Sequence[str] | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in the sandbox (see the module doc)."""
    if not argv:
        raise ConfigError("A sandboxed command needs at least a program.")
    for name, path in (("code", code), ("work", work), ("data", data)):
        if path is not None and not Path(path).is_dir():
            raise ConfigError(f"Sandbox {name} folder {path} does not exist.")
    args = [BWRAP, *_mounts(list(read_only if read_only is not None else python_paths()))]
    args += ["--ro-bind", str(Path(code).resolve()), CODE]
    if data is not None:
        args += ["--ro-bind", str(Path(data).resolve()), DATA]
    args += ["--bind", str(Path(work).resolve()), WORK, "--chdir", WORK]
    args += ["--remount-ro", "/"]  # the root's own tmpfs too: nothing to write but /job/work, /tmp
    args += ["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    args += ["--clearenv"]
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": WORK, "TMPDIR": "/tmp"}
    for key, value in {**base, **(env or {})}.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key:
            raise ConfigError(f"Sandbox environment {key!r}={value!r} must be a name and a string.")
        args += ["--setenv", key, value]
    return [*args, "--", *argv]


def _limit(limits: Limits) -> None:
    """In the child before it execs bwrap: the limits everything in the sandbox inherits."""
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


PIDS_V1 = Path("/sys/fs/cgroup/pids")  # cgroup v1's pids hierarchy
CGROUP_V2 = Path("/sys/fs/cgroup")


class PidsGroup:
    """A pids cgroup capping the sandbox's processes and threads, where this host lets us make
    one (root, a writable cgroup v1 pids hierarchy or a v2 root with the pids controller).

    RLIMIT_NPROC alone does not hold a sandbox started by root: the kernel counts it against the
    user outside the namespace, and root is exempt. Without a cgroup the rlimit is all there is,
    which holds for an agent that runs as an unprivileged user.
    """

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        name = f"dojo-sandbox-{os.getpid()}-{time.monotonic_ns()}"
        for parent in (PIDS_V1, CGROUP_V2):
            if parent == CGROUP_V2 and "pids" not in _read(parent / "cgroup.subtree_control"):
                continue
            if not (parent / "cgroup.procs").exists():
                continue
            try:
                path = parent / name
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
            except OSError:
                continue
            self.path = path
            return

    def join(self) -> None:
        """In the child before exec: move this process (and so all it starts) into the group."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        """The processes in the group now (none without a group)."""
        if self.path is None:
            return []
        return [int(p) for p in _read(self.path / "cgroup.procs").split()]

    def close(self) -> None:
        """Kill whatever is left in the group and remove it."""
        if self.path is None:
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def folder_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size if not os.path.islink(os.path.join(root, name)) else 0
    return total


def popen(
    argv: Sequence[str],
    code: str | os.PathLike[str],
    work: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    in_child: Callable[[], None] | None = None,
    **popen_kw: Any,
) -> tuple[subprocess.Popen[bytes], PidsGroup]:
    """Start ``argv`` in the sandbox and return at once: the process (bubblewrap) and its pids
    group. The caller waits, stops it with :func:`stop` and then calls ``group.close()``.

    ``in_child``: run first in the child before it execs bubblewrap (the agent's death signal).
    Raises :class:`~dojo.errors.ServiceError` when bubblewrap is unavailable: tenant code is
    never run bare.
    """
    limits = limits or Limits()
    why = available()
    if why is not None:
        raise ServiceError(f"Tenant code cannot run: {why}.")
    args = command(argv, code, work, data, env)
    group = PidsGroup(limits.processes)

    def child() -> None:
        if in_child is not None:
            in_child()
        group.join()
        _limit(limits)

    try:
        proc = subprocess.Popen(args, start_new_session=True, preexec_fn=child, **popen_kw)
    except BaseException:
        group.close()
        raise
    return proc, group


def run(
    argv: Sequence[str],
    code: str | os.PathLike[str],
    work: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> SandboxResult:
    """Run ``argv`` in the sandbox and wait for it (or the wall clock); see the module doc.

    ``stdout``/``stderr``: file descriptors for its output (default: this process's).
    Raises :class:`~dojo.errors.ServiceError` when bubblewrap is unavailable: tenant code is
    never run bare.
    """
    limits = limits or Limits()
    start = time.monotonic()
    proc, group = popen(argv, code, work, data, env, limits, stdout=stdout, stderr=stderr)
    timed_out = False
    try:
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(proc, group)
        finally:
            if proc.poll() is None:  # interrupted: leave nothing running
                stop(proc, group)
    finally:
        group.close()
    size = folder_bytes(work)
    return SandboxResult(
        returncode=int(proc.returncode),
        timed_out=timed_out,
        output_bytes=size,
        over_output=size > limits.output_bytes,
        wall_s=time.monotonic() - start,
    )


def stop(
    proc: subprocess.Popen[bytes], group: PidsGroup | None = None, grace_s: float = KILL_GRACE_S
) -> int:
    """SIGTERM the job's processes, then SIGKILL its process group after ``grace_s``; its exit
    status. The agent stops every job this way, sandboxed (``group``) or not.

    The SIGTERM goes to the job's own processes (the pids group's, bubblewrap's left out), so a
    script that checkpoints on SIGTERM, as ``dojo train`` does before a preemption, can: a
    SIGTERM to bubblewrap would end it and, with it, the job at once (``--die-with-parent``).
    Without a pids group it goes to the process group ``proc`` leads (bubblewrap's, or an
    unsandboxed job's).
    """
    job = [p for p in group.pids() if _comm(p) != BWRAP] if group is not None else []
    for pid in job:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    if not job:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=30.0)


def _comm(pid: int) -> str:
    return _read(Path(f"/proc/{pid}/comm")).strip()


__all__ = [
    "CODE",
    "DATA",
    "WORK",
    "Limits",
    "PidsGroup",
    "SandboxResult",
    "available",
    "command",
    "folder_bytes",
    "popen",
    "python_paths",
    "run",
    "stop",
]
