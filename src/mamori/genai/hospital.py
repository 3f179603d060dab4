"""The hospital example domain: a synthetic dataset, its trusted resolver, tools and sinks.

Used by ``mamori demo hospital``, the attack suite and the benchmark. Everything here stands
for the application's own code; it only uses the public gateway, retrieval and policy APIs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from qdrant_client import QdrantClient

from mamori.audit import AuditChain, AuditLog, AuditSink, MemorySink
from mamori.genai.aggregate import AuthorizedAggregate
from mamori.genai.authorizer import Authorizer
from mamori.genai.context import Domain, TrustedContext
from mamori.genai.gateway import ListMode, SinkSpec, ToolGateway
from mamori.genai.ingestion import AclSchema, SourceDocument, TrustedIngestor
from mamori.genai.projection import ClassificationSchema, TextNet
from mamori.genai.retrieval import AuthorizedRetriever
from mamori.genai.state import ConversationStore
from mamori.identity import ClaimMapping
from mamori.policy import Entity, EntityUid, PolicyEngine

if TYPE_CHECKING:
    from mamori.genai.textnet import PresidioTextNet

__all__ = [
    "DOCUMENT_ACL",
    "HOSPITAL_CLAIMS",
    "HOSPITAL_DOMAIN",
    "HOSPITAL_ENTITY_LABELS",
    "PATIENT_SCHEMA",
    "Hospital",
    "HospitalData",
    "build_hospital",
    "hospital_text_net",
    "synthetic_data",
]

HOSPITAL_DOMAIN = Domain(namespace="Hospital", attribute_map={"patient_id": "patient_id"})
#: The hospital IdP's identity source: which mamori roles its ``roles`` and ``groups`` claims
#: grant. Anything else the token lists grants nothing, and one person is never two of
#: receptionist, doctor and patient at once (their union reads every patient's PHI).
HOSPITAL_CLAIMS = ClaimMapping(
    roles={
        "roles": {"receptionist": {"receptionist"}, "doctor": {"doctor"}, "patient": {"patient"}},
        "groups": {"st-mary-front-desk": {"receptionist"}, "st-mary-physicians": {"doctor"}},
    },
    attributes={"patient_id": "patient_id"},
    exclusive=[{"receptionist", "doctor"}, {"receptionist", "patient"}, {"doctor", "patient"}],
)
DOCUMENT_ACL = AclSchema(
    {"tenant": str, "patient_id": str, "classification": str, "care_team": list}
)
#: The patient record's classification, including nested JSON.
PATIENT_SCHEMA = ClassificationSchema(
    {
        "patient_id": "PUBLIC",
        "name": "PII",
        "phone": "PII",
        "address": "PII",
        "insurance.member_id": "PII",
        "insurance.diagnosis_codes": "PHI",
        "visits[].date": "PII",
        "visits[].diagnosis": "PHI",
        "visits[].medications": "PHI",
        "allergies": "PHI",
    }
)

#: Free-text entities of the hospital domain and their classification labels (data, not code):
#: the built-in Presidio ones plus the hospital's own identifiers.
HOSPITAL_ENTITY_LABELS: Mapping[str, str] = {
    "EMAIL_ADDRESS": "PII",
    "PHONE_NUMBER": "PII",
    "URL": "PII",
    "IP_ADDRESS": "PII",
    "MEDICAL_LICENSE": "PII",  # identifies a clinician, not a patient's condition
    "US_SSN": "PHI",  # a HIPAA identifier; a receptionist has no need for it in free text
    "CREDIT_CARD": "PHI",  # no payment label in this set; the strictest one fails closed
    "IBAN_CODE": "PHI",  # same reason as CREDIT_CARD
    "MRN": "PHI",  # the medical record number keys the clinical record itself
    "MEMBER_ID": "PII",  # the insurance member id field is PII in PATIENT_SCHEMA too
}
#: Hospital identifiers: ``MRN 04401001`` / ``MRN: 4401001``, and ``MBR-1001`` member ids.
_HOSPITAL_PATTERNS: Mapping[str, str] = {
    "MRN": r"\bMRN[\s:#-]*[0-9]{6,10}\b",
    "MEMBER_ID": r"\bMBR-[0-9]{4,10}\b",
}

_FIRST = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jon"]
_LAST = ["Ito", "Khan", "Lopez", "Meyer", "Novak", "Okafor", "Park", "Quinn", "Rossi", "Sato"]
#: The diagnoses the count tool accepts (an enumerated argument: nothing else reaches it).
Diagnosis = Literal["type 2 diabetes", "hypertension", "asthma", "low back pain"]
_DIAGNOSES = [
    ("E11.9", "type 2 diabetes", "metformin"),
    ("I10", "hypertension", "lisinopril"),
    ("J45.909", "asthma", "salbutamol"),
    ("M54.5", "low back pain", "ibuprofen"),
]


@dataclass
class HospitalData:
    """Patients, documents, sinks and staff of one synthetic hospital."""

    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    care_teams: dict[str, set[str]] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)
    documents: list[SourceDocument] = field(default_factory=list)
    sinks: dict[str, Entity] = field(default_factory=dict)


def synthetic_data(*, seed: int = 7, patients: int = 6, tenant: str = "st-mary") -> HospitalData:
    """A small, deterministic dataset: patients p1..pN, doctors, notes and call logs."""
    rng = random.Random(seed)  # noqa: S311 -- synthetic data, not cryptography
    data = HospitalData()
    for n in range(1, patients + 1):
        pid = f"p{n}"
        code, diagnosis, drug = _DIAGNOSES[n % len(_DIAGNOSES)]
        doctor = "dr-house" if n % 2 else "dr-grey"
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        data.patients[pid] = {
            "patient_id": pid,
            "name": name,
            "phone": f"+1 617 555 01{n:02d}",
            "address": {"street": f"{n} Elm St", "city": "Boston"},
            "insurance": {"member_id": f"MBR-{1000 + n}", "diagnosis_codes": [code]},
            "visits": [
                {
                    "date": f"2026-0{n % 9 + 1}-1{n % 9}",
                    "diagnosis": diagnosis,
                    "medications": [drug],
                }
            ],
            "allergies": ["penicillin"] if n % 3 == 0 else [],
        }
        data.care_teams[pid] = {doctor}
        data.tenants[pid] = tenant
        acl_phi = {
            "tenant": tenant,
            "patient_id": pid,
            "classification": "PHI",
            "care_team": sorted(data.care_teams[pid]),
        }
        data.documents.append(
            SourceDocument(
                f"note-{pid}",
                f"Clinical note for {name} ({pid}): presents with {diagnosis}; "
                f"prescribed {drug}. Follow-up in six weeks.",
                acl_phi,
            )
        )
        data.documents.append(
            SourceDocument(
                f"call-{pid}",
                f"Call log: {name} ({pid}, MRN {4_401_000 + n:08d}) asked to reschedule the "
                f"follow-up appointment; call back on +1 617 555 01{n:02d}.",
                {**acl_phi, "classification": "PII"},
            )
        )
    for sink_id, accepts in (
        ("ehr-inbox", ["PHI", "PII", "PUBLIC"]),
        ("external-email", ["PUBLIC"]),
        ("billing-webhook", ["PII", "PUBLIC"]),
    ):
        data.sinks[sink_id] = Entity(
            EntityUid("Hospital::Sink", sink_id), {"tenant": tenant, "accepts": frozenset(accepts)}
        )
    return data


@dataclass
class Hospital:
    """The wired-up example application."""

    data: HospitalData
    engine: PolicyEngine
    state: ConversationStore
    authorizer: Authorizer
    gateway: ToolGateway
    retriever: AuthorizedRetriever
    client: QdrantClient
    embed: Callable[[Sequence[str]], Sequence[Sequence[float]]]
    sent: list[dict[str, str]] = field(default_factory=list)

    def patient_attributes(self, patient_id: str) -> dict[str, Any]:
        """A patient's trusted ACL attributes, as the EHR holds them."""
        return {
            "tenant": self.data.tenants[patient_id],
            "patient_id": patient_id,
            "care_team": frozenset(self.data.care_teams[patient_id]),
        }

    def resolve(self, entity_type: str, resource_id: str) -> Entity | None:
        """The trusted resolver: attributes come from the EHR, never from the model."""
        if entity_type == "Hospital::Patient" and resource_id in self.data.patients:
            return Entity(EntityUid(entity_type, resource_id), self.patient_attributes(resource_id))
        if entity_type == "Hospital::Sink":
            return self.data.sinks.get(resource_id)
        return None


def hospital_text_net() -> PresidioTextNet:
    """The free-text net for this domain (imports Presidio and spaCy: a few seconds)."""
    from mamori.genai.textnet import (  # noqa: PLC0415 -- heavy, only when a net is wanted
        PresidioTextNet,
        pattern_recognizer,
    )

    return PresidioTextNet(
        HOSPITAL_ENTITY_LABELS,
        extra_recognizers=[pattern_recognizer(e, rx) for e, rx in _HOSPITAL_PATTERNS.items()],
    )


def build_hospital(
    embed: Callable[[Sequence[str]], Sequence[Sequence[float]]],
    dimension: int,
    *,
    data: HospitalData | None = None,
    audit: AuditSink | None = None,
    audit_log: AuditLog | None = None,
    client: QdrantClient | None = None,
    text_net: TextNet | None = None,
    text_labeler: Callable[[str], frozenset[str]] | None = None,
    state: ConversationStore | None = None,
) -> Hospital:
    """Wire engine, audit, gateway, tools and an indexed Qdrant collection together.

    ``state`` holds revocations and conversation taint; pass one on the deployment's store to
    share them between processes (the default is a private temporary SQLite store).
    """
    data = data or synthetic_data()
    engine = PolicyEngine.packaged("hospital")
    state = state if state is not None else ConversationStore.ephemeral()
    # ``audit_log`` (e.g. a SqlAuditLog on the lifecycle store) wins over a bare ``audit`` sink.
    log = audit_log if audit_log is not None else AuditChain(audit or MemorySink())
    authorizer = Authorizer(engine, state, log)
    client = client or QdrantClient(":memory:")
    ingestor = TrustedIngestor(client, "notes", embed, DOCUMENT_ACL)
    ingestor.ensure_collection(dimension)
    ingestor.ingest(data.documents)
    retriever = AuthorizedRetriever(client, "notes", authorizer)
    gateway_box: list[Hospital] = []
    hospital = Hospital(
        data,
        engine,
        state,
        authorizer,
        ToolGateway(
            authorizer,
            lambda t, i: gateway_box[0].resolve(t, i),  # noqa: PLW0108 -- late binding
            text_net=text_net,
            text_labeler=text_labeler,
        ),
        retriever,
        client,
        embed,
    )
    gateway_box.append(hospital)
    _register_tools(hospital)
    return hospital


def _register_tools(h: Hospital) -> None:
    gw = h.gateway

    @gw.tool(
        description="Read one patient's record.",
        action="read_patient",
        resources={"patient_id": "Patient"},
        output=PATIENT_SCHEMA,
    )
    def get_patient(ctx: TrustedContext, *, patient_id: str) -> dict[str, Any]:
        del ctx
        return h.data.patients[patient_id]

    @gw.tool(
        description="Read several patients' records.",
        action="read_patient",
        resources={"patient_ids": "Patient"},
        output=ClassificationSchema({f"[].{k}": v for k, v in PATIENT_SCHEMA.labels.items()}),
        list_mode=ListMode.REDUCE,
    )
    def get_patients(ctx: TrustedContext, *, patient_ids: list[str]) -> list[dict[str, Any]]:
        del ctx
        return [h.data.patients[p] for p in patient_ids]

    @gw.tool(
        description="Search clinical notes and call logs.",
        free_text={"query"},
        output=ClassificationSchema(
            {
                "contact[].doc_id": "PUBLIC",
                "contact[].text": "PII",
                "clinical[].doc_id": "PUBLIC",
                "clinical[].text": "PHI",
            }
        ),
    )
    def search_notes(ctx: TrustedContext, *, query: str) -> dict[str, list[dict[str, str]]]:
        hits = h.retriever.search(ctx, h.embed([query])[0], limit=5)
        # The label of a hit's text follows the document's own trusted ACL classification.
        out: dict[str, list[dict[str, str]]] = {"contact": [], "clinical": []}
        for hit in hits:
            bucket = "clinical" if hit.acl["classification"] == "PHI" else "contact"
            out[bucket].append({"doc_id": hit.doc_id, "text": hit.text})
        return out

    patients = AuthorizedAggregate(h.authorizer, action="read_patient", resource_type="Patient")

    @gw.tool(
        description="Count the patients you may read who were seen for a diagnosis.",
        # The count says how many patients have a condition: clinical data, PHI.
        output=ClassificationSchema({"patients": "PHI"}),
    )
    def count_patients(ctx: TrustedContext, *, diagnosis: Diagnosis) -> dict[str, Any]:
        seen = patients.count(
            ctx,
            h.data.patients.values(),
            lambda record: h.patient_attributes(record["patient_id"]),
            where=lambda record: any(v["diagnosis"] == diagnosis for v in record["visits"]),
        )
        return {"patients": seen}

    @gw.tool(
        description="Send an email.",
        action="send_to_sink",
        sink=SinkSpec("external-email", "to", frozenset({"billing@st-mary.example"})),
    )
    def send_email(ctx: TrustedContext, *, to: str, body: str) -> str:
        h.sent.append(
            {"sink": "external-email", "to": to, "by": ctx.principal.subject, "body": body}
        )
        return "sent"

    @gw.tool(
        description="Post to the EHR inbox.",
        action="send_to_sink",
        sink=SinkSpec("ehr-inbox", "url", frozenset({"ehr.st-mary.example"})),
    )
    def post_ehr(ctx: TrustedContext, *, url: str, body: str) -> str:
        h.sent.append({"sink": "ehr-inbox", "to": url, "by": ctx.principal.subject, "body": body})
        return "posted"
