"""Claim mapping: IdP groups/roles become mamori roles only through the operator's table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.errors import IdentityError
from mamori.identity import (
    ClaimMapping,
    DevIssuer,
    JwksSource,
    VerifierConfig,
    map_claims,
    verify_token,
)

TABLE = {
    "groups": {
        "ml-approvers": {"approver"},
        "ml-admins": {"admin", "approver"},
        "ml-importers": {"importer"},
    },
    "cognito:groups": {"readers": {"viewer"}},
}
MAPPING = ClaimMapping(roles=TABLE, attributes={"dept": "department"})

_values = st.sampled_from(
    [
        "ml-approvers",
        "ml-admins",
        "ml-importers",
        "readers",
        "admin",
        "approver",
        "root",
        "ML-Admins",
    ]
) | st.text(max_size=12)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return DevIssuer(tmp_path_factory.mktemp("iss"), issuer="https://idp", audience="app")


@pytest.fixture(scope="module")
def config(issuer):
    return VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=issuer.jwks_path), claims=MAPPING
    )


@given(groups=st.lists(_values, max_size=20), cognito=st.lists(_values, max_size=20))
def test_roles_are_exactly_the_union_of_what_the_mapped_values_grant(groups, cognito):
    mapped = map_claims({"groups": groups, "cognito:groups": cognito}, MAPPING)
    expected: set[str] = set()
    for claim, values in (("groups", groups), ("cognito:groups", cognito)):
        for value in values:
            expected |= TABLE[claim].get(value, set())
    assert mapped.roles == expected


@given(groups=st.lists(_values, max_size=20), extra=st.lists(st.text(max_size=20), max_size=20))
def test_adding_unmapped_values_never_changes_the_roles(groups, extra):
    unmapped = [v for v in extra if v not in TABLE["groups"]]
    before = map_claims({"groups": groups}, MAPPING).roles
    after = map_claims({"groups": groups + unmapped, "roles": extra}, MAPPING).roles
    assert before == after


@given(
    claims=st.dictionaries(
        st.sampled_from(["groups", "cognito:groups", "dept", "roles", "other"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
    )
)
def test_arbitrary_claim_values_either_map_or_raise_identity_error(claims):
    try:
        mapped = map_claims(claims, MAPPING)
    except IdentityError:
        return
    assert mapped.roles <= MAPPING.known_roles


def test_mamori_role_names_in_an_unmapped_claim_grant_nothing():
    mapped = map_claims({"roles": ["admin", "approver"], "groups": ["admin"]}, MAPPING)
    assert mapped.roles == frozenset()


def test_a_single_string_group_is_read_as_one_value():
    assert map_claims({"groups": "ml-importers"}, MAPPING).roles == {"importer"}


def test_values_are_compared_exactly_not_case_folded():
    assert map_claims({"groups": ["ML-APPROVERS", "ml-approvers "]}, MAPPING).roles == set()


def test_mapped_attributes_are_copied_under_their_attribute_name():
    mapped = map_claims({"dept": "oncology", "other": "x"}, MAPPING)
    assert dict(mapped.attributes) == {"department": "oncology"}


@pytest.mark.parametrize(
    "claims",
    [{"groups": [1]}, {"groups": {"a": 1}}, {"groups": ["x"] * 257}, {"dept": ["oncology"]}],
)
def test_a_malformed_mapped_claim_refuses_the_token(claims):
    with pytest.raises(IdentityError, match="claim"):
        map_claims(claims, MAPPING)


def test_roles_of_one_exclusive_set_are_refused_together():
    mapping = ClaimMapping(
        roles={"roles": {"receptionist": {"receptionist"}, "doctor": {"doctor"}}},
        exclusive=[{"receptionist", "doctor"}],
    )
    assert map_claims({"roles": ["doctor"]}, mapping).roles == {"doctor"}
    with pytest.raises(IdentityError, match="may not be held together"):
        map_claims({"roles": ["doctor", "receptionist"]}, mapping)


@pytest.mark.parametrize(
    ("roles", "attributes"),
    [
        ({"groups": {"g": {"bad role"}}}, {}),
        ({"": {"g": {"viewer"}}}, {}),
        ({}, {"amr": "mfa"}),
        ({}, {"x": "scopes"}),
        ({}, {"x": "bad attr"}),
    ],
)
def test_a_bad_mapping_is_refused_at_configuration_time(roles, attributes):
    with pytest.raises(IdentityError, match="claim mapping"):
        ClaimMapping(roles=roles, attributes=attributes)


def test_an_exclusive_set_of_one_role_is_refused():
    with pytest.raises(IdentityError, match="two or more"):
        ClaimMapping(exclusive=[{"doctor"}])


def test_the_identity_mapping_grants_only_the_listed_names():
    mapping = ClaimMapping.identity({"viewer", "admin"})
    assert map_claims({"roles": ["admin", "root", "Admin"]}, mapping).roles == {"admin"}


def test_the_verifier_applies_the_mapping_to_a_token(issuer, config):
    token = issuer.mint(
        "alice",
        roles=["admin"],
        claims={"groups": ["ml-approvers", "doctors"], "dept": "oncology"},
    )
    principal = verify_token(token, config)
    assert principal.roles == {"approver"}
    assert dict(principal.attributes) == {"department": "oncology"}


def test_a_token_listing_roles_outside_the_mapping_gets_nothing_from_them(issuer, config):
    token = issuer.mint("mallory", roles=["admin", "approver", "deployer"])
    assert verify_token(token, config).roles == frozenset()
