"""scikit-learn, joblib, numpy, dill and cloudpickle samples, written by the real libraries.

Malicious samples pickle an object whose ``__reduce__`` names ``os.system`` (the pickler only
records the function's name; nothing is called) or, for dill and cloudpickle, a function:
those libraries serialise code objects, which is code execution at load time by design.
"""

from __future__ import annotations

import importlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from mamori.testing.corpus._model import Spec, spec
from mamori.testing.corpus.gadgets import HARMLESS_CMD
from mamori.testing.corpus.pickles import BENIGN_DATA, DANGEROUS_GLOBAL

__all__ = ["JOBLIB_COMPRESSORS", "SPECS", "Payload", "sklearn_pipeline"]

JOBLIB_COMPRESSORS = ("zlib", "gzip", "bz2", "lzma", "xz")
_SK = ("sklearn", "numpy")
_JL = ("joblib", "sklearn", "numpy")


class Payload:
    """Pickles as ``os.system("true")``; used inside library containers."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os  # noqa: PLC0415 - only the function object's name is recorded

        return (os.system, (HARMLESS_CMD,))


def _lib(name: str) -> Any:
    """Import an optional, untyped writer library (scikit-learn, joblib) only when building."""
    return importlib.import_module(name)


def _xy() -> tuple[Any, Any]:
    import numpy as np  # noqa: PLC0415 - optional dependency

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


def sklearn_pipeline() -> Any:
    """A fitted StandardScaler + LogisticRegression pipeline (deterministic)."""
    pre, lin = _lib("sklearn.preprocessing"), _lib("sklearn.linear_model")
    steps = [("scale", pre.StandardScaler()), ("clf", lin.LogisticRegression())]
    return _lib("sklearn.pipeline").Pipeline(steps).fit(*_xy())


def _forest() -> Any:
    forest = _lib("sklearn.ensemble").RandomForestClassifier
    return forest(n_estimators=3, max_depth=3, random_state=0).fit(*_xy())


def _logreg() -> Any:
    x, y = _xy()
    return _lib("sklearn.linear_model").LogisticRegression().fit(x, y)


_MODELS = {"pipeline": sklearn_pipeline, "random-forest": _forest, "logreg": _logreg}


def _sk_pickle(kind: str) -> Spec:
    @spec(
        f"sklearn-{kind}-pickle",
        f"sklearn/{kind}.pkl",
        family="sklearn",
        technique=f"fitted scikit-learn {kind} via pickle.dumps protocol 5",
        needs=_SK,
    )
    def build(path: Path) -> None:
        path.write_bytes(pickle.dumps(_MODELS[kind](), protocol=5))

    return build


def _joblib(kind: str, compress: str | None) -> Spec:
    suffix = f"-{compress}" if compress else ""

    @spec(
        f"joblib-{kind}{suffix}",
        f"joblib/{kind}{suffix}.joblib",
        family="joblib",
        technique=f"joblib.dump of a fitted {kind}"
        + (f", compress=('{compress}', 3)" if compress else ", uncompressed"),
        needs=_JL,
    )
    def build(path: Path) -> None:
        joblib = _lib("joblib")

        joblib.dump(_MODELS[kind](), path, compress=(compress, 3) if compress else 0)

    return build


def _joblib_evil(compress: str | None) -> Spec:
    suffix = f"-{compress}" if compress else ""

    @spec(
        f"joblib-payload{suffix}",
        f"joblib/payload{suffix}.joblib",
        family="joblib",
        technique="joblib.dump of a pipeline dict carrying an os.system __reduce__"
        + (f", compress=('{compress}', 3)" if compress else ", uncompressed"),
        expected=[DANGEROUS_GLOBAL],
        needs=_JL,
    )
    def build(path: Path) -> None:
        joblib = _lib("joblib")

        joblib.dump(
            {"model": sklearn_pipeline(), "hook": Payload()},
            path,
            compress=(compress, 3) if compress else 0,
        )

    return build


@spec(
    "sklearn-function-transformer-os-system",
    "sklearn/function-transformer-os-system.pkl",
    family="sklearn",
    technique="Pipeline whose FunctionTransformer(func=os.system) is called at predict time",
    expected=[DANGEROUS_GLOBAL],
    needs=_SK,
)
def _function_transformer(path: Path) -> None:
    import os  # noqa: PLC0415

    transformer = _lib("sklearn.preprocessing").FunctionTransformer(func=os.system)
    pipe = _lib("sklearn.pipeline").Pipeline([("f", transformer)])
    path.write_bytes(pickle.dumps(pipe, protocol=4))


# --- numpy ----------------------------------------------------------------------------------


def _np_arrays() -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415

    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i64": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "structured": np.zeros(3, dtype=[("x", "<f4"), ("y", "<i2")]),
        "bool": np.array([True, False]),
    }


def _npy(key: str) -> Spec:
    @spec(
        f"numpy-npy-{key}",
        f"numpy/{key}.npy",
        family="numpy",
        technique=f"np.save of a numeric {key} array (no pickle)",
        needs=("numpy",),
    )
    def build(path: Path) -> None:
        import numpy as np  # noqa: PLC0415

        np.save(path, _np_arrays()[key], allow_pickle=False)

    return build


def _npz(compressed: bool) -> Spec:
    name = "numpy-npz-compressed" if compressed else "numpy-npz"

    @spec(
        name,
        f"numpy/{name.removeprefix('numpy-')}.npz",
        family="numpy",
        technique="np.savez_compressed of numeric arrays" if compressed else "np.savez",
        needs=("numpy",),
    )
    def build(path: Path) -> None:
        import numpy as np  # noqa: PLC0415

        save = np.savez_compressed if compressed else np.savez
        save(path, **_np_arrays())

    return build


def _object_array_npy() -> bytes:
    import numpy as np  # noqa: PLC0415

    arr = np.empty(2, dtype=object)
    arr[0] = "ok"
    arr[1] = Payload()
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)  # mamori: safe (writes; nothing is loaded)
    return buf.getvalue()


@spec(
    "numpy-object-array-payload",
    "numpy/object-array-payload.npy",
    family="numpy",
    technique="object-dtype .npy: the array body is a pickle, run by np.load with allow_pickle",
    expected=[DANGEROUS_GLOBAL, "MAM-NPY-003"],
    needs=("numpy",),
)
def _npy_evil(path: Path) -> None:
    path.write_bytes(_object_array_npy())


@spec(
    "numpy-npz-malicious-member",
    "numpy/malicious-member.npz",
    family="numpy",
    technique="npz whose second member is an object-dtype .npy carrying the payload",
    expected=[DANGEROUS_GLOBAL, "MAM-NPY-003"],
    needs=("numpy",),
)
def _npz_evil(path: Path) -> None:
    import numpy as np  # noqa: PLC0415

    good = io.BytesIO()
    np.save(good, np.arange(4, dtype=np.float32))
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in (("weights.npy", good.getvalue()), ("meta.npy", _object_array_npy())):
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


# --- dill and cloudpickle -------------------------------------------------------------------


def _plain(lib: str) -> Spec:
    @spec(
        f"{lib}-plain-data",
        f"{lib}/plain-data.pkl",
        family=lib,
        technique=f"{lib}.dumps of plain builtin data",
        needs=(lib,),
    )
    def build(path: Path) -> None:
        path.write_bytes(importlib.import_module(lib).dumps(BENIGN_DATA))

    return build


def _function(lib: str) -> Spec:
    @spec(
        f"{lib}-function",
        f"{lib}/function.pkl",
        family=lib,
        technique=f"{lib}.dumps of a lambda: the pickle carries a code object that runs when "
        "called (serialised code is code execution)",
        expected=[DANGEROUS_GLOBAL],
        needs=(lib,),
    )
    def build(path: Path) -> None:
        mod = importlib.import_module(lib)
        path.write_bytes(mod.dumps(lambda x: x + 1))

    return build


SPECS: tuple[Spec, ...] = (
    *(_sk_pickle(k) for k in _MODELS),
    *(_joblib(k, None) for k in _MODELS),
    *(_joblib("pipeline", c) for c in JOBLIB_COMPRESSORS),
    _joblib("random-forest", "zlib"),
    _function_transformer,
    _joblib_evil(None),
    _joblib_evil("zlib"),
    _joblib_evil("lzma"),
    *(_npy(k) for k in ("f32", "i64", "fortran", "structured", "bool")),
    _npz(compressed=False),
    _npz(compressed=True),
    _npy_evil,
    _npz_evil,
    _plain("dill"),
    _plain("cloudpickle"),
    _function("dill"),
    _function("cloudpickle"),
)
