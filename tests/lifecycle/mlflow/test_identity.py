"""What a binding is bound to: the registry object and the manifest of its files."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from mamori.lifecycle.mlflow.identity import (
    UNKNOWN_SIZE,
    ManifestEntry,
    RegistryFacts,
    VersionIdentity,
    listing_difference,
    listing_digest,
    manifest_difference,
)

ORIGINAL = VersionIdentity(1_700_000_000_000, "run-a", "models:/m-a", "m-a")
MANIFEST = [ManifestEntry("MLmodel", 10, "a" * 64), ManifestEntry("model.pkl", 20, "b" * 64)]


def test_the_identity_is_read_from_a_model_version_entity():
    version = SimpleNamespace(
        creation_timestamp=1_700_000_000_000, run_id="run-a", source="models:/m-a", model_id="m-a"
    )
    assert VersionIdentity.of(version) == ORIGINAL


def test_a_renamed_or_re_created_version_is_a_different_object():
    other = VersionIdentity(1_700_000_000_999, "run-b", "models:/m-b", "m-b")
    reason = ORIGINAL.difference(other)
    assert "renamed, or deleted and re-created" in reason
    assert "run id was 'run-a', is now 'run-b'" in reason


def test_the_same_object_has_no_difference():
    assert ORIGINAL.difference(VersionIdentity.from_json(ORIGINAL.to_json())) == ""


def test_a_matching_listing_passes_by_digest_alone():
    facts = RegistryFacts(ORIGINAL, listing_digest([("model.pkl", 20), ("MLmodel", 10)]))
    assert listing_difference(MANIFEST, facts) == ""


def test_a_changed_size_is_named_when_the_listing_is_at_hand():
    facts = RegistryFacts.from_listing(ORIGINAL, [("MLmodel", 10), ("model.pkl", 21)])
    assert listing_difference(MANIFEST, facts).endswith("model.pkl size 20 -> 21")


def test_an_added_file_is_a_difference_even_by_digest():
    facts = RegistryFacts(ORIGINAL, listing_digest([("MLmodel", 10), ("model.pkl", 20), ("x", 1)]))
    assert "listing differs" in listing_difference(MANIFEST, facts)


def test_a_store_without_sizes_is_compared_on_paths():
    facts = RegistryFacts.from_listing(
        ORIGINAL, [("MLmodel", UNKNOWN_SIZE), ("model.pkl", UNKNOWN_SIZE)]
    )
    assert listing_difference(MANIFEST, facts) == ""


def test_a_same_size_replacement_differs_in_its_digest():
    now = [MANIFEST[0], ManifestEntry("model.pkl", 20, "c" * 64)]
    assert "model.pkl sha256 bbbbbbbbbbbb -> cccccccccccc" in manifest_difference(MANIFEST, now)


@given(st.lists(st.tuples(st.text(min_size=1), st.integers(0, 2**40)), unique_by=lambda t: t[0]))
def test_the_listing_digest_does_not_depend_on_order(listing):
    assert listing_digest(listing) == listing_digest(list(reversed(listing)))
