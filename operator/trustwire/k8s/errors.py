"""What a failed API request is: :class:`ApiError`, built from the API's ``Status``.

Its message carries the API's reason, never the request body (which may hold key
material): a message that quotes the ``data`` that was sent is withheld.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: :attr:`ApiError.reason` when no HTTP answer came (the message says why); retried like a 503
UNREACHABLE = "Unreachable"

#: The cause the NamespaceLifecycle admission plugin gives when it refuses a create in a
#: namespace that is being deleted.
NAMESPACE_TERMINATING = "NamespaceTerminating"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, *, verb: str = "", path: str = "",
                 causes: tuple[str, ...] = ()) -> None:
        self.status, self.reason, self.api_message = status, reason, message
        self.verb, self.path = verb, path
        #: ``details.causes[].reason`` of the API's Status
        self.causes = causes
        super().__init__(f"{verb.upper()} {path}: {status} {reason}: {message}".strip())

    @property
    def retryable(self) -> bool:
        return self.status in (409, 429) or self.status >= 500

    @property
    def namespace_terminating(self) -> bool:
        """Refused because the namespace is being deleted: nothing new can be created there."""
        return NAMESPACE_TERMINATING in self.causes



def api_error(status: int, raw: bytes, verb: str, path: str, *, sent: Any = None) -> ApiError:
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    return status_error(status, payload, verb, path, sent=sent)


def status_error(status: int, payload: Any, verb: str, path: str, *, sent: Any = None) -> ApiError:
    """An :class:`ApiError` from a Kubernetes ``Status`` (an error answer's body, or the
    object of a watch's ERROR event); anything else gives no reason and no message. A
    message that quotes the ``data`` of what was ``sent`` (key material) is withheld."""
    payload = payload if isinstance(payload, Mapping) else {}
    details = payload.get("details")
    causes = (details.get("causes") if isinstance(details, Mapping) else None) or []
    message = str(payload.get("message") or "")[:300]
    if _quotes_data(message, sent):
        message = "(message withheld: it quotes the data sent)"
    return ApiError(status, str(payload.get("reason") or "Error"), message, verb=verb, path=path,
                    causes=tuple(str(c.get("reason")) for c in causes if isinstance(c, Mapping)))


#: How many characters of a sent ``data`` value an error message must repeat to quote it.
QUOTED_RUN = 16


def _quotes_data(message: str, sent: Any) -> bool:
    """Whether ``message`` repeats a run of :data:`QUOTED_RUN` characters of a ``data`` or
    ``stringData`` value of the body ``sent`` (a validation error may echo an invalid value,
    and the API's message goes into status and Events, which more people read than Secrets)."""
    if not isinstance(sent, Mapping) or len(message) < QUOTED_RUN:
        return False
    values = [v for key in ("data", "stringData") if isinstance(sent.get(key), Mapping)
              for v in sent[key].values() if isinstance(v, str) and len(v) >= QUOTED_RUN]
    runs = {message[i:i + QUOTED_RUN] for i in range(len(message) - QUOTED_RUN + 1)}
    return any(run in value for value in values for run in runs)

