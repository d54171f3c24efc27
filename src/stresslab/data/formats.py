"""Readers for the file formats image datasets ship in, each returning numpy arrays.

Every reader validates what it reads and raises :class:`~stresslab.errors.DataError` naming
the file at fault. Images come back as uint8 arrays of shape (N, C, H, W), labels as int64
arrays of shape (N,).

- IDX (MNIST / Fashion-MNIST), raw or gzip: :func:`read_idx`.
- CIFAR python pickles, through a restricted unpickler that can only build builtin
  containers, strings, numbers and numpy arrays: :func:`safe_unpickle`, :func:`read_cifar_batch`,
  :func:`read_cifar_labelled`.
- SVHN MATLAB ``.mat`` files: :func:`read_svhn_mat`.
- STL-10 binary files: :func:`read_stl10_images`, :func:`read_stl10_labels`.
- Single image files (PNG, JPEG, ...) through PIL: :func:`read_image_file`.
"""

from __future__ import annotations

import io
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stresslab.errors import DataError

# IDX type codes (third byte of the magic number) -> numpy big-endian dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_bytes(path: Path) -> bytes:
    """Whole file content; ``.gz`` files are decompressed. A broken gzip stream raises DataError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if path.suffix == ".gz":
        try:
            data = _gunzip(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a complete gzip file ({exc}); download it again") from exc
    return data


def _gunzip(data: bytes) -> bytes:
    """Decompress every gzip member of ``data``.

    ``zlib`` with ``wbits=31`` checks header and CRC itself and runs about 1.7x faster than
    ``gzip.decompress`` (which adds a separate CRC pass); it matters for the 26 MB
    Fashion-MNIST training file.
    """
    if not data:
        raise EOFError("empty file")
    parts: list[bytes] = []
    rest = data
    while rest:
        stream = zlib.decompressobj(wbits=31)
        parts.append(stream.decompress(rest))
        if not stream.eof:
            raise EOFError("compressed stream ends before its end marker (truncated)")
        # Trailing zero padding after the last member is legal in gzip files.
        rest = stream.unused_data.lstrip(b"\x00")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_idx(path: Path, *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), raw or ``.gz``.

    The header is a 4-byte magic number ``0x00 0x00 <type> <ndim>`` followed by ``ndim``
    big-endian int32 sizes; the payload must hold exactly the product of the sizes.

    Args:
        path: the file.
        ndim: the number of dimensions the caller expects (3 for images, 1 for labels);
            a different number raises DataError.

    Returns:
        An array with the file's shape, in native byte order (uint8 for ubyte files).
        The array is writable (it owns a copy of the payload only where needed).
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is truncated: {len(data)} bytes, not even an IDX header")
    zero0, zero1, type_code, dims = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (magic number {data[:4].hex()})")
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimensions, found {dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">i4", count=dims, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {state}: header says shape {shape} ({expected} bytes), file has {len(data)} bytes"
        )
    # bytearray gives a writable buffer without a second copy, so torch.from_numpy is safe.
    array = np.frombuffer(bytearray(data), dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build nothing but plain data.

    CIFAR batches are pickles, and ``pickle.load`` runs whatever callable a file names
    (``os.system`` included). This unpickler resolves only builtin containers, strings,
    numbers and the three numpy callables a pickled ndarray needs.
    """

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            # numpy < 2 and numpy >= 2 spell the array reconstructor differently.
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Protocol-2 pickles written by Python 3 spell a bytes object as
            # _codecs.encode(str, "latin1"): a pure function that returns bytes.
            ("_codecs", "encode"),
        }
        | {
            (module, name)
            for module in ("builtins", "__builtin__")
            for name in (
                "dict",
                "list",
                "tuple",
                "set",
                "frozenset",
                "str",
                "unicode",
                "bytes",
                "bytearray",
                "int",
                "long",
                "float",
                "complex",
                "bool",
            )
        }
    )

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise DataError(
                f"{self._source} refers to {module}.{name}, which a dataset pickle never needs; "
                "refusing to load it (the file may be malicious or not a dataset file)"
            )
        return super().find_class(module, name)


def safe_unpickle(path: Path) -> Any:
    """Load a pickle file with the restricted unpickler (see :class:`_RestrictedUnpickler`).

    Python 2 strings load as ``bytes`` (the CIFAR files' dict keys are ``b"data"`` etc.).
    Anything but plain data, and any malformed stream, raises DataError naming the file.
    """
    try:
        with path.open("rb") as handle:
            return _RestrictedUnpickler(handle, path).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:  # any decoding failure of an untrusted stream means a bad file
        raise DataError(f"{path} is not a valid pickle file ({type(exc).__name__}: {exc})") from exc


def _decode_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path} should hold a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_pickled_dict(path: Path) -> dict[str, Any]:
    """A CIFAR-style pickled dict with its bytes keys decoded to str."""
    return _decode_keys(safe_unpickle(path), path)


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10/100 python batch -> images uint8 (N, 3, 32, 32) and labels int64 (N,).

    The batch holds ``data`` (N, 3072) uint8, each row 1024 red, then green, then blue
    values of a row-major 32x32 image, and a list of labels under ``label_key``
    (``labels`` for CIFAR-10, ``fine_labels`` for CIFAR-100).
    """
    images, labels = read_cifar_labelled(path, (label_key,))
    return images, labels[0]


def read_cifar_labelled(path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One CIFAR python batch -> images uint8 (N, 3, 32, 32) and one int64 (N,) array per key.

    Reads the file once; CIFAR-100 batches hold ``fine_labels`` and ``coarse_labels``
    (its 20 superclasses) side by side. A missing key or a length that differs from the
    images raises DataError naming the file and the key.
    """
    batch = read_pickled_dict(path)
    for key in ("data", *label_keys):
        if key not in batch:
            raise DataError(f"{path} has no {key!r} entry (keys: {', '.join(sorted(batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' should be a uint8 array of shape (N, 3072), found {desc}")
    out = []
    for key in label_keys:
        try:
            labels = np.asarray(batch[key], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: {key!r} is not a list of integers") from exc
        if len(labels) != len(data):
            raise DataError(f"{path}: {len(data)} images but {len(labels)} entries in {key!r}")
        out.append(labels)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), out


def read_name_list(path: Path, key: str) -> list[str]:
    """A list of class names (bytes or str) stored under ``key`` in a pickled meta dict."""
    meta = read_pickled_dict(path)
    if key not in meta:
        raise DataError(f"{path} has no {key!r} entry (keys: {', '.join(sorted(meta))})")
    names = meta[key]
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: {key!r} should be a list of strings")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN cropped-digits ``.mat`` file -> images uint8 (N, 3, 32, 32), labels int64 (N,).

    The file holds ``X`` of shape (32, 32, 3, N) and ``y`` of shape (N, 1) with labels
    1..10, where 10 stands for the digit 0 (mapped to 0 here).
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a broken file
        raise DataError(f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataError(f"{path} has no {key!r} array")
    x, y = mat["X"], mat["y"]
    if x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{path}: 'X' should have shape (H, W, 3, N), found {x.shape}")
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(labels) != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images in 'X' but {len(labels)} labels in 'y'")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise DataError(f"{path}: labels in 'y' should be 0..10, found {labels.min()}..{labels.max()}")
    labels[labels == 10] = 0
    images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))).astype(np.uint8, copy=False)
    return images, labels


_STL10_SIDE = 96
_STL10_BYTES = 3 * _STL10_SIDE * _STL10_SIDE


def read_stl10_images(path: Path) -> np.ndarray:
    """An STL-10 ``*_X.bin`` file -> uint8 (N, 3, 96, 96).

    Each image is 3 x 96 x 96 bytes, channel by channel, each channel stored column-major.
    """
    data = read_bytes(path)
    if len(data) == 0 or len(data) % _STL10_BYTES:
        raise DataError(
            f"{path} has {len(data)} bytes, not a whole number of 96x96x3 images "
            f"({_STL10_BYTES} bytes each); the file is truncated or not STL-10"
        )
    images = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3, _STL10_SIDE, _STL10_SIDE)
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2))


def read_stl10_labels(path: Path, count: int, num_classes: int) -> np.ndarray:
    """An STL-10 ``*_y.bin`` file (one byte per image, 1..num_classes) -> int64 (count,), 0-based."""
    labels = np.frombuffer(read_bytes(path), dtype=np.uint8).astype(np.int64)
    if len(labels) != count:
        raise DataError(f"{path} has {len(labels)} labels for {count} images")
    if count and (labels.min() < 1 or labels.max() > num_classes):
        raise DataError(f"{path}: labels should be 1..{num_classes}, found {labels.min()}..{labels.max()}")
    return labels - 1


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def read_image_file(path: Path, mode: str | None = None) -> Image.Image:
    """Open and fully decode one image, as mode ``mode`` (``"L"`` or ``"RGB"``).

    ``mode=None`` keeps grayscale images grayscale (``"L"``) and makes the rest ``"RGB"``.
    Decoding everything (not just the header) is what catches truncated files. Alpha is
    dropped; 16-bit and float grayscale are scaled to 8 bits. Any failure raises DataError
    naming the file.
    """
    try:
        with Image.open(path) as img:
            img.load()
            source = img.mode
            if source in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # PIL's convert("L") clips wide values; scale by the type's range instead.
                arr = np.asarray(img, dtype=np.float64)
                if source == "F":
                    top = 1.0
                elif source.startswith("I;16") or arr.max(initial=0) > 255:
                    top = 65535.0
                else:
                    top = 255.0
                img8 = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
                return img8 if mode in (None, "L") else img8.convert(mode)
            target = mode or ("L" if source in GRAY_MODES else "RGB")
            # convert() on an image already in the target mode would only copy it.
            return img if source == target else img.convert(target)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
