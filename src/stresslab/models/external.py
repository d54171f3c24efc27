"""The user's own model: a class named on the command line, wrapped as a :class:`Classifier`.

``load_user_model("path/to/net.py:Net", info, args)`` imports the user's source file (or an
installed ``package.module``) and builds ``Net(**args)``. Running that file's code is the
point: it is the user's own model definition, named explicitly by them, exactly as
``python net.py`` would run it. Weights are loaded elsewhere (never by unpickling).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import Classifier, check_outputs

log = logging.getLogger(__name__)

# Constructor parameters filled from the dataset when the user's class has them and the
# config does not set them.
_FROM_INFO = {
    "num_classes": lambda info: info.num_classes,
    "in_channels": lambda info: info.channels,
    "info": lambda info: info,
}


def _import_file(path: Path, spec: str) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"stresslab_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise ConfigError(f"model source {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(mspec)
    # Registered before running so dataclasses and pickling inside the file find their module;
    # the file's folder is importable while it runs so it can import its sibling files.
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        mspec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"model source {spec!r}: importing {path} failed: {exc!r}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import(spec: str) -> type:
    where, sep, cls_name = spec.rpartition(":")
    if not sep or not where or not cls_name:
        raise ConfigError(
            f"model source {spec!r} must look like 'path/to/file.py:ClassName' or 'pkg.mod:ClassName'"
        )
    path = Path(where)
    if where.endswith(".py") or path.exists():
        if not path.is_file():
            raise ConfigError(f"model source {spec!r}: file {where} does not exist")
        module = _import_file(path, spec)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise ConfigError(f"model source {spec!r}: cannot import module {where!r}: {exc!r}") from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"model source {spec!r}: {where} has no class {cls_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model source {spec!r}: {cls_name} is not a torch.nn.Module subclass")
    return cls


def _last(module: nn.Module, kind: type[nn.Module]) -> tuple[str, nn.Module | None]:
    found: tuple[str, nn.Module | None] = ("", None)
    for name, m in module.named_modules():
        if isinstance(m, kind):
            found = (name, m)
    return found


class UserModel(Classifier):
    """Adapter: Normalize (optional) -> the user's module, with the Classifier interface.

    ``forward`` is the user's own forward on normalized input. ``features()`` is the user's
    ``features`` method when the class defines one (``head`` is then the user's ``head``
    submodule if it has one, else its last ``nn.Linear``); otherwise it is the input of the
    module's last ``nn.Linear`` (last in registration order), captured by a forward hook during
    a full forward pass, and ``head`` is that Linear. At build time a check on two random
    images confirms that ``head(features(x))`` reproduces ``forward(x)``; if it does not (e.g.
    the forward applies something after its last Linear), ``features`` is disabled (set to
    ``None``), a warning is logged, and probes that need embeddings skip them. ``cam_layer`` is
    ``body.<name>`` for the module's own ``cam_layer`` attribute if set, else for its last
    ``nn.Conv2d``.
    """

    def __init__(self, module: nn.Module, info: DatasetInfo, *, normalize: bool = True) -> None:
        super().__init__(info.mean, info.std)
        if not normalize:
            self.normalize = nn.Identity()  # type: ignore[assignment]
        self.body = module
        # ``head`` is a view on a submodule of ``body``, kept out of ``_modules`` so the
        # state dict holds each weight once (under ``body.``).
        del self._modules["head"]
        _, last_linear = _last(module, nn.Linear)
        self._linear = last_linear
        self._own_features = inspect.ismethod(getattr(module, "features", None))
        own_head = getattr(module, "head", None)
        # The user's ``head`` pairs with the user's ``features``; the captured Linear input
        # pairs with that Linear.
        head = own_head if self._own_features and isinstance(own_head, nn.Module) else last_linear
        self._head_ref: tuple[nn.Module, ...] = (head,) if head is not None else ()
        cam = str(getattr(module, "cam_layer", "") or _last(module, nn.Conv2d)[0])
        self.cam_layer = f"body.{cam}" if cam else ""
        if not self._own_features and last_linear is None:
            self._disable_features("it has no `features` method and no nn.Linear layer")

    @property
    def head(self) -> nn.Module:  # type: ignore[override]
        """The layer mapping ``features()`` (N, D) to logits (N, K)."""
        if not self._head_ref:
            raise ConfigError("the user model has no head: add a `head` module or a final nn.Linear")
        return self._head_ref[0]

    def _disable_features(self, why: str) -> None:
        log.warning("user model: embeddings disabled because %s", why)
        self.features = None  # type: ignore[assignment,method-assign]

    def features(self, x: Tensor) -> Tensor:
        """Embedding (N, D) of images (N, C, H, W) in [0, 1] (see the class docstring)."""
        z = self.normalize(x)
        if self._own_features:
            return torch.flatten(self.body.features(z), 1)  # type: ignore[operator]
        captured: list[Tensor] = []
        assert self._linear is not None
        handle = self._linear.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        try:
            self.body(z)
        finally:
            handle.remove()
        if not captured:
            raise ConfigError("the user model's forward never called its last nn.Linear layer")
        return torch.flatten(captured[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, K) of the user's forward for images (N, C, H, W) in [0, 1]."""
        out: Tensor = self.body(self.normalize(x))
        return out

    def check(self, info: DatasetInfo, spec: str) -> None:
        """Run two random images through the model: logits must be (2, K); disable ``features``
        if ``head(features(x))`` does not reproduce the forward."""
        if not check_outputs(self, info, f"model source {spec!r}"):
            self._disable_features("head(features(x)) does not reproduce its forward output")


def load_user_model(spec: str, info: DatasetInfo, args: dict[str, Any], normalize: bool = True) -> Classifier:
    """Build the user's model ``spec`` (``path/to/file.py:ClassName`` or ``pkg.module:ClassName``).

    Imports the user's file (runs its code: it is their model definition, named explicitly on
    the command line or in their config) and calls ``ClassName(**args)``; constructor
    parameters named ``num_classes``, ``in_channels`` or ``info`` that ``args`` leaves unset are
    filled from ``info``. The result takes images (N, C, H, W) in [0, 1]; with ``normalize``
    the dataset's mean/std normalization runs first (set it False when the class normalizes
    itself). See :class:`UserModel` for ``features``, ``head`` and ``cam_layer``. Raises
    :class:`ConfigError` naming ``spec`` when the file or class is missing, the class fails to
    build, or its output is not (N, ``info.num_classes``).
    """
    cls = _import(spec)
    kwargs = dict(args)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    for key, value in _FROM_INFO.items():
        if key in params and key not in kwargs:
            kwargs[key] = value(info)
    try:
        module = cls(**kwargs)
    except Exception as exc:
        raise ConfigError(f"model source {spec!r}: {cls.__name__}(**{kwargs!r}) failed: {exc!r}") from exc
    model = UserModel(module, info, normalize=normalize)
    model.check(info, spec)
    return model
