# muxserver.auth -- who may talk to a server, checked before any handler or service code runs.
"""Authentication and admission: address rules, Unix peer credentials, shared-secret
challenge-response, and client certificates.

* :mod:`~muxserver.auth.admission` -- ``StreamServer(admit=...)`` checks that refuse a socket
  before a handler exists: :class:`AddressRules` (CIDR allow/deny), :class:`UnixCredentialRules`
  (``SO_PEERCRED``), :func:`admit_all`, :func:`setup_all`.
* :mod:`~muxserver.auth.challenge` -- :class:`ChallengeResponseHandler`, an HMAC challenge-
  response in front of any handler, and :func:`authenticate`, its client.
* :mod:`~muxserver.auth.certificates` -- :class:`CertificateRules` for mutual TLS.

Every refusal ends the same way: a clear reply where the protocol allows one, the connection
closed, one log line with the peer and the reason.
"""

from muxserver.auth.admission import (
    AddressRules,
    AdmitCheck,
    PeerCredentials,
    UnixCredentialRules,
    admit_all,
    peer_credentials,
    setup_all,
)
from muxserver.auth.certificates import CertificateRules
from muxserver.auth.challenge import (
    AuthenticationError,
    ChallengeResponseHandler,
    ChallengeState,
    SecretLookup,
    authenticate,
    compute_response,
)

__all__ = [
    "AddressRules",
    "AdmitCheck",
    "AuthenticationError",
    "CertificateRules",
    "ChallengeResponseHandler",
    "ChallengeState",
    "PeerCredentials",
    "SecretLookup",
    "UnixCredentialRules",
    "admit_all",
    "authenticate",
    "compute_response",
    "peer_credentials",
    "setup_all",
]
