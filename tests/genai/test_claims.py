"""Issue 14, item 8: a GenAI context takes its roles only through the configured claim mapping
(the identity-svc ``ClaimMapping``, the same code the service uses).

The oracle is Cedar on the shipped policies, called directly: it shows what a principal holding
both roles would be granted, which neither role grants alone."""

from __future__ import annotations

import pytest

from mamori.errors import ConfigError, IdentityError
from mamori.genai import ContextFactory, Session
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN
from mamori.identity import JwksSource, VerifierConfig
from mamori.policy import Entity, EntityUid, Request

PHI = Entity(EntityUid("Hospital::Classification", "PHI"))


def _cedar_allows(hospital, roles, action, resource):
    """Cedar on the shipped policies, for a User in exactly ``roles`` (no mamori code path)."""
    role_uids = tuple(EntityUid("Hospital::Role", r) for r in sorted(roles))
    user = Entity(
        EntityUid("Hospital::User", "mallory"),
        {"tenant": "st-mary", "user_id": "mallory"},
        role_uids,
    )
    request = Request(user.uid, EntityUid("Hospital::Action", action), resource.uid)
    entities = [user, *(Entity(r) for r in role_uids), resource]
    return hospital.engine.decide(request, entities).allowed


def test_08_the_union_of_receptionist_and_doctor_is_more_than_either_role(hospital):
    # The attack's premise, from Cedar alone: p2 is on no care team of mallory's.
    p2 = hospital.resolve("Hospital::Patient", "p2")
    both = {"receptionist", "doctor"}
    assert _cedar_allows(hospital, both, "read_patient", p2)
    assert _cedar_allows(hospital, both, "read_field", PHI)
    # Neither role alone reads p2's PHI: the receptionist reads p2 but not PHI, and the doctor
    # reads PHI but not p2.
    assert not _cedar_allows(hospital, {"receptionist"}, "read_field", PHI)
    assert not _cedar_allows(hospital, {"doctor"}, "read_patient", p2)


def test_08_a_token_listing_receptionist_and_doctor_gets_no_context(hospital, issuer, factory):
    token = issuer.mint("mallory", roles=["receptionist", "doctor"], tenant="st-mary")
    with pytest.raises(IdentityError, match="may not be held together"):
        factory.from_token(token)


def test_08_the_same_pair_through_idp_groups_is_refused_too(issuer, factory):
    token = issuer.mint(
        "mallory",
        tenant="st-mary",
        claims={"groups": ["st-mary-front-desk", "st-mary-physicians"]},
    )
    with pytest.raises(IdentityError, match="may not be held together"):
        factory.from_token(token)


def test_08_unmapped_role_names_grant_nothing(hospital, issuer, factory):
    token = issuer.mint(
        "rita", roles=["receptionist", "admin", "Doctor", "doctor "], tenant="st-mary"
    )
    session = Session(factory.from_token(token))
    assert session.ctx.roles == {"receptionist"}
    data = hospital.gateway.call(session, "get_patient", {"patient_id": "p2"}).data
    assert "asthma" not in str(data)  # p2's diagnosis: PHI, which no receptionist reads
    assert "insurance" in data


def test_08_a_mapped_idp_group_grants_its_mamori_role(hospital, issuer, factory):
    token = issuer.mint("dr-house", tenant="st-mary", claims={"groups": ["st-mary-physicians"]})
    session = Session(factory.from_token(token))
    assert session.ctx.roles == {"doctor"}
    assert "hypertension" in str(
        hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).data
    )


def test_08_a_context_factory_without_a_claim_mapping_is_refused(hospital, issuer):
    as_given = VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=issuer.jwks_path),
        attribute_claims=frozenset({"patient_id"}),
    )
    with pytest.raises(ConfigError, match="claim mapping"):
        ContextFactory(as_given, HOSPITAL_DOMAIN, hospital.state)


def test_08_the_patient_id_attribute_comes_from_the_mapping(issuer, factory):
    ctx = factory.from_token(
        issuer.mint("pat-1", roles=["patient"], tenant="st-mary", claims={"patient_id": "p1"})
    )
    assert dict(ctx.principal.attributes) == {"patient_id": "p1"}
    assert HOSPITAL_CLAIMS.attributes == {"patient_id": "patient_id"}
