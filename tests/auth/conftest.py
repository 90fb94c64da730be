"""Fixtures for the auth tests: the TLS tests' certificates (made with ``openssl``)."""

from tests.tls.conftest import certs

__all__ = ["certs"]
