"""Fresh-eyes red team of the tool gateway: smuggling past the sink checks and the lints.

Each test first shows what the attack obtains without the check (the record or the text
that would leave, the host a real HTTP client would reach), then that the gateway stops it.
"""

# ruff: noqa: N802 -- this red-team round's naming scheme: test_freshEyes_<technique>
from __future__ import annotations

import pytest
from urllib3.util import parse_url

from mamori.errors import ConfigError
from mamori.genai import ContextFactory, Session, SinkSpec, ToolGateway
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN, PATIENT_SCHEMA
from mamori.identity import DevIssuer, JwksSource, VerifierConfig

SECRET = "p2 has asthma"


def _phi_labeler(text: str) -> frozenset[str]:
    return frozenset({"PHI"}) if "asthma" in text else frozenset()


@pytest.fixture
def mailer(hospital):
    gateway = ToolGateway(hospital.authorizer, hospital.resolve, text_labeler=_phi_labeler)
    sent: list[dict[str, str]] = []

    @gateway.tool(
        description="Send an email.",
        action="send_to_sink",
        free_text={"title"},
        sink=SinkSpec("external-email", "to", frozenset({"billing@st-mary.example"})),
    )
    def send(ctx, *, to: str, title: str, body: str) -> str:
        sent.append({"to": to, "title": title, "body": body})
        return "sent"

    return gateway, sent


def test_freshEyes_sink_free_text_the_body_is_labelled(mailer, doctor):
    gateway, sent = mailer
    result = gateway.call(
        doctor, "send", {"to": "billing@st-mary.example", "title": "hi", "body": SECRET}
    )
    assert not result.ok
    assert sent == []


def test_freshEyes_sink_free_text_phi_in_another_free_text_argument_is_labelled(mailer, doctor):
    gateway, sent = mailer
    arguments = {"to": "billing@st-mary.example", "title": SECRET, "body": "see subject"}
    result = gateway.call(doctor, "send", arguments)
    assert not result.ok, "PHI left through the sink's title argument"
    assert sent == []


def test_freshEyes_sink_url_backslash_userinfo_reaches_another_host(hospital, doctor):
    url = "https://evil.example\\@ehr.st-mary.example/inbox"
    # Without the check: urllib3 (and so requests) connects to evil.example, while
    # urllib.parse, which the allowlist used, reads ehr.st-mary.example.
    assert parse_url(url).host == "evil.example"
    result = hospital.gateway.call(doctor, "post_ehr", {"url": url, "body": "note"})
    assert not result.ok
    assert hospital.sent == []


@pytest.mark.parametrize(
    "url",
    [
        "https://user@ehr.st-mary.example/inbox",
        "https://ehr.st-mary.example\\.evil.example/inbox",
        "https://evil.example\t@ehr.st-mary.example/inbox",
        "https://ehr.st-mary.example /inbox",
    ],
)
def test_freshEyes_sink_url_userinfo_whitespace_and_backslashes_are_refused(hospital, doctor, url):
    result = hospital.gateway.call(doctor, "post_ehr", {"url": url, "body": "note"})
    assert not result.ok
    assert hospital.sent == []


def test_freshEyes_sink_url_a_plain_allowed_url_still_posts(hospital, doctor):
    url = "https://ehr.st-mary.example/inbox?from=a@b"
    assert hospital.gateway.call(doctor, "post_ehr", {"url": url, "body": "note"}).ok


def test_freshEyes_camelcase_an_id_declared_as_free_text_is_refused(hospital):
    register = hospital.gateway.tool(
        description="x", action="read_patient", free_text={"patientId"}, output=PATIENT_SCHEMA
    )

    def get_record(ctx, *, patientId: str) -> dict:  # noqa: N803 -- the attack's spelling
        return hospital.data.patients[patientId]

    # Without the lint: the "free text" argument picks any record.
    assert "asthma" in str(get_record(None, patientId="p2"))
    with pytest.raises(ConfigError, match="looks like a resource id"):
        register(get_record)


def test_freshEyes_camelcase_an_identity_argument_is_refused(hospital):
    register = hospital.gateway.tool(
        description="x", action="read_patient", free_text={"tenantName"}, output=PATIENT_SCHEMA
    )
    with pytest.raises(ConfigError, match="looks like identity"):

        @register
        def search(ctx, *, tenantName: str) -> str:  # noqa: N803 -- the attack's spelling
            return tenantName


@pytest.mark.xfail(
    strict=True,
    reason="a GenAI principal is User::<subject> with user_id=<subject>: the issuer is not "
    "part of the Cedar identity, so one subject at two trusted issuers is one care-team member",
)
def test_freshEyes_second_issuer_same_subject_is_not_the_same_doctor(hospital, doctor, tmp_path):
    other = DevIssuer(tmp_path / "other", issuer="https://other-idp.test", audience="mamori")
    config = VerifierConfig(
        issuer="https://other-idp.test",
        audience="mamori",
        jwks=JwksSource(path=other.jwks_path),
        claims=HOSPITAL_CLAIMS,
    )
    factory = ContextFactory(config, HOSPITAL_DOMAIN, hospital.state)
    twin = Session(factory.from_token(other.mint("dr-house", roles=["doctor"], tenant="st-mary")))
    assert hospital.gateway.call(doctor, "get_patient", {"patient_id": "p1"}).ok
    # Another issuer's "dr-house" is another person: p1's care team does not list them.
    assert not hospital.gateway.call(twin, "get_patient", {"patient_id": "p1"}).ok
