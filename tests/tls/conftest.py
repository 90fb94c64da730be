"""Fixtures for the TLS tests: certificates generated once per session with ``openssl``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tls.support import Certificates, make_certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Every certificate the tests need, made in a temporary directory."""
    directory: Path = tmp_path_factory.mktemp("certs")
    return make_certificates(directory)
