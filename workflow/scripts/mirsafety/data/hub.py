"""Download the real benchmark from the Hugging Face hub, pinned and without leaking the token.

The token is never passed around by this code: ``huggingface_hub`` reads ``HF_TOKEN`` from the
environment itself, so it cannot end up in a log line, an exception message or a provenance file.
"""

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from mirsafety.data.sources import split_parquet_files

log = logging.getLogger(__name__)

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class HubUnavailable(RuntimeError):
    """The hub cannot be used from here; the message names the ways forward."""


def require_token(repo_id: str) -> None:
    """Stop a run that will download ``repo_id`` before any job starts when HF_TOKEN is unset:
    the dataset is gated, and finding that out after the DAG is scheduled wastes a queue slot.
    Only presence is checked; the token's value is never read into a message."""
    if os.environ.get("HF_TOKEN", "").strip():
        return
    raise HubUnavailable(
        f"dataset.name: mir downloads {repo_id} from the Hugging Face hub, which needs a read "
        "token, and HF_TOKEN is not set.\n"
        f"  Accept the dataset's terms at https://huggingface.co/datasets/{repo_id}, create a "
        "read token at https://huggingface.co/settings/tokens, and set it in the environment "
        "Snakemake runs in (`export HF_TOKEN=hf_...`, or your cluster's secret store); never "
        "put it in a config file.\n" + _ways_forward(repo_id)
    )


def _ways_forward(repo_id: str) -> str:
    return (
        "Two ways forward:\n"
        "  1. run on the embedded offline sample: set dataset.name: sample (the default);\n"
        f"  2. download {repo_id} on a machine with hub access (e.g. `hf download {repo_id} "
        "--repo-type dataset --local-dir DIR`, or the authors' extract_data.py) and set "
        "dataset.local_path: DIR."
    )


def _http_error(error: BaseException):
    """The hub's HTTP error behind ``error``, or None. ``snapshot_download`` reports a failed
    file listing as LocalEntryNotFoundError (after looking in its cache), with the HTTP error
    as its cause."""
    from huggingface_hub.errors import HfHubHTTPError

    while error is not None and not isinstance(error, HfHubHTTPError):
        error = error.__cause__
    return error


def _unavailable(error: Exception, repo_id: str, revision: str) -> HubUnavailable:
    """Why the download failed, with the advice that fits: the hub's answer when it gave one
    (refused, not found, failed), else that it cannot be reached."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    http = _http_error(error)
    if http is None:
        return HubUnavailable(
            f"the Hugging Face hub cannot be reached from this machine ({type(error).__name__}), "
            f"so {repo_id} cannot be downloaded.\n" + _ways_forward(repo_id)
        )
    status = getattr(http.response, "status_code", "?")
    if isinstance(http, (GatedRepoError, RepositoryNotFoundError)) or status in (401, 403):
        return HubUnavailable(
            f"the hub refused access to dataset {repo_id} at revision {revision} "
            f"({type(http).__name__}, HTTP {status}). It is probably gated: accept its terms on "
            "the hub page and export HF_TOKEN with a read token.\n" + _ways_forward(repo_id)
        )
    return HubUnavailable(
        f"the hub answered HTTP {status} for dataset {repo_id} at revision {revision}; "
        f"{_advice(status)}\n" + _ways_forward(repo_id)
    )


def _advice(status) -> str:
    """What an HTTP error status asks of the user: a server failure or a rate limit is the
    hub's side and passes, anything else points at what was asked for."""
    if status == 429:
        return "the hub is limiting the rate of requests. Retry later."
    if isinstance(status, int) and status >= 500:
        return ("the hub failed (a server error on its side, not a problem with the repository "
                "or revision asked for). Retry later.")
    return "check dataset.repo_id and dataset.revision."


def split_patterns(repo_files: list[str], split: str) -> list[str]:
    """The repository files of one split (and the dataset card), chosen by the rules
    ``datasets.load_dataset(repo, split=split)`` applies: they are run on an empty copy of the
    repository's file tree, the same function that later reads the download (``sources``)."""
    with tempfile.TemporaryDirectory() as skeleton:
        for name in repo_files:
            (Path(skeleton) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(skeleton) / name).touch()
        files = split_parquet_files(Path(skeleton), split)
        return [path.relative_to(skeleton).as_posix() for path in files] + ["README.md"]


def download(repo_id: str, revision: str, split: str, dest, *, endpoint: str | None = None,
             timeout: float = 10.0) -> dict:
    """Fetch one split of ``repo_id`` at ``revision`` into ``dest``; return its provenance.

    Fails at once (HubUnavailable) when offline or unreachable, instead of hanging in retries.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise HubUnavailable(f"HF_HUB_OFFLINE is set, so {repo_id} cannot be downloaded.\n"
                             + _ways_forward(repo_id))
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi(endpoint=endpoint).dataset_info(repo_id, revision=revision, timeout=timeout,
                                                     files_metadata=False)
        repo_files = [sibling.rfilename for sibling in info.siblings or []]
        if not COMMIT_SHA.match(revision):
            log.warning("dataset.revision '%s' is not a commit sha; it resolved to %s. Pin that sha "
                        "in the config for a reproducible study.", revision, info.sha)
        # a gated repo shows its card and file list to anyone: the refusal comes with the files
        snapshot_download(repo_id, repo_type="dataset", revision=info.sha, endpoint=endpoint,
                          local_dir=dest, allow_patterns=split_patterns(repo_files, split))
    except Exception as error:  # connection errors come from the HTTP client, whichever it is
        raise _unavailable(error, repo_id, revision) from None
    provenance = {"repo_id": repo_id, "revision": revision, "commit": info.sha}
    Path(dest, "source.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    return provenance
