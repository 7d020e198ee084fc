"""Servers under test and under load: start one on a free loopback port, wait until it is
ready, stop its process group, find its processes and measure what they use; the reports.

The tests (tests/conftest.py) and every load tool start and watch servers through this module.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import psutil

REPO: Final = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S: Final = 180.0
"""Generous for a 2-core machine starting several Python processes with its other core busy."""
STARTUP_FAILED: Final = ("Application startup failed", "Worker failed to boot")
"""BentoML's and gunicorn's log lines when a worker cannot start (their supervisors stay up)."""
STOP_GRACE_S: Final = 20.0
API_SERVICE: Final = "credit_risk_service"
"""BentoML's name of the API service: its workers' `--service-name`."""
QUIET: Final = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "PYTHONPATH": str(REPO)}
"""Environment of every server started here: no usage data sent, the repository importable."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bentoml_serve(target: str, port: int | str, working_dir: Path | None = REPO) -> list[str]:
    """`bentoml serve TARGET` on 127.0.0.1:port with this interpreter."""
    argv = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    return argv + (["--working-dir", str(working_dir)] if working_dir else [])


@dataclass
class Server:
    """A started server: its URL, its process (the leader of its own process group), its log."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    home: Path | None = None
    """Its BENTOML_HOME, when one was given (its decision log is under `home / "monitoring"`)."""
    started: float = field(default_factory=time.perf_counter)
    ready_s: float | None = None
    """Seconds from the spawn to the first 200 from its readiness path, once `wait_ready` saw it."""

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def root(self) -> psutil.Process:
        """The server's first process (BentoML's supervisor, gunicorn's master)."""
        return psutil.Process(self.process.pid)


def spawn(
    argv: Sequence[str], log_path: Path, *, url: str, env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Server:  # fmt: skip
    """Start `argv` in a session of its own (so `stop` reaches every worker), output to the log."""
    full_env = {**os.environ, **QUIET, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    home = full_env.get("BENTOML_HOME")
    return Server(url, process, log_path, Path(home) if home else None, started)


def wait_ready(server: Server, path: str = "/readyz", timeout: float = READY_TIMEOUT_S) -> float:
    """Poll `path` until 200, then (ours) until every API worker listens on the port; seconds
    from the spawn to the first 200. Fails at once if the process exits or a worker fails to
    start; `timeout` bounds both waits together (give or take one poll)."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2.0) as client:

        def ready() -> bool:
            _check_alive(server)
            with contextlib.suppress(httpx.HTTPError):
                return client.get(server.url + path).status_code == 200
            return False

        wait_for(ready, f"server ready at {path}", timeout)
    ready_s = time.perf_counter() - server.started
    if server.ready_s is None:  # a later wait (after a fault) is not the start-up's
        server.ready_s = ready_s
    if api_workers(server.root):  # ours: measured load must reach every worker, not the first

        def listening() -> bool:
            _check_alive(server)
            return listening_everywhere(server)

        left = deadline - time.perf_counter()
        wait_for(listening, "every API worker listens on the port", left)
    return ready_s


def _check_alive(server: Server) -> None:
    """Raise at once when waiting can no longer succeed: the server left or a worker failed."""
    if server.process.poll() is not None:
        msg = f"server exited with code {server.process.returncode} before it was ready"
        raise RuntimeError(msg)
    if any(marker in server.log() for marker in STARTUP_FAILED):
        raise RuntimeError("a worker failed to start (see the server's log)")


def api_workers(root: psutil.Process) -> list[int]:
    """PIDs of the server's live API workers (none for a server that is not ours)."""
    return [pid for pid, role in roles(root).items() if role.startswith(f"{API_SERVICE}:")]


def listening_everywhere(server: Server) -> bool:
    """Whether every API worker listens on the port: each takes a listening socket of its own
    as it starts, before its start-up hooks run (credit_risk/serving/workarounds/
    listening_socket.py), and the supervisor's stops listening; a server still on the
    supervisor's (an earlier commit) shares it. Until then new connections miss the worker
    (`make bench` rounds would be bimodal)."""
    port = urlsplit(server.url).port
    assert port is not None, "our servers' URLs name their port"
    if listens(server.process.pid, port):
        return True
    pids = api_workers(server.root)
    return bool(pids) and all(listens(pid, port) for pid in pids)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on `port` (False once it has gone or
    cannot be inspected)."""
    return psutil.CONN_LISTEN in socket_states(pid, port)


def socket_states(pid: int, port: int) -> list[str]:
    """The state of each TCP socket process `pid` holds on its local `port`: one LISTEN, one
    per client connection (none once it has gone or cannot be inspected)."""
    with contextlib.suppress(psutil.Error):
        sockets = psutil.Process(pid).net_connections(kind="tcp")
        return [s.status for s in sockets if s.laddr and s.laddr.port == port]
    return []


def stop(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not left in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    # workers outlive a supervisor that died first: sweep the group once more
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    argv: Sequence[str], log_path: Path, *, url: str, env: dict[str, str] | None = None,
    ready_path: str | None = "/readyz", cwd: Path = REPO,
) -> Iterator[Server]:  # fmt: skip
    """A server for the duration of the block (ready, unless `ready_path` is None); stopped
    however the block ends, with its log's tail printed if it never became ready."""
    server = spawn(argv, log_path, url=url, env=env, cwd=cwd)
    try:
        if ready_path is not None:
            try:
                wait_ready(server, ready_path)
            except (RuntimeError, TimeoutError):
                print(server.log()[-5000:], file=sys.stderr)
                raise
        yield server
    finally:
        stop(server)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> float:
    """Poll until `condition()` is truthy; seconds it took. The timeout is a liveness bound,
    never a measurement."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"not true within {timeout:g} s: {what}")
        time.sleep(0.02)
    return time.perf_counter() - start


async def until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> float:
    """`wait_for` inside an event loop: the loop keeps running while the condition is polled."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"not true within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)
    return time.perf_counter() - start


# --- a server's processes ----------------------------------------------------------------------


def processes(root: psutil.Process) -> list[psutil.Process]:
    """The server's first process and every descendant (workers, the runner)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def roles(root: psutil.Process) -> dict[int, str]:
    """PID -> `<service>:<worker id>` of every live BentoML worker (from its argv), `supervisor`
    for the rest: a crashed and restarted worker shows up as a new PID."""
    out = {}
    for proc in processes(root):
        with contextlib.suppress(psutil.Error, IndexError):
            argv = proc.cmdline()
            name = argv[argv.index("--service-name") + 1] if "--service-name" in argv else ""
            worker = argv[argv.index("--worker-id") + 1] if "--worker-id" in argv else ""
            if proc.status() != psutil.STATUS_ZOMBIE:
                out[proc.pid] = f"{name}:{worker}" if name else "supervisor"
    return out


def service_process(root: psutil.Process, service: str = "credit_scorer") -> psutil.Process | None:
    """The live worker of one BentoML service (the runner by default), found by its argv."""
    pids = [pid for pid, name in roles(root).items() if name.split(":")[0] == service]
    return psutil.Process(pids[0]) if pids else None


def cpu_seconds(root: psutil.Process) -> dict[int, float]:
    """PID -> user + system CPU seconds of every server process so far."""
    out = {}
    for proc in processes(root):
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = sum(proc.cpu_times()[:2])
    return out


def pss_mb(root: psutil.Process) -> float:
    """Proportional set size of the whole server (shared pages split among their users), MB."""
    total = 0
    for proc in processes(root):
        with contextlib.suppress(OSError):
            rollup = Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines()
            total += sum(int(ln.split()[1]) * 1024 for ln in rollup if ln.startswith("Pss:"))
    return total / 1e6


def host_cpu() -> dict[str, float]:
    """This machine's CPU seconds so far: busy (anything at all), idle, iowait, steal."""
    t = psutil.cpu_times()
    idle, iowait, steal = t.idle, getattr(t, "iowait", 0.0), getattr(t, "steal", 0.0)
    return {"busy": sum(t) - idle - iowait, "idle": idle, "iowait": iowait, "steal": steal}


def machine_busy_cores(seconds: float = 1.0) -> float:
    """CPUs busy with anything, averaged over `seconds`: other load skews every figure."""
    before = host_cpu()["busy"]
    time.sleep(seconds)
    return (host_cpu()["busy"] - before) / seconds


class Window:
    """What a server used during a measured window: its CPU seconds, the host's, this process's
    children's (a load generator once reaped), and its PSS sampled every `every_s`."""

    def __init__(self, root: psutil.Process, every_s: float = 0.5) -> None:
        self.root, self.every_s = root, every_s
        self.pss: list[tuple[float, float]] = []  # (seconds into the window, MB)
        self.wall_s = self.server_cpu_s = self.generator_cpu_s = 0.0
        self.host: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.pss.append((self.elapsed(), pss_mb(self.root)))
            if self._stop.wait(self.every_s):
                return

    def elapsed(self) -> float:
        """Seconds since the window opened."""
        return time.perf_counter() - self._t0

    def __enter__(self) -> Window:
        self._cpu0, self._host0, self._own0 = cpu_seconds(self.root), host_cpu(), os.times()
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        cpu1, host1, own1 = cpu_seconds(self.root), host_cpu(), os.times()
        self.wall_s = self.elapsed()
        self._stop.set()
        self._thread.join()
        # a process that appeared during the window counts from zero; one that vanished is lost
        self.server_cpu_s = sum(t - self._cpu0.get(pid, 0.0) for pid, t in cpu1.items())
        self.host = {k: (host1[k] - self._host0[k]) / self.wall_s for k in host1}
        own = own1.children_user + own1.children_system
        self.generator_cpu_s = own - self._own0.children_user - self._own0.children_system


def drain(server: Server, ready_path: str = "/readyz", idle_cores: float = 0.2) -> float:
    """Wait (at most 30 s) until the server is idle: its CPU below `idle_cores` and a readiness
    request answered (a sync worker's accept queue is FIFO: that answer comes after every queued
    request). Seconds waited; a long drain (the previous run overloaded it) is printed."""
    start = time.perf_counter()
    while time.perf_counter() - start < 30.0:
        before = sum(cpu_seconds(server.root).values())
        time.sleep(0.5)
        if (sum(cpu_seconds(server.root).values()) - before) / 0.5 < idle_cores:
            break
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(server.url + ready_path, timeout=max(1.0, 30.0 - time.perf_counter() + start))
    if (waited := time.perf_counter() - start) > 2.0:
        print(f"  (waited {waited:.1f} s for the server to finish left-over requests)")
    return waited


# --- reports ---------------------------------------------------------------------------------


def machine_facts(tools: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """What figures depend on: CPU, memory, kernel, versions (and of `tools`), the commit."""
    cpu = "unknown"
    with contextlib.suppress(OSError, IndexError):
        cpu = Path("/proc/cpuinfo").read_text().split("model name")[1].split(":", 1)[1]
        cpu = cpu.splitlines()[0].strip()
    versions = {}
    for dist in ("bentoml", "scikit-learn", "pandas", "numpy", "flask", "gunicorn"):
        with contextlib.suppress(Exception):
            versions[dist] = version(dist)
    for argv in tools:
        out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()[0].split(" Copyright")[0]
        versions[argv[0]] = first.removeprefix(argv[0]).strip()
    git = ["git", "describe", "--always", "--dirty"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=REPO, check=False).stdout
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit.strip() or "unknown",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def resolve_model_tag() -> str:
    """The exact tag behind credit_risk:latest, so every server of a run serves the same one."""
    import bentoml  # noqa: PLC0415 (slow import, only needed here)

    return str(bentoml.models.get("credit_risk:latest").tag)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as a report prints it when the caller names none."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def cli(doc: str | None, options: dict[str, tuple[type, Any, str]]) -> argparse.ArgumentParser:
    """A load tool's command line: `options` (flag -> type, default, help), `--out`, `--command`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    for flag, (kind, default, text) in options.items():
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--out", type=Path, default=REPO / "reports", help="report directory")
    parser.add_argument("--command", help="command line to print in the report")
    return parser


def have(tool: str, target: str, how: str) -> bool:
    """Whether `tool` is on PATH; if not, one line says how to get it (nothing is installed)."""
    found = shutil.which(tool) is not None
    if not found:
        print(f"{target} needs {tool}: {how}; nothing is installed automatically.", file=sys.stderr)
    return found


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A Markdown table; `align` has an `r` for each right-aligned column (figures), else `l`."""
    rules = ["--:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def write_report(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    """`<out>/<name>.json` (every figure) and `<out>/<name>.md`; the Markdown printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print(markdown, f"\nwrote {out / name}.md and .json", flush=True)
