"""Per-job TLS: only the processes of this job can join or drive its cluster.

A Dask scheduler on plain TCP accepts any client that can reach it, and a
client can run arbitrary code on the workers, as the job's owner. So by
default the scheduler rank makes a fresh key and a self-signed certificate
for the job, and every process of the job presents that certificate and
trusts only it (mutual TLS). A process without it, including one holding
another job's certificate, fails the handshake.

The credentials reach the job's processes the same way the address does:

* the scheduler file runners write them into the scheduler file, which is
  created owner-only (mode 0600) and removed at the end;
* ``MPIRunner`` broadcasts them; they are never written to a file of ours.
  (distributed's ``Security`` loads in-memory certificates through a
  temporary directory of its own, mode 0700, for the moment it takes.)

:func:`dask_runners.connect` gives a process outside the job (a notebook on
the login node) a client from the scheduler file.

The dashboard is plain HTTP and is not covered; see the security page of the
documentation for binding or tunnelling it.
"""

from __future__ import annotations

import logging
import ssl
from typing import NamedTuple

import dask.config
from distributed import Security

from .certificate import self_signed
from .deferred_store import defer_certificate_store

logger = logging.getLogger(__name__)

SUBJECT = "dask-runners job"


class JobCredentials(NamedTuple):
    """The certificate and key every process of one job presents.

    The certificate is self-signed and is also the only certificate
    authority the job's processes trust.
    """

    certificate: str
    key: str

    @classmethod
    def generate(cls, valid_days: int = 30) -> JobCredentials:
        """Make a new P-256 key and a self-signed certificate (:func:`~dask_runners.certificate.self_signed`)."""
        certificate, key = self_signed(SUBJECT, valid_days)
        return cls(certificate=certificate, key=key)

    def security(self):
        """A ``distributed.Security`` that requires TLS with these credentials."""
        pem = {"cert": self.certificate, "key": self.key}
        return JobSecurity(
            require_encryption=True,
            tls_ca_file=self.certificate,
            **{f"tls_{role}_{part}": value for role in ("client", "scheduler", "worker") for part, value in pem.items()},
        )

    def to_dict(self) -> dict:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict | None) -> JobCredentials | None:
        return None if data is None else cls(**data)


_contexts: dict = {}


class JobSecurity(Security):
    """``distributed.Security`` that builds each TLS context once per process.

    distributed builds a new ``ssl.SSLContext`` for every set of connection
    arguments, and with in-memory certificates each build writes them to a
    temporary directory and loads them back, a dozen times per process. A
    job's credentials do not change, so one context per purpose is enough.
    The cache lives in this module (one per process), not on the object,
    which must stay picklable for nannies.
    """

    def _get_tls_context(self, tls, purpose):
        key = (tuple(sorted(tls.items())), purpose, self.tls_min_version, self.tls_max_version)
        if key not in _contexts:
            context = super()._get_tls_context(tls, purpose)
            if purpose is ssl.Purpose.CLIENT_AUTH:
                # A server context sends TLS 1.3 session tickets after each
                # handshake, for resumptions that Dask's comms never make.
                context.num_tickets = 0
            _contexts[key] = context
        return _contexts[key]

    def build_contexts(self, role: str) -> None:
        """Build now the TLS contexts that ``role`` listens and connects with; they are kept for the process."""
        self.get_listen_args(role)
        self.get_connection_args(role)


class TLSChoice:
    """How the job's connections are secured: decided once per process.

    Attributes
    ----------
    given : distributed.Security or None
        The user's own ``Security``, used as it is on every rank.
    per_job : bool
        Per-job TLS: the scheduler rank makes :class:`JobCredentials` and the
        contact carries them to the other ranks.
    made : JobCredentials or None
        Credentials the scheduler rank made already (``MPIRunner`` makes them
        while MPI initializes); otherwise :meth:`for_scheduler` makes them.
    """

    def __init__(self, given: Security | None = None, per_job: bool = False, made: JobCredentials | None = None):
        self.given = given
        self.per_job = per_job
        self.made = made

    @classmethod
    def decide(cls, security, carries_credentials: bool, made: JobCredentials | None = None) -> TLSChoice:
        """The choice for a runner's ``security`` argument and its transport.

        ``None`` follows the dask config key ``runners.security`` (default
        ``True``); ``True`` asks for per-job TLS, which needs a transport
        that carries credentials (else plain TCP, with the scheduler rank's
        warning); ``False`` is plain TCP; a ``distributed.Security`` is the
        user's own.
        """
        if isinstance(security, Security):
            return cls(given=security)
        if security is None:
            security = dask.config.get("runners.security")
        return cls(per_job=security is True and carries_credentials, made=made)

    def for_scheduler(self) -> tuple[Security | None, JobCredentials | None]:
        """On the scheduler rank: the ``Security`` to serve with, and the credentials to publish."""
        self.prepare_to_serve()
        if self.given is not None or not self.per_job:
            return self.given, None
        credentials = self.made or JobCredentials.generate()
        return credentials.security(), credentials

    def prepare_to_serve(self) -> None:
        """In a process about to accept the job's connections (the scheduler rank's, a worker rank's
        with its worker or nanny): where they are TLS, tornado's unused default client context is
        deferred (:mod:`dask_runners.deferred_store`)."""
        if self.per_job or self.given is not None:
            defer_certificate_store()

    def for_contact(self, contact) -> Security | None:
        """On the other ranks: the ``Security`` to reach the scheduler of ``contact`` with."""
        if self.given is not None:
            return self.given
        if contact.credentials is not None:
            return contact.credentials.security()
        return None


def connection_args(security, role: str) -> dict:
    """The keyword arguments with which ``role`` connects under ``security`` (none without TLS)."""
    return security.get_connection_args(role) if security is not None else {}
