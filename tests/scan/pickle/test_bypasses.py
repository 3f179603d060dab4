"""Malicious pickles (harmless payloads), one per technique, named after the write-up.

Payloads are built in code from opcodes or with ``__reduce__``; none is ever loaded.
"""

from __future__ import annotations

import builtins
import io
import marshal
import os
import pickle
import struct
import subprocess
import types

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import scan_bytes
from mamori.scan.pickle import analyse_one


def sbu(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


def reduce_call(module: str, name: str, *args: str) -> bytes:
    body = sg(module, name) + b"(" + b"".join(sbu(a) for a in args) + b"tR"
    return b"\x80\x04" + body + b"."


class _Reduce:
    def __init__(self, func: object, args: tuple[object, ...]) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def dumps_reduce(func: object, *args: object, protocol: int = 4) -> bytes:
    return pickle.dumps(_Reduce(func, args), protocol=protocol)


def findings(data: bytes) -> list[tuple[str, Severity]]:
    return [(f.rule_id, f.severity) for f in scan_bytes(data).findings]


def assert_critical(data: bytes) -> None:
    report = scan_bytes(data)
    assert report.verdict is Verdict.UNSAFE
    assert any(f.rule_id == "MAM-PKL-001" for f in report.findings), report.findings


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_to_os_system_is_critical_in_every_protocol(protocol: int) -> None:
    assert_critical(dumps_reduce(os.system, "true", protocol=protocol))


CRITICAL_CALLS = {
    "posix_system_alias": ("posix", "system"),
    "nt_system_alias": ("nt", "system"),
    "subprocess_popen": ("subprocess", "Popen"),
    "subprocess_submodule_run": ("subprocess", "run"),
    "builtins_eval": ("builtins", "eval"),
    "builtins_exec": ("builtins", "exec"),
    "builtins_import": ("builtins", "__import__"),
    "py2_builtin_eval": ("__builtin__", "eval"),
    "runpy_run_path": ("runpy", "run_path"),
    "importlib_import_module": ("importlib", "import_module"),
    "webbrowser_open": ("webbrowser", "open"),
    "socket_create_connection": ("socket", "create_connection"),
    "shutil_rmtree": ("shutil", "rmtree"),
    "ctypes_cdll": ("ctypes", "CDLL"),
    "marshal_loads": ("marshal", "loads"),
    "code_interactive_interpreter": ("code", "InteractiveInterpreter"),
    "io_fileio": ("_io", "FileIO"),
    "posixsubprocess_fork_exec": ("_posixsubprocess", "fork_exec"),
    "uuid_get_command_stdout": ("uuid", "_get_command_stdout"),
    "platform_popen": ("platform", "popen"),
    "torch_hub_load": ("torch.hub", "load"),
    "torch_load_recursion": ("torch", "load"),
    "numpy_load": ("numpy", "load"),
    "pydoc_locate": ("pydoc", "locate"),
    "cprofile_run": ("cProfile", "run"),
    "trace_trace": ("trace", "Trace"),
    "pdb_run": ("pdb", "run"),
    "bdb_bdb": ("bdb", "Bdb"),
    "asyncio_subprocess": ("asyncio.subprocess", "create_subprocess_shell"),
    "multiprocessing_process": ("multiprocessing", "Process"),
    "distutils_spawn": ("distutils.spawn", "spawn"),
    "setuptools_spawn": ("setuptools._distutils.spawn", "spawn"),
    "http_server": ("http.server", "test"),
    "urllib_request_urlopen": ("urllib.request", "urlopen"),
    "requests_get": ("requests", "get"),
    "smtplib_smtp": ("smtplib", "SMTP"),
    "ftplib_ftp": ("ftplib", "FTP"),
    "tempfile_mkstemp": ("tempfile", "mkstemp"),
    "glob_glob": ("glob", "glob"),
    "logging_config_listen": ("logging.config", "listen"),
    "idlelib_pyshell": ("idlelib.pyshell", "main"),
    "lib2to3_main": ("lib2to3.main", "main"),
    "venv_create": ("venv", "create"),
    "dill_loads": ("dill", "loads"),
    "cloudpickle_make_function": ("cloudpickle.cloudpickle", "_make_function"),
    "types_function_type": ("types", "FunctionType"),
    "types_code_type": ("types", "CodeType"),
    "sys_modules": ("sys", "exit"),
    "functools_reduce": ("functools", "reduce"),
    "operator_methodcaller": ("operator", "methodcaller"),
    "pathlib_write_text_method": ("pathlib", "Path.write_text"),
    "argparse_os_attribute_walk": ("argparse", "_os.system"),
    "torch_inductor_gadget": ("torch._inductor.codecache", "compile_file"),
    "torch_fx_graph_module": ("torch.fx.graph_module", "_forward_from_src"),
    "torch_jit_load": ("torch.jit", "load"),
    "case_trick_upper_os": ("OS", "system"),
    # https://github.com/mmaitre314/picklescan/security/advisories/GHSA-vvpj-8cmc-gx39
    "ghsa_vvpj_8cmc_gx39_pkgutil_resolve_name": ("pkgutil", "resolve_name"),
    # https://github.com/mmaitre314/picklescan/security/advisories/GHSA-xp4f-hrf8-rxw7
    "ghsa_xp4f_hrf8_rxw7_ensurepip_run_pip": ("ensurepip", "_run_pip"),
    # https://github.com/mmaitre314/picklescan/security/advisories/GHSA-v7x6-rv5q-mhwc
    "ghsa_v7x6_rv5q_mhwc_timeit": ("timeit", "timeit"),
    # https://github.com/trailofbits/fickling/security/advisories/GHSA-r7v6-mfhq-g3m2
    "ghsa_r7v6_mfhq_g3m2_pty_spawn": ("pty", "spawn"),
    # Sonatype CVE-2025-1716: pip.main installs a package from a pickle.
    "sonatype_cve_2025_1716_pip_main": ("pip", "main"),
    # JFrog CVE-2025-10157: a submodule of a denied module slipped past exact matching.
    "jfrog_cve_2025_10157_asyncio_submodule": ("asyncio.unix_events", "_UnixSubprocessTransport"),
    # https://github.com/trailofbits/fickling/pull/249 : pickles that tamper with scanners.
    "fickling_pr_249_scanner_tampering": ("picklescan.scanner", "scan_pickle_bytes"),
}


@pytest.mark.parametrize("name", sorted(CRITICAL_CALLS))
def test_denied_callable_is_critical(name: str) -> None:
    module, func = CRITICAL_CALLS[name]
    assert_critical(reduce_call(module, func, "true"))


def test_denied_global_is_critical_even_when_only_referenced() -> None:
    assert_critical(b"\x80\x04" + sg("os", "system") + b".")


def test_protocol_0_global_reduce_is_critical() -> None:
    assert_critical(b"cos\nsystem\n(S'true'\ntR.")


def test_protocol_0_inst_is_a_call() -> None:
    assert_critical(b"(S'true'\nios\nsystem\n.")


def test_protocol_1_obj_is_a_call() -> None:
    assert_critical(b"(cos\nsystem\nS'true'\no.")


def test_newobj_ex_of_denied_class_is_critical() -> None:
    assert_critical(b"\x80\x04" + sg("subprocess", "Popen") + b"(" + sbu("true") + b"t}\x92.")


def test_memo_sourced_stack_global_is_resolved() -> None:
    # picklescan issue #22 (imaginaryctf "Safe Pickle"): module and name come from the memo,
    # not from the strings right before STACK_GLOBAL.
    data = (
        b"\x80\x04"
        + sbu("os")
        + b"q\x05"
        + sbu("system")
        + b"q\x06"
        + b"00"
        + sbu("collections")
        + sbu("OrderedDict")
        + b"0"  # decoys left on the stack
        + b"0"
        + b"h\x05h\x06\x93"
        + sbu("true")
        + b"\x85R."
    )
    assert_critical(data)


def test_memoize_sourced_stack_global_is_resolved() -> None:
    data = b"\x80\x04" + sbu("posix") + b"\x94" + sbu("system") + b"\x94" + b"00"
    data += b"h\x00h\x01\x93" + sbu("true") + b"\x85R."
    assert_critical(data)


def test_getattr_chain_is_critical() -> None:
    # __reduce__ returning (getattr, (module_obj, 'system')) then calling the result.
    inner = sg("builtins", "getattr") + sg("builtins", "__import__") + sbu("os") + b"\x85R"
    data = b"\x80\x04" + inner + sbu("system") + b"\x86R" + sbu("true") + b"\x85R."
    report = scan_bytes(data)
    rules = {f.rule_id for f in report.findings}
    assert "MAM-PKL-001" in rules
    assert "MAM-PKL-008" in rules  # calling the getattr result is a computed callable


def test_operator_attrgetter_chain_via_underscore_operator() -> None:
    # https://github.com/mmaitre314/picklescan/security/advisories/GHSA-955r-x9j8-7rhh
    assert_critical(reduce_call("_operator", "attrgetter", "system"))


def test_marshal_and_function_type_payload() -> None:
    code = marshal.dumps(compile("1", "<s>", "eval"))
    data = (
        b"\x80\x04"
        + sg("types", "FunctionType")
        + sg("marshal", "loads")
        + b"C"
        + bytes([len(code)])
        + code
        + b"\x85R"
        + b"}\x86R."
    )
    report = scan_bytes(data)
    names = {f.message.split(":")[0] for f in report.findings if f.rule_id == "MAM-PKL-001"}
    assert names == {"types.FunctionType", "marshal.loads"}
    assert types.FunctionType is not None


def test_ext_opcode_is_unresolvable() -> None:
    data = b"\x80\x02\x82\x01U\x04true\x85R."
    assert "MAM-PKL-007" in {r for r, _ in findings(data)}
    data2 = b"\x80\x02\x83\x01\x02U\x04true\x85R."
    assert "MAM-PKL-007" in {r for r, _ in findings(data2)}
    data4 = b"\x80\x02\x84" + struct.pack("<i", 7) + b"U\x04true\x85R."
    assert "MAM-PKL-007" in {r for r, _ in findings(data4)}


def test_stack_global_on_non_strings_is_unresolvable() -> None:
    data = b"\x80\x04K\x01K\x02\x93" + sbu("x") + b"\x85R."
    got = findings(data)
    assert ("MAM-PKL-007", Severity.HIGH) in got


def test_nested_pickle_loads_is_critical_and_the_payload_is_analysed() -> None:
    inner = dumps_reduce(os.system, "true")
    data = dumps_reduce(pickle.loads, inner)
    report = scan_bytes(data)
    messages = [f.message for f in report.findings if f.rule_id == "MAM-PKL-001"]
    assert any(m.startswith(("_pickle.loads", "pickle.loads")) for m in messages)
    assert any("system" in m for m in messages), messages
    assert "MAM-PKL-018" in {f.rule_id for f in report.findings}


def test_nullifai_broken_pickle_reports_the_payload_before_the_break() -> None:
    # ReversingLabs "nullifAI": the REDUCE runs, then the stream breaks so that tools which
    # reject the whole file as invalid miss it.
    data = reduce_call("os", "system", "true")[:-1] + b"\xff\xfe garbage"
    rules = {r for r, _ in findings(data)}
    assert "MAM-PKL-001" in rules
    assert rules & {"MAM-PKL-010", "MAM-PKL-011"}


def test_nullifai_pickle_without_stop_reports_the_payload() -> None:
    data = reduce_call("os", "system", "true")[:-1]
    rules = {r for r, _ in findings(data)}
    assert {"MAM-PKL-001", "MAM-PKL-010"} <= rules


def test_malicious_second_pickle_in_a_stack_is_found() -> None:
    data = pickle.dumps({"ok": 1}, protocol=4) + reduce_call("os", "system", "true")
    rules = {r for r, _ in findings(data)}
    assert {"MAM-PKL-001", "MAM-PKL-014"} <= rules


def test_pickle_hidden_after_a_benign_stop_in_protocol_2() -> None:
    data = pickle.dumps([1, 2], protocol=2) + dumps_reduce(os.system, "true", protocol=2)
    assert_critical(data)


def test_protocol_5_out_of_band_buffer_is_reported() -> None:
    data = b"\x80\x05\x97\x98."
    assert ("MAM-PKL-017", Severity.LOW) in findings(data)


def test_py2_builtin_names_are_normalised() -> None:
    assert_critical(b"c__builtin__\nexecfile\n(S'x.py'\ntR.")


def test_copyreg_reconstructor_with_a_dangerous_base_is_critical() -> None:
    data = b"ccopy_reg\n_reconstructor\n(c__main__\nX\ncsubprocess\nPopen\nS'true'\ntR."
    assert_critical(data)


def test_callable_passed_to_a_higher_order_function_counts_as_called() -> None:
    # torch._utils._rebuild_from_type_v2(func, type, args, state) calls func(*args).
    data = (
        b"\x80\x04"
        + sg("torch._utils", "_rebuild_from_type_v2")
        + b"("
        + sg("mylib", "helper")
        + sg("torch", "Tensor")
        + b")Nt"
        + b"R."
    )
    assert ("MAM-PKL-003", Severity.MEDIUM) in findings(data)


def test_dill_eval_repr_with_code_is_critical() -> None:
    assert_critical(reduce_call("dill._dill", "_eval_repr", "__import__('os').system('true')"))


def test_dill_load_type_code_type_resolves_to_types() -> None:
    data = b"\x80\x04" + sg("dill._dill", "_load_type") + sbu("CodeType") + b"\x85R)R."
    assert_critical(data)


def test_build_on_an_imported_function_is_high() -> None:
    data = b"\x80\x04" + sg("mylib", "f") + b"N}" + sbu("__code__") + b"Ns\x86b."
    assert "MAM-PKL-009" in {r for r, _ in findings(data)}


def test_unknown_stdlib_callable_reduced_is_high() -> None:
    assert ("MAM-PKL-002", Severity.HIGH) in findings(reduce_call("zipfile", "ZipFile", "x"))


def test_unknown_third_party_callable_reduced_is_medium() -> None:
    assert ("MAM-PKL-003", Severity.MEDIUM) in findings(reduce_call("mypkg.util", "go", "x"))


def test_unknown_stdlib_class_instantiated_is_medium() -> None:
    data = b"\x80\x04" + sg("email.message", "Message") + b")\x81}b."
    assert ("MAM-PKL-005", Severity.MEDIUM) in findings(data)


def test_unknown_global_only_referenced_is_low() -> None:
    data = b"\x80\x04" + sg("mypkg", "CONSTANT") + b"."
    assert findings(data) == [("MAM-PKL-006", Severity.LOW)]


def test_computed_callable_from_a_persistent_id_is_high(fake_ctx) -> None:
    data = b"\x80\x02" + b"U\x01xQ" + b")R."
    ctx = fake_ctx()
    analyse_one(io.BytesIO(data), ctx, persistent_ids=True)
    assert "MAM-PKL-008" in ctx.rules()


def test_policy_denied_global_is_critical_and_allowed_global_is_quiet(fake_ctx) -> None:
    from mamori.scan import ScanPolicy

    data = reduce_call("mypkg.util", "go", "x")
    denied = fake_ctx(policy=ScanPolicy(denied_globals=frozenset({"mypkg.*"})))
    analyse_one(io.BytesIO(data), denied)
    assert denied.max_severity() is Severity.CRITICAL
    allowed = fake_ctx(policy=ScanPolicy(allowed_globals=frozenset({"mypkg.util.go"})))
    analyse_one(io.BytesIO(data), allowed)
    assert allowed.findings == []


def test_harmless_payload_helpers_are_real_callables() -> None:
    # The payloads above name real functions; check the names exist so tests stay honest.
    assert callable(os.system)
    assert callable(subprocess.Popen)
    assert callable(builtins.eval)


def test_huge_dotted_global_name_is_reported_without_quadratic_work() -> None:
    name = ".".join(["a"] * 200_000)
    data = b"\x80\x02c" + b"mypkg\n" + name.encode() + b"\n)R."
    got = findings(data)
    assert ("MAM-PKL-007", Severity.HIGH) in got


def test_evidence_of_deeply_nested_operands_stays_bounded() -> None:
    nested = b"]" * 50_000 + b"a" * 49_999
    data = b"\x80\x04" + nested + sbu("x") + b"\x93."
    report = scan_bytes(data)
    assert "MAM-PKL-007" in {f.rule_id for f in report.findings}
    assert all(len(f.evidence or "") < 400 for f in report.findings)
