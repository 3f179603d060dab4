"""A seccomp-BPF program for the model loader, built from a small table, no libseccomp needed.

bubblewrap installs it (``--seccomp FD``) after it has set up the namespaces, so the model's
code runs under it from its first instruction. The filter is a denylist of what a model
loader never needs and an escape always does:

- network sockets (``socket(AF_INET | AF_INET6 | AF_PACKET | AF_NETLINK, ...)``); a Unix
  socket stays possible, and there is no network namespace route anyway;
- another process (``ptrace``, ``process_vm_readv/writev``);
- the kernel's attack surface (``bpf``, ``perf_event_open``, ``userfaultfd``, ``keyctl``,
  ``io_uring``, module loading, ``kexec``);
- a way out of the namespaces (``mount`` and the new mount API, ``pivot_root``, ``chroot``,
  ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag; ``clone3`` answers ENOSYS,
  since its flags sit in memory BPF cannot read, and glibc then falls back to ``clone``).

Every other syscall is allowed. A foreign architecture (and the x32 ABI on x86-64, whose
syscall numbers would dodge the table) kills the process: the table is per architecture.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["SUPPORTED_MACHINES", "SeccompUnavailableError", "build_filter"]

# Classic BPF opcodes (linux/bpf_common.h).
_LD_W_ABS: Final = 0x20
_JEQ_K: Final = 0x15
_JGE_K: Final = 0x35
_JSET_K: Final = 0x45
_RET_K: Final = 0x06

_RET_KILL_PROCESS: Final = 0x80000000
_RET_ALLOW: Final = 0x7FFF0000
_RET_ERRNO: Final = 0x00050000

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_NR: Final = 0
_ARCH: Final = 4
_ARG0_LOW: Final = 16  # little-endian: the low 32 bits of args[0]

_AF_DENIED: Final = (2, 10, 16, 17)  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET
_CLONE_NEW_FLAGS: Final = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)
_X32_SYSCALL_BIT: Final = 0x40000000


@dataclass(frozen=True, slots=True)
class _Arch:
    audit_arch: int
    socket: int
    clone: int
    clone3: int
    denied: tuple[int, ...]
    x32_bit: bool


def _table(text: str) -> dict[str, int]:
    """Parse ``name=number`` pairs separated by white space."""
    pairs = (item.partition("=") for item in text.split())
    return {name: int(number) for name, _, number in pairs}


# Every syscall in a table is denied. Numbers by architecture: arch/x86/entry/syscalls/
# syscall_64.tbl, and the generic table asm-generic/unistd.h that arm64 uses.
_X86_64: Final = _table(
    "ptrace=101 process_vm_readv=310 process_vm_writev=311 bpf=321 perf_event_open=298 "
    "userfaultfd=323 keyctl=250 add_key=248 request_key=249 io_uring_setup=425 "
    "io_uring_enter=426 io_uring_register=427 init_module=175 finit_module=313 "
    "delete_module=176 kexec_load=246 kexec_file_load=320 mount=165 umount2=166 "
    "pivot_root=155 chroot=161 unshare=272 setns=308 open_tree=428 move_mount=429 "
    "fsopen=430 fsconfig=431 fsmount=432 fspick=433 mount_setattr=442 "
    "open_by_handle_at=304 name_to_handle_at=303 swapon=167 swapoff=168 reboot=169 acct=163"
)
_AARCH64: Final = _table(
    "ptrace=117 process_vm_readv=270 process_vm_writev=271 bpf=280 perf_event_open=241 "
    "userfaultfd=282 keyctl=219 add_key=217 request_key=218 io_uring_setup=425 "
    "io_uring_enter=426 io_uring_register=427 init_module=105 finit_module=273 "
    "delete_module=106 kexec_load=104 kexec_file_load=294 mount=40 umount2=39 "
    "pivot_root=41 chroot=51 unshare=97 setns=268 open_tree=428 move_mount=429 "
    "fsopen=430 fsconfig=431 fsmount=432 fspick=433 mount_setattr=442 "
    "open_by_handle_at=265 name_to_handle_at=264 swapon=224 swapoff=225 reboot=142 acct=89"
)

_ARCHES: Final = {
    "x86_64": _Arch(
        audit_arch=0xC000003E,
        socket=41,
        clone=56,
        clone3=435,
        denied=tuple(_X86_64.values()),
        x32_bit=True,
    ),
    "aarch64": _Arch(
        audit_arch=0xC00000B7,
        socket=198,
        clone=220,
        clone3=435,
        denied=tuple(_AARCH64.values()),
        x32_bit=False,
    ),
}
SUPPORTED_MACHINES: Final = frozenset(_ARCHES)
"""``platform.machine()`` values the filter has a syscall table for."""


class SeccompUnavailableError(Exception):
    """No syscall table for this machine's architecture."""


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def build_filter(machine: str | None = None) -> bytes:
    """The filter as ``struct sock_filter[]`` bytes, ready for ``bwrap --seccomp FD``."""
    name = machine or platform.machine()
    arch = _ARCHES.get(name)
    if arch is None:
        msg = f"no seccomp syscall table for architecture {name!r}"
        raise SeccompUnavailableError(msg)
    eperm = _RET_ERRNO | errno.EPERM
    body: list[bytes] = [
        _insn(_LD_W_ABS, _ARCH),
        _insn(_JEQ_K, arch.audit_arch, jt=1),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _NR),
    ]
    if arch.x32_bit:
        body += [_insn(_JGE_K, _X32_SYSCALL_BIT, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    for nr in arch.denied:
        body += [_insn(_JEQ_K, nr, jf=1), _insn(_RET_K, eperm)]
    body += [_insn(_JEQ_K, arch.clone3, jf=1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # clone(flags, ...): any CLONE_NEW* flag is refused; plain fork and threads pass.
    body += [
        _insn(_JEQ_K, arch.clone, jf=4),
        _insn(_LD_W_ABS, _ARG0_LOW),
        _insn(_JSET_K, _CLONE_NEW_FLAGS, jf=1),
        _insn(_RET_K, eperm),
        _insn(_RET_K, _RET_ALLOW),
    ]
    # socket(domain, ...): network families are refused.
    body += [_insn(_JEQ_K, arch.socket, jf=len(_AF_DENIED) + 3), _insn(_LD_W_ABS, _ARG0_LOW)]
    for i, family in enumerate(_AF_DENIED):
        body.append(_insn(_JEQ_K, family, jt=len(_AF_DENIED) - i, jf=0))
    body += [_insn(_RET_K, _RET_ALLOW), _insn(_RET_K, eperm)]
    body.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(body)
