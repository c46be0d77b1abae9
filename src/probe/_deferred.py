"""Standard-library modules the ``probe`` command imports only when something uses them.

``asyncio`` imports ``ssl``, and pydantic imports ``secrets`` (and through it ``hmac`` and ``_hashlib``);
either loads OpenSSL's libcrypto. That is 4.4 MiB of the agent's resident memory and about 27 M
instructions of every start (docs/performance.md), paid by configs whose checks never speak TLS.

``install()`` puts a stand-in for each module in ``sys.modules`` before anything imports it. ``import ssl``
binds the stand-in; the first attribute read imports the real module, and the stand-in takes on its
namespace, so code holding either sees the same functions and classes from then on. Nothing changes for
code that uses the module, only when it is loaded: a check that speaks TLS loads it on its first run.

One attribute is answered without loading: ``ssl.SSLSocket``, which ``asyncio`` checks on every
``loop.sock_*`` call (``isinstance(sock, ssl.SSLSocket)``). Until ``ssl`` is loaded no object can be an
``SSLSocket``, so the stand-in class answers ``isinstance`` and ``issubclass`` with False, and with the real
class's answer once it is loaded; using it in any other way loads ``ssl``. Subclassing it before ``ssl`` is
loaded is the one thing that does not work: nothing in probe or its libraries does.

Only the command line installs this (``probe._entry``); ``import probe`` changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

# In import order: asyncio.sslproto reads ssl's attributes at import, so asyncio needs both deferred.
DEFERRED = ("ssl", "asyncio.sslproto", "secrets", "hashlib", "hmac")

_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """A module's stand-in in ``sys.modules``: its first missing attribute loads the real module."""

    def __getattr__(self, attr: str) -> Any:
        if attr == "__path__":  # ``from m import x`` asks whether m is a package: none of these is
            raise AttributeError(attr)
        return getattr(load(self), attr)


def load(stand_in: types.ModuleType) -> types.ModuleType:
    """Import the real module behind ``stand_in`` (once) and give the stand-in its namespace."""
    name = stand_in.__name__
    with _lock:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, stand_in)
                raise
            stand_in.__dict__.update(real.__dict__)
            stand_in.__class__ = types.ModuleType  # attribute reads are plain from now on
        return sys.modules[name]


class _UnloadedClass(type):
    """The type of a class stand-in: ``isinstance``/``issubclass`` without loading; anything else loads."""

    _module: str
    _attr: str

    def _real(cls) -> type:
        module = sys.modules.get(cls._module)
        module = load(module) if isinstance(module, _Deferred) else importlib.import_module(cls._module)
        real: type = getattr(module, cls._attr)
        return real

    def _loaded(cls) -> type | None:
        module = sys.modules.get(cls._module)
        return None if module is None or isinstance(module, _Deferred) else getattr(module, cls._attr)

    def __instancecheck__(cls, obj: object) -> bool:
        real = cls._loaded()
        return real is not None and isinstance(obj, real)

    def __subclasscheck__(cls, sub: type) -> bool:
        real = cls._loaded()
        return real is not None and issubclass(sub, real)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, attr: str) -> Any:
        return getattr(cls._real(), attr)


def _class_stand_in(module: str, attr: str) -> type:
    return _UnloadedClass(attr, (), {"_module": module, "_attr": attr, "__module__": module})


# Attributes a stand-in answers without loading its module.
_CLASSES = {"ssl": ("SSLSocket",)}


def install(names: tuple[str, ...] = DEFERRED) -> list[str]:
    """Defer each module of ``names`` not imported yet; returns the ones deferred. Never raises: a module
    that cannot be found is left to the normal import (which reports it where it is used)."""
    deferred = []
    for name in names:
        parent, _, _ = name.rpartition(".")
        if name in sys.modules or (parent and parent in sys.modules):
            continue  # too late to defer: the parent has (or may have) imported it already
        spec = _find_spec(name)
        if spec is None or spec.submodule_search_locations is not None:
            continue  # not found, or a package (its submodules would need deferring too)
        stand_in = _Deferred(name)
        stand_in.__spec__, stand_in.__loader__, stand_in.__file__ = spec, spec.loader, spec.origin
        stand_in.__package__ = parent
        for attr in _CLASSES.get(name, ()):
            setattr(stand_in, attr, _class_stand_in(name, attr))
        sys.modules[name] = stand_in
        deferred.append(name)
    return deferred


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec without importing its package (``find_spec`` of a submodule imports the parent)."""
    try:
        parent, _, _ = name.rpartition(".")
        if not parent:
            return importlib.util.find_spec(name)
        parent_spec = importlib.util.find_spec(parent)
        locations = parent_spec.submodule_search_locations if parent_spec else None
        return importlib.machinery.PathFinder.find_spec(name, locations) if locations else None
    except (ImportError, ValueError):
        return None


def loaded(name: str) -> bool:
    """Whether the real module ``name`` has been imported (not just its stand-in)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, _Deferred)
