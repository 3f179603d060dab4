"""The sandboxed loader process: bubblewrap, seccomp, Landlock and rlimits, each layer probed.

A model that passed the gate can still be hostile (a scanner can be wrong), so the process
that loads it is built to contain it:

1. **Probe** every layer before starting (:func:`probe`). A required layer that is missing is
   a refusal with the reason, unless the caller explicitly accepts a weaker sandbox, and then
   the result lists exactly what was lost.
2. **Namespaces** (bubblewrap ``--unshare-all``): no network, its own PID, IPC and UTS
   namespaces, ``--die-with-parent`` and ``--new-session``. The file system is *built up*,
   not inherited: read-only binds of the system directories and of the Python installation
   only, the model read-only, one private writable work directory and a ``/tmp`` tmpfs.
   Nothing of the host's home, data or store directories exists inside.
3. **An unprivileged user.** Run as root, bwrap uses no user namespace and the loader drops
   to ``nobody`` (setpriv: no capabilities, empty bounding set, no_new_privs). Root is exempt
   from ``RLIMIT_NPROC``; ``nobody`` is not, so a fork bomb stops at the limit. Run as another
   user, bwrap unshares the user namespace and ``--disable-userns`` forbids nested ones.
4. **seccomp** (:mod:`mamori.serving.seccomp`): no network sockets, ptrace, mount, bpf,
   keyctl, perf_event_open, userfaultfd, io_uring, new namespaces.
5. **rlimits**: address space, CPU seconds, open files, processes, core dumps off.
6. **Landlock**, applied by the loader itself before it reads a byte of the model, where the
   kernel has it: only ``/work`` and ``/tmp`` are writable.

Inside, the model is at ``/run/mamori-sandbox/model``, and ``/run/mamori-sandbox/work`` is
the writable directory. IPC is the loader's stdin and stdout (one JSON object per line); no
host socket is bound in.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import IO, Any, Final

from mamori.errors import MamoriError
from mamori.serving.seccomp import SUPPORTED_MACHINES, build_filter

__all__ = [
    "Layer",
    "LayerStatus",
    "SandboxError",
    "SandboxLimits",
    "SandboxedModel",
    "probe",
    "start",
]

_NOBODY: Final = 65534
SANDBOX_ROOT: Final = "/run/mamori-sandbox"
"""Inside the sandbox: ``model/`` (read-only), ``work/`` (the only writable directory) and
``loader.py``. A path no host directory that the sandbox binds can be under."""
_SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC_FILES: Final = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/nsswitch.conf", "/etc/localtime")


class SandboxError(MamoriError):
    """The sandbox could not be set up, or the model failed to load inside it."""


class Layer(enum.StrEnum):
    """One isolation layer of the loader process."""

    NAMESPACES = "namespaces"
    """bubblewrap with every namespace unshared and a file system built from binds."""
    UNPRIVILEGED = "unprivileged-user"
    """The loader runs without root and without capabilities."""
    SECCOMP = "seccomp"
    """The syscall filter of :mod:`mamori.serving.seccomp`."""
    RLIMITS = "rlimits"
    """Memory, CPU, files and processes capped."""
    LANDLOCK = "landlock"
    """File-system writes confined to the work directory by the kernel."""


REQUIRED: Final = frozenset(Layer)
"""Every layer is required unless the caller accepts a weaker sandbox."""


@dataclass(frozen=True, slots=True)
class LayerStatus:
    """Whether a layer is available here, and why not."""

    layer: Layer
    available: bool
    detail: str


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of the loader process (validated; all enforced with rlimits)."""

    memory_bytes: int = 2 << 30
    cpu_seconds: int = 600
    open_files: int = 256
    processes: int = 64

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "open_files", "processes"):
            if getattr(self, name) <= 0:
                msg = f"sandbox limit {name} must be positive"
                raise SandboxError(msg)


def _landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(444, None, 0, 1))  # landlock_create_ruleset(..., VERSION)


def probe() -> list[LayerStatus]:
    """Check each layer on this machine (nothing is started)."""
    bwrap = shutil.which("bwrap")
    root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    machine = os.uname().machine
    seccomp_ok = machine in SUPPORTED_MACHINES and _kernel_has_seccomp()
    abi = _landlock_abi()
    return [
        LayerStatus(
            Layer.NAMESPACES,
            bwrap is not None,
            f"bubblewrap at {bwrap}" if bwrap else "bubblewrap (bwrap) is not installed",
        ),
        LayerStatus(
            Layer.UNPRIVILEGED,
            not root or setpriv is not None,
            "loader drops to nobody with setpriv"
            if root and setpriv
            else ("setpriv (util-linux) is missing" if root else "not running as root"),
        ),
        LayerStatus(
            Layer.SECCOMP,
            seccomp_ok,
            f"filter for {machine}" if seccomp_ok else f"no seccomp filter for {machine}",
        ),
        LayerStatus(Layer.RLIMITS, available=True, detail="setrlimit"),
        LayerStatus(
            Layer.LANDLOCK,
            abi >= 1,
            f"Landlock ABI {abi}" if abi >= 1 else "the kernel has no Landlock",
        ),
    ]


def _kernel_has_seccomp() -> bool:
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text("ascii")
        return "Seccomp:" in status
    return False


def _check_layers(*, allow_weaker: bool) -> list[Layer]:
    """The layers that will be used; raise when a required one is missing."""
    statuses = probe()
    missing = [s for s in statuses if not s.available]
    if any(s.layer is Layer.NAMESPACES for s in missing):
        # Without bwrap there is no sandbox at all, whatever the caller accepts.
        msg = f"cannot sandbox the loader: {missing[0].detail}"
        raise SandboxError(msg)
    if missing and not allow_weaker:
        reasons = "; ".join(f"{s.layer}: {s.detail}" for s in missing)
        msg = f"sandbox layers missing ({reasons}); --allow-weaker-sandbox runs without them"
        raise SandboxError(msg)
    return [s.layer for s in statuses if s.available]


def _python_binds() -> list[str]:
    """Directories the interpreter and its site-packages need, read-only."""
    dirs = {sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"]}
    dirs.add(str(Path(sys.executable).resolve().parent.parent))
    return sorted(d for d in dirs if Path(d).is_dir())


def _bwrap_argv(
    layers: list[Layer], model_dir: Path, work: Path, loader: Path, seccomp_fd: int | None
) -> list[str]:
    root = os.geteuid() == 0
    argv = ["bwrap", "--die-with-parent", "--new-session"]
    if root:
        # --unshare-all would add a user namespace mapping only uid 0, where the switch to
        # nobody is impossible; root needs none to unshare the others.
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        argv += ["--unshare-cgroup-try"]
    else:
        argv += ["--unshare-all", "--unshare-user", "--disable-userns"]
    # The private mounts first: a later bind whose host path lies under /tmp (a venv or a
    # checkout there) must land on top of the tmpfs, not be hidden by it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    for d in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", d, d]
    for f in _ETC_FILES:
        argv += ["--ro-bind-try", f, f]
    python_dirs = _python_binds()
    # bwrap creates the parents of a bind target with mode 0700, which nobody cannot cross.
    parents = sorted({str(a) for d in python_dirs for a in Path(d).parents if str(a) != "/"})
    for parent in parents:
        if parent not in _SYSTEM_DIRS:
            argv += ["--perms", "0755", "--dir", parent]
    for d in python_dirs:
        argv += ["--ro-bind", d, d]
    argv += ["--perms", "0755", "--dir", SANDBOX_ROOT]
    argv += ["--ro-bind", str(model_dir), f"{SANDBOX_ROOT}/model"]
    argv += ["--bind", str(work), f"{SANDBOX_ROOT}/work"]
    argv += ["--ro-bind", str(loader), f"{SANDBOX_ROOT}/loader.py"]
    argv += ["--chdir", f"{SANDBOX_ROOT}/work", "--setenv", "HOME", f"{SANDBOX_ROOT}/work"]
    argv += ["--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if root and Layer.UNPRIVILEGED in layers:
        # setpriv needs CAP_SETUID/SETGID once; it gives up every capability as it switches.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        argv += ["--", "setpriv", f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]
        argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        argv += ["--cap-drop", "ALL", "--"]
    # The venv's interpreter path (not the resolved one): its pyvenv.cfg adds site-packages.
    argv += [sys.executable, "-I", f"{SANDBOX_ROOT}/loader.py"]
    return argv


def _rlimits(limits: SandboxLimits, layers: list[Layer]) -> Any:
    def apply() -> None:
        if Layer.RLIMITS not in layers:
            return
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@dataclass
class SandboxedModel:
    """A running loader process; ``predict`` sends one request and reads one answer."""

    process: subprocess.Popen[str]
    layers: list[Layer]
    lost: list[Layer]
    loader_layers: list[str] = field(default_factory=list)

    def predict(self, inputs: Any) -> Any:
        """Send ``inputs`` to the model; return its outputs or raise :class:`SandboxError`."""
        stdin, stdout = self._pipes()
        stdin.write(json.dumps({"op": "predict", "inputs": inputs}) + "\n")
        stdin.flush()
        answer = _read_answer(stdout)
        if not answer.get("ok"):
            msg = f"model error: {answer.get('error')}"
            raise SandboxError(msg)
        return answer["outputs"]

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        if self.process.stdin is None or self.process.stdout is None:
            raise SandboxError("the loader process has no pipes")
        return self.process.stdin, self.process.stdout

    def close(self) -> int:
        """Stop the loader; return its exit status."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return status


def _read_answer(stdout: IO[str]) -> dict[str, Any]:
    line = stdout.readline()
    if not line:
        raise SandboxError("the loader process exited (killed by a limit or the filter?)")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise SandboxError("the loader sent something that is not a JSON object")
    return answer


@contextlib.contextmanager
def start(
    model: Path,
    *,
    flavour: str,
    entry: str | None = None,
    limits: SandboxLimits | None = None,
    allow_weaker: bool = False,
) -> Iterator[SandboxedModel]:
    """Start the loader on ``model`` inside the sandbox; stop it on exit.

    ``model`` is a file (bound with its directory, read-only). Raises :class:`SandboxError`
    when a layer is missing (unless ``allow_weaker``) or the model fails to load.
    """
    layers = _check_layers(allow_weaker=allow_weaker)
    lost = [layer for layer in REQUIRED if layer not in layers]
    limits = limits or SandboxLimits()
    model = model.resolve()
    with tempfile.TemporaryDirectory(prefix="mamori-sandbox-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        if os.geteuid() == 0:
            os.chown(work, _NOBODY, _NOBODY)
        loader = Path(tmp) / "loader.py"
        loader.write_bytes(files("mamori.serving").joinpath("_loader.py").read_bytes())
        loader.chmod(0o444)
        seccomp_r: int | None = None
        pass_fds: tuple[int, ...] = ()
        if Layer.SECCOMP in layers:
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, build_filter())
            os.close(seccomp_w)
            pass_fds = (seccomp_r,)
        argv = _bwrap_argv(layers, model.parent, work, loader, seccomp_r)
        argv += [flavour, f"{SANDBOX_ROOT}/model/{model.name}", *([entry] if entry else [])]
        process = subprocess.Popen(  # noqa: S603 - argv built above, no shell
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
            preexec_fn=_rlimits(limits, layers),  # noqa: PLW1509 - rlimits must precede exec
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        if seccomp_r is not None:
            os.close(seccomp_r)
        running = SandboxedModel(process, layers, lost)
        try:
            running.loader_layers = _hello(running)
            yield running
        except SandboxError as exc:
            stderr = _drain(process)
            msg = f"{exc}{'; stderr: ' + stderr if stderr else ''}"
            raise SandboxError(msg) from exc
        finally:
            running.close()


def _hello(running: SandboxedModel) -> list[str]:
    """The loader's first answer: loaded (with the layers it applied itself), or why not."""
    _stdin, stdout = running._pipes()  # noqa: SLF001 - same module
    hello = _read_answer(stdout)
    if not hello.get("ok"):
        msg = f"model failed to load in the sandbox: {hello.get('error')}"
        raise SandboxError(msg)
    return [str(x) for x in hello.get("layers", [])]


def _drain(process: subprocess.Popen[str]) -> str:
    with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
        process.kill()
        _out, err = process.communicate(timeout=5)
        return (err or "").strip().splitlines()[-1:][0] if (err or "").strip() else ""
    return ""
