"""A tiny typed registry: the one list of datasets, models, probes, attacks, attribution
methods and corruptions, and the one way to build a part from its settings."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Generic, TypeVar

from stresslab.errors import ConfigError

T = TypeVar("T")

_SETTING_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def closest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` that look most like ``word`` (difflib ratio >= 0.6)."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    near = closest(word, choices)
    return f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""


def signature_settings(obj: Callable[..., Any], bound: int = 0) -> tuple[dict[str, Any], bool]:
    """The keyword settings of ``obj`` (a class's ``__init__`` or a factory function).

    ``bound`` leading positional parameters are supplied by the caller (e.g. a model's
    ``DatasetInfo``) and are not settings. Returns ``({name: default}, takes_any)`` with
    ``inspect.Parameter.empty`` as the default of a required setting, and ``takes_any`` True
    when ``obj`` has ``**kwargs`` (any key is then accepted).
    """
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: accept what it is given
        return {}, True
    rest = params[bound:]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest)
    return {p.name: p.default for p in rest if p.kind in _SETTING_KINDS}, takes_any


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind.

    CLI choices, config validation, docs and contract tests all read ``names()``;
    :meth:`build` is the one way to make a part from a config's settings. ``settings_of``,
    when given, narrows the keywords a config may set to the names it returns for an entry
    (e.g. an attribution method's ``options``; other constructor keywords stay internal).
    """

    def __init__(self, kind: str, settings_of: Callable[[T], Collection[str]] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._settings_of = settings_of

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a name is taken once."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, where: str | None = None) -> T:
        """Return the object registered as ``name``; an unknown name is a :class:`ConfigError`
        naming the closest registered names and all of them (prefixed ``where: ``)."""
        try:
            return self._items[name]
        except KeyError:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}unknown {self.kind} {name!r}{_did_you_mean(str(name), self._items)}; "
                f"registered: {', '.join(self.names())}"
            ) from None

    def settings(self, name: str, bound: int = 0) -> dict[str, Any]:
        """The settings part ``name`` takes, with their defaults (``inspect.Parameter.empty``
        marks a required one); ``bound`` leading positional parameters are left out."""
        obj = self.get(name)
        found, _ = signature_settings(obj, bound)  # type: ignore[arg-type]
        if self._settings_of is not None:
            allowed = self._settings_of(obj)
            found = {k: v for k, v in found.items() if k in allowed}
        return found

    def check(self, name: str, settings: Mapping[str, Any], bound: int = 0, where: str | None = None) -> T:
        """Return part ``name`` after checking ``settings`` against its signature.

        ``bound`` leading positional parameters are the caller's (not settings). Raises
        :class:`ConfigError` naming the registry, the part, the bad key and the closest valid
        keys for an unknown setting, and the missing keys for required settings left out.
        ``where`` (a config path such as ``probes.explain.methods.gradcam``) prefixes the
        message, joined with the bad key.
        """
        obj = self.get(name, where)
        accepted = self.settings(name, bound)
        _, takes_any = signature_settings(obj, bound)  # type: ignore[arg-type]
        part = f"{self.kind} {name!r}"
        unknown = (
            [] if takes_any and self._settings_of is None else [k for k in settings if k not in accepted]
        )
        if unknown:
            key = str(unknown[0])
            head = f"{where}.{key}: " if where else ""
            others = f" (also unknown: {', '.join(map(str, unknown[1:]))})" if len(unknown) > 1 else ""
            raise ConfigError(
                f"{head}unknown setting {key!r} of {part}{_did_you_mean(key, accepted)}{others}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )
        missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in settings]
        if missing:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}{part} needs setting(s) {', '.join(missing)}")
        return obj

    def build(self, name: str, /, *args: Any, where: str | None = None, **settings: Any) -> Any:
        """Build part ``name``: ``obj(*args, **settings)`` after :meth:`check`.

        ``args`` are what the caller supplies positionally (e.g. a model's ``DatasetInfo``).
        A ``TypeError`` or ``ValueError`` the part raises on its values becomes a
        :class:`ConfigError` prefixed with ``where`` (or the registry and part name); a
        ``ConfigError`` it raises gets the ``where`` prefix when it lacks it.
        """
        obj = self.check(name, settings, bound=len(args), where=where)
        prefix = where or f"{self.kind} {name!r}"
        try:
            return obj(*args, **settings)  # type: ignore[operator]
        except ConfigError as e:
            if str(e).startswith(prefix):
                raise
            raise ConfigError(f"{prefix}: {e}") from e
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{prefix}: {e}") from e

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
