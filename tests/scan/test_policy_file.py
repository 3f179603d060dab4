from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.errors import ConfigError
from mamori.findings import Severity
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy, Suppression
from mamori.scan.policy_file import load_policy, parse_policy

FULL = """
threshold = "high"
md5 = true

[globals]
allow = ["mylib.layers.Dense", "collections.OrderedDict"]
deny = ["mylib.unsafe.*", "mylib.io.run"]

[[suppress]]
rule = "MAM-GEN-007"
path = "models/*.bin"
reason = "HF exports name torch zips .bin"

[limits]
max_depth = 4
max_seconds = 12.5
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="policy.toml")
    return str(info.value)


def test_full_policy_file_maps_onto_scan_policy():
    policy = parse_policy(FULL)
    assert policy == ScanPolicy(
        threshold=Severity.HIGH,
        allowed_globals=frozenset({"mylib.layers.Dense", "collections.OrderedDict"}),
        denied_globals=frozenset({"mylib.unsafe.*", "mylib.io.run"}),
        suppressions=(
            Suppression(
                rule_id="MAM-GEN-007",
                path_glob="models/*.bin",
                reason="HF exports name torch zips .bin",
            ),
        ),
        limits=ScanLimits(max_depth=4, max_seconds=12.5),
        md5=True,
    )


def test_empty_file_gives_the_default_policy():
    assert parse_policy("") == ScanPolicy()


def test_threshold_is_case_insensitive():
    assert parse_policy('threshold = "CRITICAL"').threshold is Severity.CRITICAL


def test_load_policy_reads_a_file(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(FULL, encoding="utf-8")
    assert load_policy(path).threshold is Severity.HIGH


def test_missing_file_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read policy file"):
        load_policy(path)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_bytes(b'threshold = "\xff"')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy(path)


def test_invalid_toml_is_a_config_error_with_the_position():
    assert _error("threshold = ").startswith("policy.toml: invalid TOML:")


def test_suppression_without_reason_names_the_key():
    text = '[[suppress]]\nrule = "MAM-GEN-001"\npath = "*"\n'
    assert _error(text) == "policy.toml: suppress[0].reason: field required"


def test_blank_reason_is_refused():
    text = '[[suppress]]\nrule = "MAM-GEN-001"\npath = "*"\nreason = "   "\n'
    assert _error(text) == "policy.toml: suppress[0].reason: must not be empty"


def test_unknown_rule_id_is_refused():
    text = '[[suppress]]\nrule = "MAM-XYZ-001"\npath = "*"\nreason = "r"\n'
    assert "suppress[0].rule: unknown rule id 'MAM-XYZ-001'" in _error(text)


@pytest.mark.parametrize("glob", ["models/[ab*", "", "a\x00b", "[!"])
def test_invalid_glob_is_refused(glob):
    escaped = glob.replace("\\", "\\\\").replace("\x00", "\\u0000")
    text = f'[[suppress]]\nrule = "MAM-GEN-001"\npath = "{escaped}"\nreason = "r"\n'
    assert "suppress[0].path:" in _error(text)


def test_valid_bracket_globs_are_accepted():
    text = '[[suppress]]\nrule = "MAM-GEN-001"\npath = "m/[!x]*[]]"\nreason = "r"\n'
    assert parse_policy(text).suppressions[0].path_glob == "m/[!x]*[]]"


def test_unknown_top_level_key_is_refused():
    assert _error("thresold = 'high'") == "policy.toml: thresold: unknown key"


def test_unknown_key_inside_a_table_is_refused():
    assert _error("[globals]\nallowed = []") == "policy.toml: globals.allowed: unknown key"


def test_unknown_key_in_a_suppression_is_refused():
    text = '[[suppress]]\nrule = "MAM-GEN-001"\npath = "*"\nreason = "r"\nuntil = 1\n'
    assert _error(text) == "policy.toml: suppress[0].until: unknown key"


def test_signatures_table_is_strict():
    # [signatures] is owned by scan/signatures.py; its own tests cover the accepted keys.
    assert _error("[signatures.clamav]\nenable = true") == (
        "policy.toml: signatures.clamav.enable: unknown key"
    )


def test_empty_allow_entry_is_refused():
    assert _error('[globals]\nallow = ["a.b", ""]') == (
        "policy.toml: globals.allow[1]: empty entry"
    )


def test_wildcard_allow_entry_is_refused():
    assert "wildcards are deny-only" in _error('[globals]\nallow = ["os.*"]')


def test_bare_name_without_module_is_refused():
    assert "globals.deny[0]" in _error('[globals]\ndeny = ["system"]')


def test_wildcard_deny_entry_is_accepted():
    assert parse_policy('[globals]\ndeny = ["subprocess.*"]').denied_globals == {"subprocess.*"}


def test_a_global_both_allowed_and_denied_is_refused():
    text = '[globals]\nallow = ["a.b"]\ndeny = ["a.b"]'
    assert _error(text) == "policy.toml: globals: a.b both allowed and denied"


def test_unknown_threshold_lists_the_valid_names():
    assert _error('threshold = "severe"') == (
        "policy.toml: threshold: unknown severity 'severe'; "
        "expected one of: info, low, medium, high, critical"
    )


def test_md5_must_be_a_boolean():
    assert _error('md5 = "yes"').startswith("policy.toml: md5:")


def test_unknown_limit_is_refused_with_the_valid_names():
    message = _error("[limits]\nmax_dept = 3")
    assert message.startswith("policy.toml: limits.max_dept: unknown key; expected one of:")
    assert "max_depth" in message


def test_non_positive_limit_is_refused():
    assert "max_depth must be a positive number" in _error("[limits]\nmax_depth = 0")


def test_integer_limit_refuses_a_float():
    assert _error("[limits]\nmax_depth = 2.5") == (
        "policy.toml: limits.max_depth: must be an integer, got 2.5"
    )


def test_limit_refuses_a_boolean():
    assert _error("[limits]\nmax_seconds = true") == (
        "policy.toml: limits.max_seconds: must be a number, got True"
    )


def test_every_error_in_a_file_is_reported_on_one_line():
    text = 'bogus = 1\n[[suppress]]\nrule = "MAM-GEN-001"\npath = "*"\n'
    message = _error(text)
    assert "\n" not in message
    assert "bogus: unknown key" in message
    assert "suppress[0].reason: field required" in message


def test_loaded_suppression_silences_the_finding_in_a_real_scan(tmp_path):
    from mamori.scan import scan_path

    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00not a model")
    assert scan_path(model).findings  # MAM-GEN-004: *.pt that matches no format
    rule_id = scan_path(model).findings[0].rule_id
    text = f'[[suppress]]\nrule = "{rule_id}"\npath = "*model.pt"\nreason = "test fixture"\n'
    report = scan_path(model, parse_policy(text))
    assert not report.findings
    assert report.suppressed[0].reason == "test fixture"


_KEYS = ["threshold", "md5", "globals", "suppress", "limits", "rule", "path", "reason", "allow"]
_VALUES = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=3),
)
_TOMLISH = st.lists(
    st.tuples(st.sampled_from(_KEYS), _VALUES).map(lambda kv: f"{kv[0]} = {kv[1]!r}"),
    max_size=6,
).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), _TOMLISH))
def test_any_text_gives_a_policy_or_a_config_error(text):
    outcome: ScanPolicy | ConfigError
    try:
        outcome = parse_policy(text, source="p.toml")
    except ConfigError as exc:
        outcome = exc
    if isinstance(outcome, ConfigError):
        assert str(outcome).startswith("p.toml: ")
    else:
        assert isinstance(outcome, ScanPolicy)
