"""Only approved bytes load: the gate is asked about the exact copy the sandbox then reads."""

from __future__ import annotations

import pickle
import shutil

import pytest
from sklearn.linear_model import LogisticRegression
from tests.lifecycle.conftest import make_principal

from mamori.lifecycle.verify import StoreGate
from mamori.serving import NotDeployableError, serve_verified
from mamori.store.models import ApprovalDecision

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

IMPORTER = make_principal("ivan", "importer")
APPROVER = make_principal("paula", "approver")


@pytest.fixture
def model_file(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    path = folder / "model.pkl"
    fitted = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path.write_bytes(pickle.dumps(fitted))
    return path


def _approve(lifecycle, path):
    sha = lifecycle.import_file(IMPORTER, path).sha256
    lifecycle.run_scan(sha)
    lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)


def test_an_approved_model_is_served_from_the_sandbox(lifecycle, model_file):
    _approve(lifecycle, model_file)
    with serve_verified(StoreGate(lifecycle), model_file, flavour="pickle") as (result, running):
        assert result.deployable
        assert running.predict([[0.1], [2.9]]) == [0, 1]


def test_a_model_whose_bytes_changed_after_approval_does_not_start(lifecycle, model_file):
    _approve(lifecycle, model_file)
    tampered = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [1, 1, 0, 0])
    model_file.write_bytes(pickle.dumps(tampered))
    with (
        pytest.raises(NotDeployableError, match="not deployable"),
        serve_verified(StoreGate(lifecycle), model_file, flavour="pickle"),
    ):
        pytest.fail("the sandbox started on bytes the gate never approved")


def test_an_unapproved_file_beside_the_model_stops_the_start(lifecycle, model_file):
    _approve(lifecycle, model_file)
    (model_file.parent / "entry.py").write_text("import os\nos.system('true')\n")
    with (
        pytest.raises(NotDeployableError, match="1 file"),
        serve_verified(StoreGate(lifecycle), model_file, flavour="pickle"),
    ):
        pytest.fail("a file the loader may read was never approved")
