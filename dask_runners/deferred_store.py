"""tornado's default client TLS context, with the system's certificate store loaded at first use.

tornado gives every TLS stream it accepts its default client context
(``tornado.iostream.SSLIOStream`` takes it when no ``ssl_options`` are
given, and ``tornado.tcpserver.TCPServer`` gives none), although the
accepted socket is wrapped already, with the server's own context, and the
default one is never used for it. Building that context loads the system's
certificate store. A Dask scheduler and every Dask worker accept TLS
connections, so with TLS on each of them pays for the load once, on its
event loop, as its first connection arrives: on a worker that is the
client's fetch of the first result.

:func:`defer_certificate_store` gives tornado's stream a stand-in instead:
a client context that builds tornado's own default context, and so loads
the store, only when a connection of its own is wrapped with it. A process
that never opens a TLS connection with tornado's defaults never loads the
store; one that does gets tornado's context, made by tornado's code.
"""

from __future__ import annotations

import ssl
import threading
from typing import Callable

import tornado.iostream
import tornado.netutil
from distributed import WorkerPlugin


class DeferredStoreContext(ssl.SSLContext):
    """A client context that wraps connections with ``build()``'s context, built at the first wrap.

    Until then it is an unused TLS client context with its defaults:
    ``verify_mode`` is ``CERT_REQUIRED`` and ``check_hostname`` is on, as
    in ``ssl.create_default_context()``, but it trusts no certificate
    authority of its own (``get_ca_certs()`` is empty).

    Parameters
    ----------
    build : callable
        Returns the context to wrap with (tornado's ``_client_ssl_defaults``,
        which builds its context once and keeps it).
    """

    def __new__(cls, build: Callable[[], ssl.SSLContext]):
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, build: Callable[[], ssl.SSLContext]):
        self._build = build
        self._built: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def built(self) -> ssl.SSLContext:
        """The context to wrap with, built the first time it is asked for."""
        with self._lock:
            if self._built is None:
                self._built = self._build()
            return self._built

    def wrap_socket(self, *args, **kwargs):
        return self.built().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args, **kwargs):
        return self.built().wrap_bio(*args, **kwargs)


def defer_certificate_store() -> bool:
    """Give tornado's streams a :class:`DeferredStoreContext` as their default client context.

    Called by a process before it serves TLS (the scheduler rank, a worker
    rank, a nanny's worker process); a second call changes nothing.
    Returns whether tornado's default now defers the load: not when tornado
    does not build its default lazily (``tornado.iostream._client_ssl_defaults``
    is then not a function), nor when something else replaced it.
    """
    default = getattr(tornado.iostream, "_client_ssl_defaults", None)
    if getattr(default, "defers_store", False):
        return True
    if not callable(default) or default is not getattr(tornado.netutil, "_client_ssl_defaults", None):
        return False
    context = DeferredStoreContext(default)

    def deferred_client_ssl_defaults() -> ssl.SSLContext:
        return context

    deferred_client_ssl_defaults.defers_store = True
    tornado.iostream._client_ssl_defaults = deferred_client_ssl_defaults
    return True


class DeferStoreInWorkerProcess(WorkerPlugin):
    """Defers the store in a worker's own process: the one a ``distributed.Nanny`` starts.

    The runner defers it in the ranks' own processes; a nanny's worker
    process is a new interpreter, so the worker does it as it starts, before
    the client or another worker connects to it for data.
    """

    name = "dask-runners-defer-certificate-store"

    def setup(self, worker) -> None:
        defer_certificate_store()
