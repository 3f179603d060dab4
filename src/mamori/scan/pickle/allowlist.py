"""Globals known to be safe in the way real model files use them, as data with a reason each.

Every entry is an exact canonical name (``module.qualname`` as a pickler writes it, after
:func:`mamori.scan.pickle.names.canonical`); nothing is trusted by prefix or naming convention.
The classes of torch.nn and scikit-learn are listed one by one in :mod:`known_classes`.

Besides "safe", an entry can say what the helper does with its arguments at load time, because
the unpickler is not the only caller: an allowlisted helper may call, instantiate or give state
to what it receives (``torch._tensor._rebuild_from_type_v2(func, type, args, state)`` calls
``func(*args)``). Those helpers are declared in :data:`CALLS`, :data:`INSTANTIATES` and
:data:`GIVES_STATE`, and the analyser follows their (nested) arguments as the helper would.
:data:`CONDITIONAL` names callables that are safe only with arguments the analyser checks at
every call (``getattr`` on an imported name with a literal attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from mamori.scan.pickle.known_classes import SKLEARN_ESTIMATORS, TORCH_MODULES

__all__ = [
    "ALLOWLIST",
    "CALLS",
    "CONDITIONAL",
    "GIVES_STATE",
    "INSTANTIATES",
    "TYPING_FORMS",
    "WRAPS",
    "Calls",
    "is_allowlisted",
]

_TORCH_STORAGES = (
    "Double",
    "Float",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexDouble",
    "ComplexFloat",
    "QUInt8",
    "QInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
    "Untyped",
)

ALLOWLIST: Final = MappingProxyType(
    {
        # --- torch ------------------------------------------------------------------------
        "torch._utils._rebuild_tensor": "rebuilds a tensor view on a storage (legacy)",
        "torch._utils._rebuild_tensor_v2": "rebuilds a tensor view on a storage",
        "torch._utils._rebuild_tensor_v3": "rebuilds a tensor view on a storage with dtype",
        "torch._utils._rebuild_parameter": "wraps a tensor as nn.Parameter",
        "torch._utils._rebuild_parameter_with_state": "nn.Parameter with python state",
        "torch._utils._rebuild_sparse_tensor": "rebuilds a sparse tensor from tensors",
        "torch._utils._rebuild_qtensor": "rebuilds a quantized tensor",
        "torch._utils._rebuild_meta_tensor_no_storage": "meta tensor from shape/dtype",
        "torch._utils._rebuild_wrapper_subclass": "tensor subclass shell from metadata",
        "torch._utils._rebuild_nested_tensor": "nested tensor from buffers",
        "torch._utils._rebuild_device_tensor_from_numpy": "tensor from a numpy array",
        "torch._tensor._rebuild_from_type_v2": "tensor subclass rebuild (see CALLS)",
        "torch.serialization._get_layout": "maps a layout name to torch.layout",
        "torch._utils._get_restore_location": "maps a storage location name",
        "torch.storage.UntypedStorage": "storage type named in persistent ids",
        "torch.storage.TypedStorage": "storage type named in persistent ids",
        "torch.storage._TypedStorage": "storage type named in persistent ids",
        "torch.Size": "tuple subclass of dimensions",
        "torch.device": "device descriptor from a string",
        "torch.dtype": "dtype descriptor",
        "torch.layout": "layout descriptor",
        "torch.memory_format": "memory format descriptor",
        "torch.Tensor": "tensor class for subclass rebuilds",
        "torch.nn.parameter.Parameter": "parameter class",
        "torch.nn.parameter.Buffer": "buffer class",
        "torch.nn.parameter.UninitializedParameter": "lazy parameter class",
        "torch.per_tensor_affine": "quantization scheme constant",
        "torch.per_channel_affine": "quantization scheme constant",
        "torch.contiguous_format": "memory format constant",
        "torch.channels_last": "memory format constant",
        "torch.preserve_format": "memory format constant",
        "torch.strided": "layout constant",
        "torch.sparse_coo": "layout constant",
        "torch.float32": "dtype constant",
        "torch.float16": "dtype constant",
        "torch.bfloat16": "dtype constant",
        "torch.float64": "dtype constant",
        "torch.int64": "dtype constant",
        "torch.int32": "dtype constant",
        "torch.int8": "dtype constant",
        "torch.uint8": "dtype constant",
        "torch.bool": "dtype constant",
        "torch.optim.lr_scheduler.LambdaLR": "scheduler class (state only)",
        **{
            f"torch.{k}Storage": "legacy typed storage type named in persistent ids"
            for k in _TORCH_STORAGES
        },
        **{
            f"torch.cuda.{k}Storage": "CUDA typed storage type named in persistent ids"
            for k in _TORCH_STORAGES
        },
        # --- numpy ------------------------------------------------------------------------
        "numpy._core.multiarray._reconstruct": "allocates an empty ndarray of the subtype",
        "numpy._core.multiarray.scalar": "numpy scalar from dtype and bytes",
        "numpy._core.numeric._frombuffer": "ndarray from a protocol 5 buffer",
        "numpy.ndarray": "array class",
        "numpy.dtype": "dtype from a type code",
        "numpy.ma.core._mareconstruct": "masked array shell",
        "numpy.ma.core.MaskedArray": "masked array class",
        "numpy.random._pickle.__randomstate_ctor": "RandomState from a bit generator name",
        "numpy.random._pickle.__generator_ctor": "Generator from a bit generator",
        "numpy.random._pickle.__bit_generator_ctor": "bit generator from its name",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "SeedSequence state",
        "numpy.random.bit_generator.SeedSequence": "seed sequence class",
        "numpy.random._mt19937.MT19937": "bit generator class",
        "numpy.random._pcg64.PCG64": "bit generator class",
        "numpy.random._pcg64.PCG64DXSM": "bit generator class",
        "numpy.random._philox.Philox": "bit generator class",
        "numpy.random._sfc64.SFC64": "bit generator class",
        "numpy.random.mtrand.RandomState": "legacy random state class",
        **{
            f"numpy.{t}": "numpy scalar type"
            for t in (
                "float64",
                "float32",
                "float16",
                "int64",
                "int32",
                "int16",
                "int8",
                "uint64",
                "uint32",
                "uint16",
                "uint8",
                "bool_",
                "complex64",
                "complex128",
                "str_",
                "bytes_",
                "object_",
                "datetime64",
                "timedelta64",
                "longdouble",
                "intc",
                "uintc",
            )
        },
        # --- scikit-learn / scipy ---------------------------------------------------------
        "sklearn.tree._tree.Tree": "decision tree arrays (Cython class called with sizes)",
        "sklearn._loss._loss.CyHalfBinomialLoss": "loss object, no arguments",
        "scipy.sparse._csr.csr_matrix": "sparse matrix class",
        "scipy.sparse._csc.csc_matrix": "sparse matrix class",
        "scipy.sparse._coo.coo_matrix": "sparse matrix class",
        # --- builtins and data types --------------------------------------------------------
        "builtins.set": "set of data",
        "builtins.frozenset": "frozenset of data",
        "builtins.list": "list of data",
        "builtins.dict": "dict of data",
        "builtins.tuple": "tuple of data",
        "builtins.bytes": "bytes from data",
        "builtins.bytearray": "bytearray from data",
        "builtins.str": "string type",
        "builtins.int": "int type",
        "builtins.float": "float type",
        "builtins.bool": "bool type",
        "builtins.complex": "complex number from two floats",
        "builtins.slice": "slice from three values",
        "builtins.range": "range from integers",
        "builtins.object": "base class named by copyreg._reconstructor",
        "builtins.Ellipsis": "singleton",
        "builtins.NotImplemented": "singleton",
        "copyreg._reconstructor": "protocol 0/1 object rebuild; see INSTANTIATES and CALLS",
        "copyreg.__newobj__": "cls.__new__; the class is classified on its own",
        "copyreg.__newobj_ex__": "cls.__new__ with kwargs; the class is classified",
        "_codecs.encode": "protocol 2 spelling of bytes: encode(str, 'latin1')",
        "collections.OrderedDict": "ordered dict of data (torch state dicts)",
        "collections.defaultdict": "dict with a factory that only runs on missing keys",
        "collections.Counter": "counting dict",
        "collections.deque": "double-ended queue of data",
        "collections.ChainMap": "dict view of data",
        "datetime.datetime": "timestamp from bytes",
        "datetime.date": "date from bytes",
        "datetime.time": "time from bytes",
        "datetime.timedelta": "duration",
        "datetime.timezone": "fixed-offset zone",
        "decimal.Decimal": "decimal from a string",
        "fractions.Fraction": "fraction from a string",
        "uuid.UUID": "uuid from an integer",
        "enum.Enum": "enum base",
        "pathlib.PurePosixPath": "path value; pure paths touch no files",
        "pathlib.PureWindowsPath": "path value; pure paths touch no files",
        "pathlib.PosixPath": "path value; constructing it touches no files",
        "pathlib.WindowsPath": "path value; constructing it touches no files",
        "pathlib.Path": "path value; constructing it touches no files",
        "argparse.Namespace": "attribute bag (fairseq and many checkpoints store args)",
        "re._compile": "compiled regular expression from a pattern string",
        "ipaddress.IPv4Address": "address value",
        "ipaddress.IPv6Address": "address value",
        # --- dill / cloudpickle plain-data helpers --------------------------------------------
        "dill._dill._load_type": "looks a builtin type up by name in dill's own table",
        "dill._dill._eval_repr": "only range/Ellipsis/NotImplemented reprs; the argument "
        "is checked at every call",
        "dill._dill._create_array": "array rebuild; calls f(*args), see CALLS",
        "cloudpickle.cloudpickle._make_empty_cell": "empty closure cell",
        # --- pure builtins, typing and small helpers (issue 11 false positives) --------------
        **{
            f"builtins.{f}": "pure builtin function over data (no callable argument possible)"
            for f in (
                "len",
                "abs",
                "min",
                "max",
                "sum",
                "round",
                "divmod",
                "sorted",
                "any",
                "all",
                "chr",
                "ord",
                "hex",
                "oct",
                "bin",
            )
        },
        "builtins.NoneType": "the type of None",
        "types.NoneType": "the type of None",
        "types.GenericAlias": "PEP 585 alias (list[int]): stores its origin and parameters",
        "functools.partial": "stores a callable and arguments; never calls them itself (see "
        "WRAPS: a load-time call of the partial is followed to its callable)",
        "zoneinfo.ZoneInfo": "time zone from a validated IANA key (tz database files only)",
        "zoneinfo.ZoneInfo._unpickle": "ZoneInfo from a validated key through the zone cache",
        **{
            f"typing.{f}": "typing special form; subscription only records parameters"
            for f in (
                "Any",
                "List",
                "Dict",
                "Set",
                "FrozenSet",
                "Tuple",
                "Type",
                "Union",
                "Optional",
                "Callable",
                "Literal",
                "Sequence",
                "Mapping",
                "MutableMapping",
                "MutableSequence",
                "Iterable",
                "Iterator",
                "Collection",
                "DefaultDict",
                "OrderedDict",
                "Counter",
                "Deque",
                "ClassVar",
                "Final",
                "Annotated",
                "AbstractSet",
            )
        },
        # --- pandas (what DataFrame/Series/Index/Categorical/datetime pickles name) ----------
        **{
            f"pandas.{c}": "pandas container or index class; __setstate__ restores arrays"
            for c in (
                "DataFrame",
                "Series",
                "Index",
                "RangeIndex",
                "MultiIndex",
                "CategoricalIndex",
                "DatetimeIndex",
                "TimedeltaIndex",
                "PeriodIndex",
                "IntervalIndex",
                "Categorical",
            )
        },
        **{
            f"pandas.{c}": "pandas extension dtype: a small value object"
            for c in (
                "CategoricalDtype",
                "DatetimeTZDtype",
                "PeriodDtype",
                "IntervalDtype",
                "SparseDtype",
                "StringDtype",
                "BooleanDtype",
                "Int8Dtype",
                "Int16Dtype",
                "Int32Dtype",
                "Int64Dtype",
                "UInt8Dtype",
                "UInt16Dtype",
                "UInt32Dtype",
                "UInt64Dtype",
                "Float32Dtype",
                "Float64Dtype",
                "ArrowDtype",
            )
        },
        **{
            f"pandas.{c}": "pandas scalar value"
            for c in ("NA", "NaT", "Interval", "Period", "Timestamp", "Timedelta")
        },
        **{
            f"pandas.arrays.{c}": "pandas extension array class; state is arrays and a dtype"
            for c in (
                "ArrowStringArray",
                "ArrowExtensionArray",
                "BooleanArray",
                "DatetimeArray",
                "FloatingArray",
                "IntegerArray",
                "IntervalArray",
                "PeriodArray",
                "SparseArray",
                "TimedeltaArray",
                "StringArray",
                "NumpyExtensionArray",
            )
        },
        **{
            f"pandas._libs.tslibs.offsets.{c}": "date offset value object"
            for c in (
                "Day",
                "Hour",
                "Minute",
                "Second",
                "Milli",
                "Micro",
                "Nano",
                "Week",
                "MonthEnd",
                "MonthBegin",
                "BusinessDay",
                "BusinessMonthEnd",
                "BusinessMonthBegin",
                "QuarterEnd",
                "QuarterBegin",
                "YearEnd",
                "YearBegin",
            )
        },
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked": "Cython unpickle: "
        "NDArrayBacked.__new__(type) then array state; see INSTANTIATES",
        "pandas._libs.interval.__pyx_unpickle_IntervalMixin": "Cython unpickle of interval "
        "bounds; see INSTANTIATES",
        "pandas._libs.internals._unpickle_block": "block from an array, a placement and ndim",
        "pandas._libs.sparse.IntIndex": "sparse index from integer arrays",
        "pandas._libs.sparse.BlockIndex": "sparse index from integer arrays",
        "pandas._libs.tslibs.nattype._nat_unpickle": "returns the NaT singleton",
        "pandas._libs.tslibs.timedeltas._timedelta_unpickle": "Timedelta from an integer",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp": "Timestamp from an integer and "
        "a time zone",
        "pandas.core.indexes.base._new_Index": "cls.__new__(cls, **d); see INSTANTIATES",
        "pandas.core.indexes.datetimes._new_DatetimeIndex": "DatetimeIndex from a dict of "
        "data; see INSTANTIATES",
        "pandas.core.indexes.interval._new_IntervalIndex": "IntervalIndex from a dict of "
        "data; see INSTANTIATES",
        "pandas.core.indexes.timedeltas._new_TimedeltaIndex": "TimedeltaIndex from a dict of "
        "data; see INSTANTIATES",
        "pandas.core.indexes.period._new_PeriodIndex": "PeriodIndex from a dict of data; see "
        "INSTANTIATES",
        "pandas.core.internals.managers.BlockManager": "block manager; state is blocks of arrays",
        "pandas.core.internals.managers.SingleBlockManager": "block manager for a Series",
        # --- pyarrow (pandas' default string storage) ----------------------------------------
        "pyarrow.lib._restore_array": "arrow array from a (type, length, buffers) tuple",
        "pyarrow.lib.type_for_alias": "arrow data type from its name",
        "pyarrow.lib.py_buffer": "arrow buffer over bytes",
    }
)


TYPING_FORMS: Final = frozenset(k for k in ALLOWLIST if k.startswith("typing."))
"""Objects whose subscription (``operator.getitem``) only records its parameters."""


@dataclass(frozen=True, slots=True)
class Calls:
    """An allowlisted helper calls its argument ``func`` with the tuple at ``args``."""

    func: int
    """Position of the argument that is called."""
    args: int | tuple[int, ...] | None
    """Position of the tuple it is called with, or the positions of the arguments it is called
    with (a tuple), or None: arguments the analyser cannot see."""


CALLS: Final = MappingProxyType(
    {
        # ret = func(*args); then ret.as_subclass(new_type) and ret.__setstate__(state).
        "torch._tensor._rebuild_from_type_v2": (Calls(0, 2),),
        # array = f(*args); then array.__setstate__(state).
        "dill._dill._create_array": (Calls(0, 1),),
        # base.__init__(obj, state) unless base is object.
        "copyreg._reconstructor": (Calls(1, None),),
        # numpy >= 2: a class argument is called to build the bit generator.
        "numpy.random._pickle.__bit_generator_ctor": (Calls(0, None),),
        # ctor(name) unless name is already a bit generator instance.
        "numpy.random._pickle.__generator_ctor": (Calls(1, (0,)),),
        "numpy.random._pickle.__randomstate_ctor": (Calls(1, (0,)),),
        # The factory runs on any missing-key lookup.
        "collections.defaultdict": (Calls(0, None),),
    }
)
"""Allowlisted helpers that call one of their arguments at load time."""

INSTANTIATES: Final = MappingProxyType(
    {
        "copyreg._reconstructor": (0,),
        "copyreg.__newobj__": (0,),
        "copyreg.__newobj_ex__": (0,),
        "torch._tensor._rebuild_from_type_v2": (1,),
        "torch._utils._rebuild_wrapper_subclass": (0,),
        "numpy._core.multiarray._reconstruct": (0,),
        "numpy.ma.core._mareconstruct": (0, 1),
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": (0,),
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked": (0,),
        "pandas._libs.interval.__pyx_unpickle_IntervalMixin": (0,),
        "pandas.core.indexes.base._new_Index": (0,),
        "pandas.core.indexes.datetimes._new_DatetimeIndex": (0,),
        "pandas.core.indexes.interval._new_IntervalIndex": (0,),
        "pandas.core.indexes.timedeltas._new_TimedeltaIndex": (0,),
        "pandas.core.indexes.period._new_PeriodIndex": (0,),
    }
)
"""Allowlisted helpers that instantiate a class argument (``cls.__new__``, its state hooks)."""

GIVES_STATE: Final = MappingProxyType(
    {
        "torch._tensor._rebuild_from_type_v2": (3,),
        "torch._utils._rebuild_parameter_with_state": (3,),
        # dill: the array's __setstate__ gets arg 2 and its __dict__ is updated from arg 3.
        "dill._dill._create_array": (2, 3),
    }
)
"""Allowlisted helpers that set attributes on the object they build from a state argument:
that state can plant a method exactly as a BUILD's state can."""

WRAPS: Final = MappingProxyType(
    {
        "functools.partial": 0,
    }
)
"""Allowlisted callables whose result calls the argument at this position when called."""

CONDITIONAL: Final = MappingProxyType(
    {
        "builtins.getattr": "only getattr(<imported name>, '<literal attribute>'), which is "
        "resolved like a dotted global and classified as such (zoneinfo pickles use it)",
        "builtins.type": "only type(<one value>): returns a class, calls nothing",
        "_operator.getitem": "only on a typing form or a subscripted one (typing.List[int])",
    }
)
"""Denylisted or unlisted callables that are safe with the arguments checked at each call."""


def is_allowlisted(dotted: str) -> bool:
    """True when the canonical name ``dotted`` is on the built-in allowlist."""
    return dotted in ALLOWLIST or dotted in TORCH_MODULES or dotted in SKLEARN_ESTIMATORS
