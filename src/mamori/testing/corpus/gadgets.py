"""The direct-call gadget table: one dangerous callable per public write-up or advisory.

Each row becomes a pickle that calls ``module.callable(*args)`` through GLOBAL (protocol 0)
or STACK_GLOBAL and REDUCE. Arguments are harmless: the point is which callable is named.
"""

from __future__ import annotations

__all__ = ["DIRECT_CALLS", "HARMLESS_CMD", "MARKER"]

HARMLESS_CMD = "true"
MARKER = "/tmp/mamori-corpus-marker"  # noqa: S108 - the path a harmless payload would touch

DIRECT_CALLS: tuple[tuple[str, str, str, tuple[str, ...], str, bool], ...] = (
    # name, module, callable, args, technique, protocol 0
    (
        "pickle-os-system-global",
        "os",
        "system",
        (HARMLESS_CMD,),
        "protocol 0 GLOBAL 'os system' + REDUCE (the textbook payload)",
        True,
    ),
    (
        "pickle-posix-system",
        "posix",
        "system",
        (HARMLESS_CMD,),
        "posix.system: the name os.system pickles to on Linux",
        False,
    ),
    (
        "pickle-nt-system",
        "nt",
        "system",
        (HARMLESS_CMD,),
        "nt.system: the Windows spelling of os.system",
        False,
    ),
    (
        "pickle-subprocess-popen",
        "subprocess",
        "Popen",
        (HARMLESS_CMD,),
        "subprocess.Popen via REDUCE",
        False,
    ),
    (
        "pickle-subprocess-check-output",
        "subprocess",
        "check_output",
        (HARMLESS_CMD,),
        "subprocess.check_output via REDUCE",
        False,
    ),
    (
        "pickle-builtins-eval",
        "builtins",
        "eval",
        ("__import__('os').system('true')",),
        "builtins.eval of an expression",
        False,
    ),
    (
        "pickle-builtins-exec",
        "builtins",
        "exec",
        ("import os; os.system('true')",),
        "builtins.exec of a statement",
        False,
    ),
    (
        "pickle-python2-builtin-exec",
        "__builtin__",
        "exec",
        ("pass",),
        "protocol 0 __builtin__.exec (Python 2 module name, mapped by fix_imports)",
        True,
    ),
    (
        "pickle-runpy-run-path",
        "runpy",
        "run_path",
        ("/dev/null",),  # an existing file: run_path compiles and executes it
        "runpy.run_path of a file (picklescan#27)",
        False,
    ),
    (
        "pickle-runpy-run-code",
        "runpy",
        "_run_code",
        ("1 + 1",),
        "runpy._run_code: exec of source through a private helper",
        False,
    ),
    (
        "pickle-webbrowser-open",
        "webbrowser",
        "open",
        ("file:///dev/null",),
        "webbrowser.open launches a browser process",
        False,
    ),
    (
        "pickle-pty-spawn",
        "pty",
        "spawn",
        (HARMLESS_CMD,),
        "pty.spawn (fickling GHSA-r7v6-mfhq-g3m2)",
        False,
    ),
    (
        "pickle-socket-create-connection",
        "socket",
        "create_connection",
        ("127.0.0.1:9",),
        "socket.create_connection: network egress",
        False,
    ),
    (
        "pickle-shutil-copyfile",
        "shutil",
        "copyfile",
        ("/dev/null", MARKER),
        "shutil.copyfile writes files (modelscan#198)",
        False,
    ),
    (
        "pickle-ctypes-cdll",
        "ctypes",
        "CDLL",
        ("libc.so.6",),
        "ctypes.CDLL loads native code (SUSPICIOUS_GLOBALS ctypes bug, fickling)",
        False,
    ),
    (
        "pickle-timeit-timeit",
        "timeit",
        "timeit",
        ("1 + 1",),
        "timeit.timeit executes a statement (picklescan GHSA-v7x6-rv5q-mhwc)",
        False,
    ),
    (
        "pickle-cprofile-run",
        "cProfile",
        "run",
        ("1 + 1",),
        "cProfile.run executes a statement (picklescan GHSA-9w88-8rmg-7g2p)",
        False,
    ),
    (
        "pickle-ensurepip-run-pip",
        "ensurepip",
        "_run_pip",
        ("[]",),
        "ensurepip._run_pip (picklescan GHSA-xp4f-hrf8-rxw7)",
        False,
    ),
    (
        "pickle-pip-main",
        "pip",
        "main",
        ("--version",),
        "pip.main installs packages (CVE-2025-1716)",
        False,
    ),
    (
        "pickle-code-interact",
        "code",
        "InteractiveInterpreter.runsource",
        ("1 + 1",),
        "code.InteractiveInterpreter.runsource (modelscan#313)",
        False,
    ),
    (
        "pickle-asyncio-subprocess",
        "asyncio.unix_events",
        "_UnixSubprocessTransport",
        (HARMLESS_CMD,),
        "asyncio subprocess transport (picklescan CVE-2025-10157)",
        False,
    ),
    (
        "pickle-torch-collect-env-run",
        "torch.utils.collect_env",
        "run",
        (HARMLESS_CMD,),
        "torch.utils.collect_env.run runs a shell command (modelscan#338)",
        False,
    ),
    (
        "pickle-builtins-open-write",
        "builtins",
        "open",
        (MARKER, "w"),
        "builtins.open for writing: file tampering",
        False,
    ),
)
