"""Real model files built with the real libraries come out SAFE (no false positives)."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import fractions
import io
import pickle
import uuid
import zipfile
from collections.abc import Callable

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import scan_bytes
from mamori.scan.pickle import GlobalRef, analyse_one

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


class Net(torch.nn.Module):
    """A user's own model class, as a full-module torch.save names it (__main__-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.seq = torch.nn.Sequential(
            torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(4, 2), torch.nn.LayerNorm(2)
        )
        self.rnn = torch.nn.LSTM(2, 2)
        self.emb = torch.nn.Embedding(3, 2)
        self.attn = torch.nn.MultiheadAttention(2, 1)


def _torch_data_pkl(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return zf.read(name)


def _plain_data() -> dict[str, object]:
    return {
        "ints": [1, -2, 1 << 70],
        "floats": (1.5, float("inf")),
        "text": "héllo",
        "raw": b"\x00\x01",
        "set": {1, 2},
        "frozen": frozenset({3}),
        "ba": bytearray(b"xy"),
        "od": collections.OrderedDict(a=1),
        "dd": collections.defaultdict(list, {"k": [1]}),
        "counter": collections.Counter("abca"),
        "deque": collections.deque([1, 2]),
        "complex": complex(1, 2),
        "slice": slice(1, 5, 2),
        "range": range(3),
        "when": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "date": dt.date(2020, 1, 1),
        "delta": dt.timedelta(days=1),
        "dec": decimal.Decimal("1.10"),
        "frac": fractions.Fraction(1, 3),
        "uuid": uuid.UUID(int=7),
        "none": None,
        "flags": [True, False],
    }


def _sklearn_models() -> list[object]:
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.random((30, 3))
    y = (x[:, 0] > 0.5).astype(int)
    return [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
    ]


def _numpy_arrays() -> list[object]:
    return [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([1, "a", None], dtype=object),
        np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
        np.float64(1.5),
        np.int32(7),
        np.dtype("<f8"),
        np.random.RandomState(0),
        np.random.default_rng(1),
    ]


def _dill(obj: object) -> bytes:
    dill = pytest.importorskip("dill")
    return dill.dumps(obj)


def _cloudpickle(obj: object) -> bytes:
    cloudpickle = pytest.importorskip("cloudpickle")
    return cloudpickle.dumps(obj)


SAMPLES: dict[str, Callable[[], bytes]] = {
    "sklearn pipeline and random forest, protocol 2": lambda: pickle.dumps(
        _sklearn_models(), protocol=2
    ),
    "sklearn pipeline and random forest, protocol 5": lambda: pickle.dumps(
        _sklearn_models(), protocol=5
    ),
    "numpy arrays, protocol 2": lambda: pickle.dumps(_numpy_arrays(), protocol=2),
    "numpy arrays, protocol 4": lambda: pickle.dumps(_numpy_arrays(), protocol=4),
    "plain data, protocol 0": lambda: pickle.dumps(_plain_data(), protocol=0),
    "plain data, protocol 1": lambda: pickle.dumps(_plain_data(), protocol=1),
    "plain data, protocol 3": lambda: pickle.dumps(_plain_data(), protocol=3),
    "plain data, protocol 5": lambda: pickle.dumps(_plain_data(), protocol=5),
    "dill of plain data": lambda: _dill(_plain_data()),
    "cloudpickle of plain data": lambda: _cloudpickle(_plain_data()),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_benign_sample_is_safe(name: str) -> None:
    report = scan_bytes(SAMPLES[name](), name="model.pkl")
    assert report.verdict is Verdict.SAFE, [
        (f.rule_id, f.message) for f in report.findings if f.severity >= Severity.MEDIUM
    ]


TORCH: dict[str, Callable[[], object]] = {
    "state dict": lambda: Net().state_dict(),
    "full module with a user class": Net,
    "optimizer state": lambda: torch.optim.Adam(Net().parameters()).state_dict(),
}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_torch_data_pkl_read_with_persistent_ids_is_safe(name: str, fake_ctx) -> None:
    ctx = fake_ctx()
    result = analyse_one(io.BytesIO(_torch_data_pkl(TORCH[name]())), ctx, persistent_ids=True)
    assert result.complete
    assert ctx.max_severity() in (None, Severity.INFO, Severity.LOW), ctx.findings


def test_torch_persistent_ids_are_storage_tuples_with_a_global(fake_ctx) -> None:
    result = analyse_one(
        io.BytesIO(_torch_data_pkl(Net().state_dict())), fake_ctx(), persistent_ids=True
    )
    pid = result.persistent_ids[0]
    assert isinstance(pid, tuple)
    assert pid[0] == "storage"
    assert pid[1] == GlobalRef("torch", "FloatStorage")
    assert pid[3] == "cpu"


def test_full_module_names_the_user_class_as_low(fake_ctx) -> None:
    ctx = fake_ctx()
    analyse_one(io.BytesIO(_torch_data_pkl(Net())), ctx, persistent_ids=True)
    low = [f for f in ctx.findings if f.rule_id == "MAM-PKL-004"]
    assert low
    assert all(f.severity is Severity.LOW for f in low)
    assert any("Net" in f.message for f in low)


def test_torch_data_pkl_as_a_plain_pickle_reports_the_persistent_ids() -> None:
    report = scan_bytes(_torch_data_pkl(Net().state_dict()))
    assert "MAM-PKL-015" in {f.rule_id for f in report.findings}


def _pandas_objects() -> dict[str, object]:
    pd = pytest.importorskip("pandas")
    return {
        "dataframe": pd.DataFrame(
            {
                "i": [1, 2],
                "s": ["x", "y"],
                "f": [1.5, 2.5],
                "b": [True, False],
                "t": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                "tz": pd.date_range("2020", periods=2, tz="UTC"),
                "c": pd.Categorical(["u", "v"]),
                "n": pd.array([1, None], dtype="Int64"),
                "d": pd.to_timedelta([1, 2], unit="s"),
            }
        ),
        "series": pd.Series([1.0, 2.0], name="s", index=pd.Index(["a", "b"])),
        "multiindex": pd.DataFrame(
            {"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])
        ),
        "range-index": pd.RangeIndex(5),
        "categorical": pd.Categorical(["a", "b", "a"]),
        "timestamp": pd.Timestamp("2020-01-01", tz="UTC"),
        "zoneinfo-index": pd.DatetimeIndex(["2020-01-01"], tz="Europe/Paris"),
        "period-index": pd.period_range("2020", periods=2, freq="M"),
        "interval-index": pd.interval_range(0, 3),
        "timedelta-index": pd.timedelta_range("1 day", periods=2),
        "nat-and-na": [pd.NaT, pd.NA],
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("name", list(_pandas_objects()))
def test_pandas_pickles_are_safe(name: str, protocol: int) -> None:
    report = scan_bytes(pickle.dumps(_pandas_objects()[name], protocol=protocol))
    assert report.verdict is Verdict.SAFE, [(f.rule_id, f.message) for f in report.findings]
    assert all(f.severity <= Severity.LOW for f in report.findings), report.findings
