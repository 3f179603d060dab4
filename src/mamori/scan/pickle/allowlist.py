"""Globals known to be safe in the way real model files use them, as data with a reason each.

Built from what torch (state dicts and full modules), numpy, scikit-learn, dill and
cloudpickle actually emit (``tests/scan/pickle/test_allowlist.py`` regenerates the list of
globals from the real libraries and checks each is covered). Entries are exact
``module.qualname``; :data:`CLASS_PREFIXES` admits *classes* (a CamelCase last component) under
a package, because those packages' estimator/module classes only take data.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["ALLOWLIST", "CLASS_PREFIXES"]

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
        "torch._utils._rebuild_from_type_v2": "calls its first argument; that global is "
        "classified as called on its own",
        "torch._tensor._rebuild_from_type_v2": "calls its first argument; that global is "
        "classified as called on its own",
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
        "numpy.core.multiarray._reconstruct": "allocates an empty ndarray (numpy < 2)",
        "numpy._core.multiarray._reconstruct": "allocates an empty ndarray (numpy >= 2)",
        "numpy.core.multiarray.scalar": "numpy scalar from dtype and bytes",
        "numpy._core.multiarray.scalar": "numpy scalar from dtype and bytes",
        "numpy.core.numeric._frombuffer": "ndarray from a protocol 5 buffer",
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
        "scipy.sparse.csr.csr_matrix": "sparse matrix class (old path)",
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
        "builtins.xrange": "range under its Python 2 name",
        "builtins.object": "base class named by copyreg._reconstructor",
        "builtins.unicode": "str under its Python 2 name",
        "builtins.long": "int under its Python 2 name",
        "builtins.Ellipsis": "singleton",
        "builtins.NotImplemented": "singleton",
        "copyreg._reconstructor": "protocol 0/1 object rebuild; its class and base are "
        "classified on their own",
        "copyreg.__newobj__": "cls.__new__; the class is classified on its own",
        "copyreg.__newobj_ex__": "cls.__new__ with kwargs; the class is classified",
        "_codecs.encode": "protocol 2 spelling of bytes: encode(str, 'latin1')",
        "codecs.encode": "protocol 2 spelling of bytes: encode(str, 'latin1')",
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
        "dill._dill._create_array": "calls its first argument, which is classified as called "
        "on its own",
        "cloudpickle.cloudpickle._make_empty_cell": "empty closure cell",
    }
)

CLASS_PREFIXES: Final = MappingProxyType(
    {
        "torch.nn.modules.": "nn.Module subclasses only register parameters and submodules",
        "sklearn.": "scikit-learn estimators: constructors take hyper-parameters only",
        "torch.ao.nn.": "quantized module classes",
        "torch.nn.utils.parametrize.": "parametrization containers",
    }
)
"""Packages whose CamelCase classes (not functions) are safe to instantiate and give state."""
