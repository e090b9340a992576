"""HTTPS stand-in for Entra ID and the HR connector's ingestion service, on loopback.

Entra: OpenID discovery, the v2 token endpoint (scope) and the v1 endpoint (resource), for the
client-credentials grant with a client secret. Ingestion: `POST /api/signals?jobid=` with the
responses the real service is known to give, plus fault injection. `GET /api/jobs/<job>/log`
returns the per-job log the portal offers as "Download log". Admin endpoints under `/admin/`
let a test or benchmark in another process change faults and read what arrived.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
import select
import socket
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import graph
from .state import TOKEN_EXCHANGE_AUDIENCES, VAULT_RESOURCE, App, EmulatorState

log = logging.getLogger(__name__)

JOB_APP_MISMATCH = "jobId and corresponding appId do not match."
_TENANT = r"(?P<tenant>[A-Za-z0-9.\-_]+)"
_ROUTES = [
    ("GET", re.compile(rf"^/{_TENANT}/v2\.0/\.well-known/openid-configuration$"), "openid_configuration"),
    ("POST", re.compile(rf"^/{_TENANT}/oauth2/v2\.0/token$"), "token_v2"),
    ("POST", re.compile(rf"^/{_TENANT}/oauth2/token$"), "token_v1"),
    ("POST", re.compile(r"^/api/signals$"), "signals"),
    ("GET", re.compile(r"^/api/jobs/(?P<job>[^/]+)/log$"), "job_log"),
    ("GET", re.compile(r"^/msi/token$"), "managed_identity_token"),
    ("GET", re.compile(r"^/secrets/(?P<name>[A-Za-z0-9-]+)(?:/(?P<version>[0-9a-f]*))?/?$"), "key_vault_secret"),
    ("GET", re.compile(r"^/admin/jobs/(?P<job>[^/]+)/uploads$"), "admin_uploads"),
    ("GET", re.compile(r"^/admin/state$"), "admin_state"),
    ("POST", re.compile(r"^/admin/faults$"), "admin_faults"),
    # Microsoft Graph (drive API) and its pre-authenticated downloads: graph.py.
    *[(verb, re.compile(r"^/v1\.0/"), "graph_api") for verb in ("GET", "POST", "PATCH", "PUT", "DELETE")],
    ("GET", re.compile(r"^/graph-download/(?P<token>[A-Za-z0-9_-]+)$"), "graph_download"),
    *[(verb, re.compile(r"^/admin/graph/(?P<action>[a-z-]+)$"), "graph_admin") for verb in ("GET", "POST")],
]


class _HangUpError(Exception):
    """The emulator hangs up without answering (fault injection)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    # -- plumbing -----------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def state(self) -> EmulatorState:
        return self.server.state

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        for verb, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match and verb == method:
                try:
                    getattr(self, name)(**match.groupdict())
                except _HangUpError:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                except (ConnectionError, ssl.SSLError, TimeoutError):
                    self.close_connection = True
                return
        self._send_json(404, {"error": "not_found", "error_description": f"no route for {method} {path}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self, *, bandwidth: int = 0) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if not bandwidth:
            return self.rfile.read(length)
        parts, remaining = [], length
        slice_size = max(1024, bandwidth // 20)
        while remaining:
            part = self.rfile.read(min(slice_size, remaining))
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
            time.sleep(len(part) / bandwidth)
        return b"".join(parts)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, **kwargs: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", **kwargs)

    def _form(self) -> dict[str, str]:
        fields = parse_qs(self._body().decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    def _base_url(self) -> str:
        return self.server.base_url

    # -- Entra --------------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> None:
        base = f"{self._base_url()}/{tenant}"
        self._send_json(
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "EMU",
            },
        )

    def token_v2(self, tenant: str) -> None:
        form = self._form()
        scope = form.get("scope", "")
        audience = scope.split()[0].removesuffix("/.default") if scope else ""
        self._token(tenant, form, audience, v1=False)

    def token_v1(self, tenant: str) -> None:
        form = self._form()
        self._token(tenant, form, form.get("resource", ""), v1=True)

    def _token(self, tenant: str, form: dict[str, str], audience: str, *, v1: bool) -> None:
        self.state.count("token_requests")
        fault = self.state.take_token_fault()
        if fault == "drop":
            self.state.count("token_dropped")
            raise _HangUpError
        if fault is not None:
            self.state.count("token_unavailable")
            body = {"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."}
            return self._send_json(503, body)  # OAuth 2.0's error code for it (RFC 6749, 5.2 / 4.1.2.1)
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(
                400, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."
            )
        app_id = form.get("client_id", "").lower()
        app = self.state.apps.get((tenant.lower(), app_id))
        if app is None:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{app_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant.",
            )
        if "client_assertion" in form:
            if not self._assertion_valid(app, form["client_assertion"], tenant):
                return self._aad_error(
                    401,
                    "invalid_client",
                    700027,
                    "AADSTS700027: The certificate with identifier used to sign the client assertion is not "
                    f"registered on application '{app_id}', or the assertion is invalid.",
                )
        elif app.secret is None or form.get("client_secret") != app.secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                f"request is the client secret value, not the client secret ID, for a secret added to app '{app_id}'.",
            )
        if audience.rstrip("/") not in self.state.token_audiences:
            return self._aad_error(
                400,
                "invalid_resource",
                500011,
                "AADSTS500011: The resource principal was not found in the tenant.",
            )
        token, lifetime = self.state.issue_token(app, audience.rstrip("/"))
        payload: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        if v1:
            payload.update({"expires_on": str(int(time.time()) + lifetime), "resource": audience})
        self._send_json(200, payload, headers={"Cache-Control": "no-store"})

    def _assertion_valid(self, app: App, assertion: str, tenant: str) -> bool:
        """A certificate credential's JWT, signed by the registered certificate, for our token
        endpoint; or a trusted managed identity's token for the exchange audience (federation)."""
        issued = self.state.token_info(assertion)
        if issued is not None:
            return (
                issued.audience in TOKEN_EXCHANGE_AUDIENCES
                and issued.app_id in self.state.federated.get(app.app_id, set())
                and issued.tenant_id == tenant.lower()
            )
        if app.certificate_pem is None:
            return False
        import jwt  # PyJWT comes with msal
        from cryptography import x509

        public_key = x509.load_pem_x509_certificate(app.certificate_pem).public_key()
        try:
            claims = jwt.decode(
                assertion,
                public_key,  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self._base_url()}/{tenant}/oauth2/v2.0/token",
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims["iss"].lower() == claims["sub"].lower() == app.app_id)

    def _aad_error(self, status: int, error: str, code: int, description: str) -> None:
        self._send_json(
            status,
            {
                "error": error,
                "error_description": description,
                "error_codes": [code],
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            },
        )

    # -- managed identity (App Service protocol) and Key Vault -----------------------------
    def managed_identity_token(self) -> None:
        state = self.state
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if self.headers.get("X-IDENTITY-HEADER") != state.identity_header:
            return self._send_json(401, {"error": "unauthorized", "error_description": "bad X-IDENTITY-HEADER"})
        client_id = (query.get("client_id") or next(iter(state.managed_identities), "")).lower()
        tenant = state.managed_identities.get(client_id)
        resource = query.get("resource", "").rstrip("/")
        if tenant is None:
            return self._send_json(400, {"error": "invalid_request", "error_description": "no such identity"})
        if resource not in state.token_audiences:
            return self._send_json(400, {"error": "invalid_resource", "error_description": "AADSTS500011"})
        token, lifetime = state.issue_token(App(tenant, client_id), resource)
        self._send_json(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            },
        )

    def key_vault_secret(self, name: str, version: str | None) -> None:
        state = self.state
        state.count("vault_requests")
        auth = self.headers.get("Authorization", "")
        info = state.token_info(auth[7:]) if auth.startswith("Bearer ") else None
        if info is None or info.audience != VAULT_RESOURCE:
            tenant = next(iter(state.managed_identities.values()), "common")
            challenge = f'Bearer authorization="{self._base_url()}/{tenant}", resource="{VAULT_RESOURCE}"'
            return self._send_json(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                headers={"WWW-Authenticate": challenge},
            )
        if info.app_id not in state.vault_readers:
            return self._send_json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Caller is not authorized to perform action on resource (get secret).",
                    }
                },
            )
        with state.lock:
            versions = list(state.vault_secrets.get(name, []))
        match = [v for v in versions if v[0] == version] if version else versions[-1:]
        if not match:
            return self._send_json(
                404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found."}}
            )
        ver, value = match[-1]
        state.count("vault_secret_reads")
        self._send_json(
            200, {"value": value, "id": f"{self._base_url()}/secrets/{name}/{ver}", "attributes": {"enabled": True}}
        )

    # -- ingestion ----------------------------------------------------------------------
    def signals(self) -> None:
        state = self.state
        faults = state.faults
        body = self._body(bandwidth=faults.bandwidth_bytes_per_s)
        state.count("signal_requests")
        hold = state.take_hold()
        if hold is not None:
            hold.wait_released()
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        roll = state.roll()
        if roll < faults.rate_drop:
            state.count("dropped")
            raise _HangUpError
        if roll < faults.rate_drop + faults.rate_429:
            state.count("throttled")
            return self._send_json(
                429, {"error": "Too many requests"}, headers={"Retry-After": str(faults.retry_after_seconds)}
            )
        if roll < faults.rate_drop + faults.rate_429 + faults.rate_503:
            state.count("unavailable")
            return self._send(503, b"Service Unavailable", "text/plain")

        auth = self.headers.get("Authorization", "")
        info = state.token_info(auth[7:]) if auth.startswith("Bearer ") else None
        if info is None or info.audience not in state.resources:
            state.count("unauthorized")
            return self._send_json(
                401,
                {"error": "invalid_token", "message": "The access token is missing, expired or not for this service."},
            )
        job = parse_qs(urlsplit(self.path).query).get("jobid", [""])[0].lower()
        if not job or state.jobs.get(job) != info.app_id:
            state.count("forbidden")
            return self._send(403, JOB_APP_MISMATCH.encode(), "text/plain; charset=utf-8", reason=JOB_APP_MISMATCH)
        part = _file_part(self.headers.get("Content-Type", ""), body)
        if part is None:
            state.count("bad_request")
            return self._send_json(400, {"error": "BadRequest", "message": "The request has no 'file' part."})
        file_name, content = part
        try:
            header, rows = _parse_csv(content)
        except ValueError:
            state.count("server_error")
            return self._send(500, b"", "text/plain")
        if _client_gone(self.connection):
            # The caller died while the request was in flight: nothing is saved.
            state.count("abandoned")
            self.close_connection = True
            return None
        # Drawn from the same roll, after every fault above, so seeded runs without it are unchanged.
        lost = roll < faults.rate_drop + faults.rate_429 + faults.rate_503 + faults.rate_lost_response
        upload = state.record_upload(job, header, rows, file_name, response_lost=lost)
        state.count("accepted")
        if lost:
            state.count("response_lost")
            raise _HangUpError
        self._send_json(200, {"jobId": job, "uploadId": upload.upload_id, "recordsReceived": upload.record_count})
        upload.answered_at = time.monotonic()  # evidence for a fault campaign: the answer left whole

    def job_log(self, job: str) -> None:
        with self.state.lock:
            entries = list(self.state.log.get(job.lower(), []))
        self._send_json(200, entries)

    # -- Microsoft Graph ----------------------------------------------------------------
    def graph_api(self) -> None:
        graph.GraphApi(self, self.state.graph).serve(self.command)

    def graph_download(self, token: str) -> None:
        graph.serve_download(self, token)

    def graph_admin(self, action: str) -> None:
        graph.serve_admin(self, self.command, action)

    # -- admin --------------------------------------------------------------------------
    def admin_uploads(self, job: str) -> None:
        with self.state.lock:
            uploads = [u.__dict__ for u in self.state.uploads.get(job.lower(), [])]
        self._send_json(200, uploads)

    def admin_state(self) -> None:
        with self.state.lock:
            payload = {"counters": dict(self.state.counters), "faults": self.state.faults.to_dict()}
        self._send_json(200, payload)

    def admin_faults(self) -> None:
        try:
            values = json.loads(self._body() or b"{}")
            faults = self.state.set_faults(**values)
        except (ValueError, TypeError) as exc:
            return self._send_json(400, {"error": str(exc)})
        self._send_json(200, faults.to_dict())


def _client_gone(connection: socket.socket) -> bool:
    """A client waiting for our answer sends nothing; a socket at end-of-file means it hung up."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    timeout = connection.gettimeout()
    connection.setblocking(False)
    try:
        return connection.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # TLS housekeeping, no application data: still there
    except OSError:
        return True
    finally:
        connection.settimeout(timeout)


def _file_part(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or not match:
        return None
    delimiter = b"--" + match.group(1).encode()
    for raw in body.split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        head, _, content = raw.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            (line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition")),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name and name.group(1) == "file":
            filename = re.search(r'filename="([^"]*)"', disposition)
            return (filename.group(1) if filename else ""), content.removesuffix(b"\r\n")
    return None


def _parse_csv(content: bytes) -> tuple[list[str], list[list[str]]]:
    """The service's own check: every row as wide as the header, or the call fails with a 500."""
    text = content.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ValueError("no header")
    rows = list(reader)
    if any(len(row) != len(header) for row in rows):
        raise ValueError("field count differs from the header's")
    return header, rows


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: EmulatorState, ssl_context: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.state = state
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        host, port = self.server_address[:2]
        self.base_url = f"https://{host!s}:{port}"


class Emulator:
    """Runs the emulator in a background thread: `with Emulator(...) as emu: emu.url`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state: EmulatorState | None = None,
        ca_path: str | Path | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        import trustme

        self.state = state or EmulatorState()
        if data_dir is not None:
            self.state.data_dir = Path(data_dir)
            self.state.data_dir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="HR connector emulator test CA")
        cert = self._ca.issue_cert(host, "localhost", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert.configure_cert(context)
        self.ca_path = Path(ca_path) if ca_path else None
        if self.ca_path is not None:
            self.ca_path.parent.mkdir(parents=True, exist_ok=True)
            self._ca.cert_pem.write_to_path(str(self.ca_path))
        self.httpd = EmulatorHTTPServer((host, port), self.state, context)
        self.url = self.httpd.base_url
        self._thread: threading.Thread | None = None

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hr-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["JOB_APP_MISMATCH", "Emulator", "EmulatorState", "HTTPStatus"]
