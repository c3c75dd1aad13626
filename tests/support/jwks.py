"""A local stand-in for a hospital's OAuth 2.0 server: a JWKS endpoint and a token minter.

:class:`JwksServer` serves ``/.well-known/jwks.json`` from ``http.server`` in a thread on
127.0.0.1 (a free port), with keys generated at start: RSA 2048 for RS256 and RS384 and EC
P-384 for ES384 (RFC 7518 §3.3, §3.4). :meth:`JwksServer.mint` signs SMART backend-services
style access tokens; the ``*_token`` methods produce the bad tokens a gateway must refuse.

    with JwksServer() as idp:
        settings = Settings(auth_mode="jwt", auth_jwks_url=idp.jwks_url,
                            auth_issuer=idp.issuer, auth_audience=idp.audience)
        token = idp.mint("system/Observation.rs system/Observation.c")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["ALGORITHMS", "AUDIENCE", "ISSUER", "JwksServer"]

#: The issuer and audience the gateway under test is configured with.
ISSUER = "https://idp.hospital.test/oauth2"
AUDIENCE = "https://netliver.hospital.test/fhir"
#: Signature algorithm → key id of the key that signs it.
ALGORITHMS = {"RS256": "rsa-256", "RS384": "rsa-384", "ES384": "ec-384"}
JWKS_PATH = "/.well-known/jwks.json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _public_jwk(key: Any, kid: str, alg: str, with_alg: bool) -> dict[str, Any]:
    algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    if with_alg:
        jwk["alg"] = alg
    return jwk


class JwksServer:
    """JWKS endpoint plus token minting. Start with ``with`` or :meth:`start`/:meth:`stop`."""

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE, *,
                 publish_alg: bool = True) -> None:
        self.issuer = issuer
        self.audience = audience
        #: Whether the published JWKs state their "alg" (RFC 7517 §4.4 makes it optional).
        self.publish_alg = publish_alg
        rsa_256 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_384 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_384 = ec.generate_private_key(ec.SECP384R1())
        #: kid → (private key, algorithm) of every key the server publishes.
        self.keys: dict[str, tuple[Any, str]] = {
            ALGORITHMS["RS256"]: (rsa_256, "RS256"),
            ALGORITHMS["RS384"]: (rsa_384, "RS384"),
            ALGORITHMS["ES384"]: (ec_384, "ES384"),
        }
        #: A key the server never publishes (tokens it signs must be refused).
        self.unpublished_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        #: HTTP status the endpoint answers; set it to 500/503 to play an issuer outage.
        self.status = 200
        #: How many times the JWKS was requested.
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- server ---------------------------------------------------------------------------

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                owner.requests += 1
                body = json.dumps(owner.jwks()).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="jwks-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the JWKS server is not running")
        return int(self._server.server_address[1])

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public_jwk(key, kid, alg, self.publish_alg)
                         for kid, (key, alg) in self.keys.items()]}

    def rotate(self, alg: str = "RS256") -> str:
        """Publish a new key for ``alg`` (key rotation at the issuer); returns its kid."""
        kid = f"{ALGORITHMS[alg]}-{len(self.keys) + 1}"
        key: Any
        if alg.startswith("RS"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP384R1())
        self.keys[kid] = (key, alg)
        return kid

    # -- tokens ---------------------------------------------------------------------------

    def claims(self, scopes: str | list[str], **claims: Any) -> dict[str, Any]:
        """SMART backend-services access-token claims; a claim given as None is left out."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": "ris-integration",
            "client_id": "ris-integration", "iat": now, "exp": now + 300,
            "jti": f"jti-{time.perf_counter_ns()}",
            "scope": scopes,
        }
        base.update(claims)
        return {k: v for k, v in base.items() if v is not None}

    def mint(self, scopes: str | list[str] = "system/*.cruds", *, alg: str | None = None,
             kid: str | None = None, key: Any = None, headers: dict[str, Any] | None = None,
             **claims: Any) -> str:
        """A token signed with the published key for ``alg`` (RS256 by default).

        ``kid`` picks another published key (its own algorithm unless ``alg`` is given);
        ``key`` signs with any private key while the header still names ``kid``.
        """
        if kid is None:
            alg = alg or "RS256"
            kid = ALGORITHMS[alg]
        published_key, published_alg = self.keys.get(kid, (None, None))
        alg = alg or published_alg or "RS256"
        signing_key = key if key is not None else published_key
        if signing_key is None:
            raise KeyError(f"no key {kid!r}: pass key=")
        # a header given as None is left out (e.g. headers={"kid": None}: a token without kid)
        hdr = {k: v for k, v in {"kid": kid, **(headers or {})}.items() if v is not None}
        return jwt.encode(self.claims(scopes, **claims), signing_key, algorithm=alg, headers=hdr)

    def expired_token(self, scopes: str = "system/*.cruds") -> str:
        """Expired ten minutes ago, well beyond any leeway."""
        now = int(time.time())
        return self.mint(scopes, iat=now - 1200, exp=now - 600)

    def wrong_audience_token(self, scopes: str = "system/*.cruds") -> str:
        return self.mint(scopes, aud="https://another-service.hospital.test/fhir")

    def wrong_issuer_token(self, scopes: str = "system/*.cruds") -> str:
        return self.mint(scopes, iss="https://rogue-idp.test/oauth2")

    def unknown_key_token(self, scopes: str = "system/*.cruds", kid: str = "rsa-256") -> str:
        """Signed by a key the server never published, under a published kid by default."""
        return jwt.encode(self.claims(scopes), self.unpublished_key, algorithm="RS256",
                          headers={"kid": kid})

    def alg_none_token(self, scopes: str = "system/*.cruds") -> str:
        """``alg: none`` with an empty signature (RFC 7519 §6 unsecured JWT)."""
        header = {"alg": "none", "typ": "JWT", "kid": ALGORITHMS["RS256"]}
        return f"{_b64json(header)}.{_b64json(self.claims(scopes))}."

    def hs256_public_key_token(self, scopes: str = "system/*.cruds") -> str:
        """HS256 whose HMAC secret is the published RSA public key (the key-confusion attack)."""
        key, _ = self.keys[ALGORITHMS["RS256"]]
        secret = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "JWT", "kid": ALGORITHMS["RS256"]}
        signing_input = f"{_b64json(header)}.{_b64json(self.claims(scopes))}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    def tampered_token(self, scopes: str = "system/Observation.rs",
                       widened: str = "system/*.*") -> str:
        """A valid token whose payload was edited afterwards (scope widened), signature kept."""
        header, _, signature = self.mint(scopes).split(".")
        return f"{header}.{_b64json(self.claims(widened))}.{signature}"

    @staticmethod
    def malformed_tokens() -> list[str]:
        """Strings that are not JWTs at all."""
        return ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9", "...", "eyJ@.eyJ@.sig"]
