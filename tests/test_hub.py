"""mirsafety.data.hub.download against a fake hub on 127.0.0.1: real HTTP, no internet, no user cache."""

import hashlib
import json
import logging
import re
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from mirsafety.data.hub import HubUnavailable, download  # noqa: E402
from mirsafety.data.sample import write_sample  # noqa: E402

REPO_ID = "someone/MIR-SafetyBench"
SECRET = "hf_FAKEsecretTOKENforTESTS0123456789"
SPEC = {
    "seed": 1,
    "instances_per_cell": 1,
    "images_per_instance": [2, 2],
    "image_size": [32, 32],
    "keywords": ["a", "b", "c", "d"],
}
TRAIN = "data/train-00000-of-00001.parquet"
NOT_WANTED = ["data/test-00000-of-00001.parquet", "other/x.bin"]
WAYS_FORWARD = ["dataset.name: sample", "dataset.local_path"]


class FakeHub(ThreadingHTTPServer):
    """A stand-in for huggingface.co that implements only the endpoints download() uses.

    GET       /api/datasets/{repo}/revision/{rev}     HfApi.dataset_info
    GET       /api/datasets/{repo}/tree/{rev}         snapshot_download's file listing
    HEAD/GET  /datasets/{repo}/resolve/{rev}/{file}   hf_hub_download: metadata headers, then bytes

    ``rev`` is ``main`` or the one commit ``sha``. Errors carry the hub's ``X-Error-Code`` header,
    which is how huggingface_hub tells gated, missing repo and missing revision apart.
    ``refuse[endpoint] = (status, code, message)`` makes one endpoint (``info``, ``tree``, ``resolve``)
    answer that error. Every request is recorded as ``(method, path, Authorization header)``.
    """

    daemon_threads = True
    ROUTES = {
        "info": re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$"),
        "tree": re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$"),
        "resolve": re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"),
    }

    def __init__(self, repo_id: str, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)
        self.repo_id, self.files = repo_id, files
        self.sha = hashlib.sha1(json.dumps(sorted(files)).encode() + b"".join(files.values())).hexdigest()
        self.refuse: dict[str, tuple] = {}
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, raw_path: str) -> tuple[int, dict, bytes]:
        """(status, headers, body) for one request."""
        for endpoint, route in self.ROUTES.items():
            match = route.match(urlsplit(raw_path).path)
            if match:
                break
        else:
            return self.error(404, "EntryNotFound")
        args = {key: unquote(value) for key, value in match.groupdict().items()}
        if args["repo"] != self.repo_id:
            return self.error(404, "RepoNotFound")
        if args["rev"] not in ("main", self.sha):
            return self.error(404, "RevisionNotFound")
        if endpoint in self.refuse:
            return self.error(*self.refuse[endpoint])
        if endpoint == "info":
            siblings = [{"rfilename": name} for name in self.files]
            return self.json({"id": self.repo_id, "sha": self.sha, "private": False, "siblings": siblings})
        if endpoint == "tree":
            return self.json([{"type": "file", "path": name, "size": len(data), "oid": _blob_id(data)}
                              for name, data in self.files.items()])
        data = self.files.get(args["file"])
        if data is None:
            return self.error(404, "EntryNotFound")
        headers = {"X-Repo-Commit": self.sha, "ETag": f'"{_blob_id(data)}"',
                   "Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        return 200, headers, data if method == "GET" else b""

    def error(self, status: int, code: str | None, message: str = "") -> tuple[int, dict, bytes]:
        body = json.dumps({"error": message or code}).encode()
        headers = {"X-Error-Code": code} if code else {}
        headers.update({"X-Error-Message": message or code, "Content-Type": "application/json",
                        "Content-Length": str(len(body))})
        return status, headers, body

    def json(self, payload) -> tuple[int, dict, bytes]:
        body = json.dumps(payload).encode()
        return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body


class _FakeHubHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._reply()

    def do_HEAD(self):
        self._reply()

    def _reply(self):
        hub = self.server
        hub.requests.append((self.command, unquote(self.path), self.headers.get("Authorization")))
        status, headers, body = hub.answer(self.command, self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(autouse=True)
def hf_env(tmp_path, monkeypatch):
    """Point every huggingface_hub path into tmp_path and start each test online and token-less.

    huggingface_hub reads these variables once, at import, so its constants are patched too.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return home


@pytest.fixture(scope="module")
def snapshot_files(tmp_path_factory) -> dict[str, bytes]:
    """The fake repo: the train split, its card, and files that a train download must skip."""
    parquet = write_sample(SPEC, tmp_path_factory.mktemp("snapshot"))
    files = {TRAIN: parquet.read_bytes(), "README.md": b"---\nlicense: cc-by-4.0\n---\n# fake card\n"}
    files.update({name: b"must not be downloaded " + name.encode() for name in NOT_WANTED})
    return files


@pytest.fixture
def fake_hub(snapshot_files):
    hub = FakeHub(REPO_ID, snapshot_files)
    thread = threading.Thread(target=hub.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()
    thread.join(timeout=5)


def debug_logs(caplog):
    for name in ("", "huggingface_hub", "httpx2", "httpcore", "mirsafety"):
        caplog.set_level(logging.DEBUG, logger=name)


def test_download_fetches_the_split_pinned_to_the_commit(fake_hub, snapshot_files, tmp_path):
    dest = tmp_path / "raw"
    provenance = download(REPO_ID, "main", "train", dest, endpoint=fake_hub.endpoint, timeout=5)

    assert re.fullmatch(r"[0-9a-f]{40}", fake_hub.sha)
    assert provenance == {"repo_id": REPO_ID, "revision": "main", "commit": fake_hub.sha}
    assert json.loads((dest / "source.json").read_text()) == provenance
    assert (dest / TRAIN).read_bytes() == snapshot_files[TRAIN]
    assert (dest / "README.md").read_bytes() == snapshot_files["README.md"]
    for name in NOT_WANTED:
        assert not (dest / name).exists()
        assert not any(path.endswith(name) for _, path, _ in fake_hub.requests)
    # files are fetched at the commit dataset_info resolved, never at the moving branch
    resolves = [path for _, path, _ in fake_hub.requests if "/resolve/" in path]
    assert resolves and all(f"/resolve/{fake_hub.sha}/" in path for path in resolves)
    # no HF_TOKEN here and the user's token file is out of reach: nothing is sent
    assert all(auth is None for _, _, auth in fake_hub.requests)


def test_token_is_sent_to_the_hub_but_written_and_logged_nowhere(fake_hub, tmp_path, monkeypatch,
                                                                 caplog, capfd):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    debug_logs(caplog)
    dest = tmp_path / "raw"
    download(REPO_ID, "main", "train", dest, endpoint=fake_hub.endpoint, timeout=5)

    assert fake_hub.requests
    assert all(auth == f"Bearer {SECRET}" for _, _, auth in fake_hub.requests)
    written = [path for path in dest.rglob("*") if path.is_file()]
    assert dest / "source.json" in written
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert caplog.records
    assert SECRET not in caplog.text
    out, err = capfd.readouterr()
    assert SECRET not in out + err


def test_unreachable_hub_fails_fast_with_the_ways_forward(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(HubUnavailable) as caught:
        download(REPO_ID, "main", "train", tmp_path / "raw", endpoint="http://127.0.0.1:9", timeout=2)
    message = str(caught.value)
    assert "cannot be reached" in message
    for way in WAYS_FORWARD:
        assert way in message
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    assert not (tmp_path / "raw" / "source.json").exists()


def test_offline_mode_fails_before_any_request(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailable) as caught:
        download(REPO_ID, "main", "train", tmp_path / "raw", endpoint=fake_hub.endpoint, timeout=2)
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message
    for way in WAYS_FORWARD:
        assert way in message
    assert fake_hub.requests == []


@pytest.mark.parametrize(
    "endpoint, refusal",
    [
        pytest.param("info", (401, "GatedRepo"), id="info-401-not-logged-in"),
        pytest.param("info", (403, "GatedRepo"), id="info-403-terms-not-accepted"),
        pytest.param("info", (401, None, "Invalid credentials in Authorization header"),
                     id="info-401-bad-token"),
        pytest.param("info", (403, None, "Forbidden"), id="info-403-bare"),
        pytest.param("tree", (403, "GatedRepo"), id="tree-403-gated"),
        # the real hub shows a gated repo's card to anyone and refuses only its files
        pytest.param("resolve", (403, "GatedRepo"), id="resolve-403-gated"),
    ],
)
def test_refused_access_names_the_token_and_the_terms(fake_hub, tmp_path, monkeypatch, endpoint,
                                                      refusal):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    fake_hub.refuse[endpoint] = refusal
    with pytest.raises(HubUnavailable) as caught:
        download(REPO_ID, "main", "train", tmp_path / "raw", endpoint=fake_hub.endpoint, timeout=5)
    message = str(caught.value)
    assert "HF_TOKEN" in message and "accept its terms" in message
    for way in WAYS_FORWARD:
        assert way in message
    assert SECRET not in "".join(traceback.format_exception(caught.value))
    assert not (tmp_path / "raw" / "source.json").exists()


def test_unknown_repo_is_reported(fake_hub, tmp_path):
    with pytest.raises(HubUnavailable) as caught:
        download("nobody/no-such-dataset", "main", "train", tmp_path / "raw",
                 endpoint=fake_hub.endpoint, timeout=5)
    assert "nobody/no-such-dataset" in str(caught.value)
    assert "RepositoryNotFoundError" in str(caught.value)


def test_unknown_revision_is_reported_with_its_status(fake_hub, tmp_path):
    with pytest.raises(HubUnavailable) as caught:
        download(REPO_ID, "v9.9", "train", tmp_path / "raw", endpoint=fake_hub.endpoint, timeout=5)
    message = str(caught.value)
    assert "HTTP 404" in message and "dataset.revision" in message


@pytest.mark.parametrize("branch", [True, False])
def test_a_branch_revision_is_warned_about(fake_hub, tmp_path, caplog, branch):
    revision = "main" if branch else fake_hub.sha
    with caplog.at_level(logging.WARNING, logger="mirsafety.data.hub"):
        download(REPO_ID, revision, "train", tmp_path / "raw", endpoint=fake_hub.endpoint, timeout=5)
    warnings = [r for r in caplog.records if r.name == "mirsafety.data.hub" and r.levelno == logging.WARNING]
    if branch:
        assert len(warnings) == 1
        assert "not a commit sha" in warnings[0].getMessage()
        assert fake_hub.sha in warnings[0].getMessage()
    else:
        assert warnings == []


@pytest.mark.parametrize("endpoint, status", [("info", 500), ("tree", 502), ("info", 429)])
def test_a_hub_failure_says_retry_later_not_check_the_repo(fake_hub, tmp_path, monkeypatch,
                                                           endpoint, status):
    """A server error is the hub's: retry later. huggingface_hub retries the file listing itself
    (its sleeps are skipped here) and then reports it as a cache miss, whose cause is the 5xx."""
    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http.time, "sleep", lambda seconds: None)
    fake_hub.refuse[endpoint] = (status, None, "Internal Error")
    with pytest.raises(HubUnavailable) as caught:
        download(REPO_ID, "main", "train", tmp_path / "raw", endpoint=fake_hub.endpoint, timeout=5)
    message = str(caught.value)
    assert f"HTTP {status}" in message and "Retry later." in message
    assert "check dataset.repo_id" not in message
    for way in WAYS_FORWARD:
        assert way in message
    assert not (tmp_path / "raw" / "source.json").exists()
