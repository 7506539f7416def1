"""A backend for any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, SGLang, ...).

Each Request becomes one POST: an optional system message, then one user message whose content is
the images first (PNG data URLs), then the text, as in the released MIR code. Transient failures
(HTTP 429 and 5xx, timeouts, connection errors, blank or malformed replies) are retried with
exponential backoff and full jitter, honouring ``Retry-After``; any other 4xx fails at once. A
request that still fails becomes a ``failed`` Result with a one-line reason; ``generate`` never
raises for a single item.

The API key is read once from the environment variable named by ``api_key_env`` and only ever
placed in the ``Authorization`` header: it is kept out of ``repr``, log lines, exception messages
and Results. Every text that comes back from the server (a reply's content and finish reason,
an error body) is scrubbed of it (``OpenAIBackend.redact``) before it becomes part of a Result,
so callers that keep Results, like the generation shards and the LLM judge, never hold it.
"""

import base64
import email.utils
import io
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import requests

from mirsafety.models.backend import Backend, Request, Result

log = logging.getLogger(__name__)

#: Characters of an error body kept in a Result's ``error`` (one line, key scrubbed).
EXCERPT_CHARS = 200
#: HTTP statuses retried besides 5xx: rate limiting, and a server-side request timeout.
RETRIED_STATUSES = frozenset({408, 429})


class MissingAPIKey(RuntimeError):
    """The environment variable that should hold the API key is unset or empty."""


class _Transient(Exception):
    """One failed attempt worth retrying; ``cause`` is the short, key-free reason."""

    def __init__(self, cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class _Permanent(Exception):
    """One failed attempt not worth retrying (a 4xx other than 408/429)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (then "...")."""
    text = " ".join(text.split())
    return text[:limit] + "..." if len(text) > limit else text


def png_data_url(image) -> str:
    """``data:image/png;base64,...`` for a PIL image (converted to RGB/RGBA/L first if needed)."""
    if image.mode not in ("RGB", "RGBA", "L", "LA", "1", "P", "I;16", "I"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_messages(request: Request) -> list[dict]:
    """System message (when given), then one user message: images first, then the prompt."""
    content = [{"type": "image_url", "image_url": {"url": png_data_url(im)}}
               for im in request.images]
    content.append({"type": "text", "text": request.prompt})
    messages = []
    if request.system_prompt is not None:
        messages.append({"role": "system", "content": request.system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if
    unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class OpenAIBackend(Backend):
    """Chat completions over HTTP with bounded concurrency and retries.

    ``max_retries`` counts retries after the first attempt (so at most ``max_retries + 1``
    attempts). ``timeout_s`` is the connect and read timeout of one attempt. Decoding settings
    that are None are not sent, so the server's defaults apply. ``sleep`` and ``rng`` (or
    ``jitter_seed``) are injectable so that tests need not wait and get the same delays each run.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 4,
        max_retries: int = 5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 120.0,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        jitter_seed: int | None = None,
    ):
        parsed = urlparse(base_url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as http://host:8000/v1, "
                             f"got {base_url!r}")
        if not model:
            raise ValueError("model (the remote model name) must be given")
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff_initial_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff_initial_s and backoff_max_s must be >= 0")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")

        if api_key_env is None:
            self._key = None
        else:
            key = os.environ.get(api_key_env, "").strip()
            if not key:
                raise MissingAPIKey(
                    f"the environment variable {api_key_env} (named by api_key_env) is not set or "
                    f"is empty: export it with the API key for {base_url}, or set api_key_env to "
                    "null for a keyless local server."
                )
            self._key = key

        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.timeout_s = float(timeout_s)
        self.decoding = {k: v for k, v in (("temperature", temperature), ("top_p", top_p),
                                           ("max_tokens", max_tokens), ("seed", seed))
                         if v is not None}
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random(jitter_seed)
        self._sessions: list[requests.Session] = []  # all, to close
        self._idle: list[requests.Session] = []  # not in use by a worker now
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})")

    # -- plumbing -------------------------------------------------------------------------------

    def _checkout(self) -> requests.Session:
        """An idle Session, or a new one: one per request in flight, reused across calls."""
        with self._sessions_lock:
            if self._idle:
                return self._idle.pop()
        session = requests.Session()
        session.headers["Content-Type"] = "application/json"
        if self._key is not None:
            session.headers["Authorization"] = f"Bearer {self._key}"
        with self._sessions_lock:
            self._sessions.append(session)
        return session

    def _checkin(self, session: requests.Session) -> None:
        with self._sessions_lock:
            self._idle.append(session)

    def generation_config(self) -> dict:
        """What every request carries besides the model and the messages (nothing else is sent)."""
        return dict(self.decoding)

    def redact(self, text: str | None) -> str | None:
        """``text`` with the API key replaced by ``***`` (should a server echo it back)."""
        return text.replace(self._key, "***") if self._key and text else text

    def backoff_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        ``Retry-After`` from the server wins when present (capped at backoff_max_s); otherwise
        full jitter: uniform in [0, min(backoff_max_s, backoff_initial_s * 2**retry)].
        """
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** min(retry, 64)))
        return self._rng.uniform(0.0, ceiling)

    def _attempt(self, payload: dict) -> tuple[dict, str]:
        """One POST; returns (parsed body, content) or raises _Transient / _Permanent."""
        session = self._checkout()
        try:
            response = session.post(self.url, json=payload, timeout=self.timeout_s)
        except requests.exceptions.Timeout:
            raise _Transient("timeout") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader) as error:
            raise _Permanent(f"invalid request ({type(error).__name__})") from None
        except requests.exceptions.RequestException as error:
            raise _Transient(f"connection error ({type(error).__name__})") from None
        finally:
            self._checkin(session)

        status = response.status_code
        if status != 200:
            if status in RETRIED_STATUSES or status >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _Transient(f"HTTP {status}", retry_after)
            detail = excerpt(self.redact(response.text or ""))
            raise _Permanent(f"HTTP {status}" + (f": {detail}" if detail else ""))
        try:
            body = response.json()
        except ValueError:
            raise _Transient("malformed JSON") from None
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Transient("reply without choices[0].message.content") from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise _Transient("reply without choices[0].message.content")
        if not content.strip():
            raise _Transient("blank reply")
        return body, content

    def _one(self, request: Request) -> Result:
        try:
            payload = {"model": self.model, "messages": build_messages(request), **self.decoding}
        except Exception as error:  # a bad image must not sink the shard
            return Result(uid=request.uid, status="failed",
                          error=f"could not encode the request ({type(error).__name__}: "
                                f"{excerpt(self.redact(str(error)))})")
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                body, content = self._attempt(payload)
            except _Permanent as failure:
                log.warning("%s: %s (not retried)", request.uid, failure.cause)
                return Result(uid=request.uid, status="failed",
                              error=f"{failure.cause} (not retried)")
            except _Transient as failure:
                if attempt == attempts:
                    log.warning("%s: %s after %d attempts; giving up", request.uid,
                                failure.cause, attempts)
                    noun = "attempt" if attempts == 1 else "attempts"
                    return Result(uid=request.uid, status="failed",
                                  error=f"{failure.cause} after {attempts} {noun}")
                delay = self.backoff_delay(attempt - 1, failure.retry_after)
                log.info("%s: %s on attempt %d/%d; retrying in %.2f s", request.uid,
                         failure.cause, attempt, attempts, delay)
                self._sleep(delay)
                continue
            except Exception as error:  # anything unforeseen: fail this item, keep the shard
                log.warning("%s: unexpected %s", request.uid, type(error).__name__)
                reason = excerpt(self.redact(str(error)))
                return Result(uid=request.uid, status="failed",
                              error=f"unexpected {type(error).__name__}: {reason}")
            latency = time.perf_counter() - started
            usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
            choice = body["choices"][0]
            finish = choice.get("finish_reason") if isinstance(choice, dict) else None
            return Result(
                uid=request.uid,
                status="ok",
                raw_output=self.redact(content),
                prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
                image_tokens=None,
                completion_tokens=_int_or_none(usage.get("completion_tokens")),
                finish_reason=self.redact(finish) if isinstance(finish, str) else None,
                latency_s=latency,
            )
        raise AssertionError("unreachable")

    # -- Backend ----------------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Result]:
        """One Result per Request, in order; at most ``max_concurrency`` requests in flight."""
        requests = list(requests)
        if not requests:
            return []
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            results = list(pool.map(self._one, requests))
        failed = sum(r.status != "ok" for r in results)
        log.info("%s: %d requests, %d ok, %d failed", self.model, len(results),
                 len(results) - failed, failed)
        return results

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions, self._idle = self._sessions, [], []
        for session in sessions:
            session.close()


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
