"""The data commands beside a running main job: ask its REST API with the local credential, else open the store.

The job that holds the embedded historian writes ``<data_dir>/api-local.json`` (:mod:`api.local`); while its process
lives, every data command goes through the job's API with that token, so the CLI never fights the job for the
DuckDB lock and needs no token of its own. Without a live credential the command opens the store itself
(:func:`analytics.ask.answer_locally`). Failures are one line: the job's API not answering, an HTTP error with its
status and message, or the store held by some other process.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

from aidc.errors import AidcError
from analytics.ask import Ask, answer_locally
from api.local import LocalCredential, credential_path, read_local_credential

if TYPE_CHECKING:
    from aidc.config import Site

# Statuses whose message is the answer's own error (bad input, too little data, over a stated limit): printed as the
# local path prints it.
ANSWER_ERRORS = (400, 422)  # 422: a stated limit (analytics.limits) or a parameter the route refused


def answer(site: Site, ask: Ask) -> Any:
    """Ask the running job (when one holds this site's data directory), else compute on the store here."""
    cred = read_local_credential(site.data_dir)
    if cred is None:
        return answer_locally(site, ask)
    return JobClient(cred, where=str(credential_path(site.data_dir))).call(ask)


def _message(data: bytes) -> str:
    """The API's error message (``{"error": {"message": ...}}``), or the start of whatever else came back."""
    try:
        body = json.loads(data)
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        text = data.decode("utf-8", "replace").strip().splitlines()
        return text[0][:200] if text else "no body"


class JobClient:
    """HTTP calls to the job's API with its local token (urllib3, as the historian's VictoriaMetrics reader)."""

    def __init__(self, cred: LocalCredential, where: str) -> None:
        self.cred, self.where = cred, where
        self._http = urllib3.PoolManager(retries=False)

    def call(self, ask: Ask) -> Any:
        """The route's JSON answer; AidcError with one line for every failure."""
        url = f"{self.cred.url.rstrip('/')}/api/v1{ask.path}"
        headers = {"Authorization": f"Bearer {self.cred.token}", "Accept": "application/json"}
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in ask.params.items() if v is not None}
        try:
            if ask.method == "GET":
                resp = self._http.request("GET", url, fields=fields, headers=headers, timeout=ask.timeout_s)
            else:
                query = urlencode(fields)
                resp = self._http.request(
                    "POST", f"{url}?{query}" if query else url, json=ask.body, headers=headers, timeout=ask.timeout_s
                )
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise AidcError(
                f"the aidc job (pid {self.cred.pid}, {self.where}) holds the historian but its API at "
                f"{self.cred.url} does not answer ({type(reason).__name__}); is it still starting?"
            ) from None
        if resp.status in ANSWER_ERRORS:
            raise AidcError(_message(resp.data))
        if not 200 <= resp.status < 300:
            raise AidcError(f"{ask.method} {url}: HTTP {resp.status}: {_message(resp.data)}")
        try:
            return json.loads(resp.data)
        except ValueError:
            raise AidcError(f"{ask.method} {url}: HTTP {resp.status} but the body is not JSON") from None
