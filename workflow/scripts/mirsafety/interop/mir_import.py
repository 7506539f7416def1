"""Import the authors' results: their answers as our generations, their labels as our judgments.

Every match between their files and our instances is checked by text (``mir_layout``), a failed
inference stays ``failed`` and its label ``error``, and every instance without a record is
reported: a partial or mismatched run cannot enter the analysis unnoticed.
"""

import logging
from pathlib import Path

from mirsafety.core.errors import DataError
from mirsafety.interop.mir_layout import (
    EXCLUDED_FILE,
    FAILED_STATUSES,
    FAILURE_MARKER,
    IMPORTED_LABELS,
    JUDGE_NAME,
    MissingInstancesError,
    Positions,
    by_uid,
    cell_files,
    excerpt,
    model_folder,
    read_json,
)
from mirsafety.models.backend import Result
from mirsafety.models.record import make_record

log = logging.getLogger(__name__)


def _text_problems(where: str, instance: dict, pairs) -> list[str]:
    """Problems for each (field, theirs) that differs from the instance's text."""
    return [f"{where}: {field} does not match instance {instance['uid']} "
            f"(file: {excerpt(theirs)}, instance: {excerpt(instance[field])})"
            for field, theirs in pairs if theirs != instance[field]]


def _infer_items(path: Path, data, problems: list[str]) -> list[tuple[int, dict]]:
    """(item_index, record) of an infer file; a file of records without indices uses positions,
    as their resume code does."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        problems.append(f"{path}: expected a JSON list of records")
        return []
    if data and "item_index" not in data[0]:
        return list(enumerate(data))
    return [(r.get("item_index"), r) for r in data]


def _failure(record: dict) -> str | None:
    """Why the authors' inference failed, or None when it succeeded."""
    status = record.get("inference_status") or "success"
    answer = record.get("answer")
    marker = FAILURE_MARKER.match(answer) if isinstance(answer, str) else None
    if status == "success" and marker is None:
        return None
    message = marker[2] if marker else answer
    if status not in ("success", *FAILED_STATUSES):
        return f"unknown inference_status {status!r}: {message}"
    if status == "crashed" or (marker and marker[1] == "WORKER_CRASHED"):
        return f"worker crashed: {message}"
    return message


def _report_missing(what: str, model: str, positions: Positions, found: set,
                    allow_missing: bool) -> None:
    missing = [uid for uid in positions.by_uid if uid not in found]
    if not missing:
        return
    headline = f"{len(missing)} of {len(positions.by_uid)} instance(s) have no {what} for {model}:"
    if not allow_missing:
        raise MissingInstancesError(headline, missing)
    log.warning("%s %s", headline, ", ".join(missing))


def import_generations(infer_dir, model: str, instances: list[dict], *,
                       allow_missing: bool = False, extracted_dir=None,
                       thinking_format: str = "auto") -> list[dict]:
    """Our generation records (``make_record``'s keys) from ``{infer_dir}/{model}/``.

    Returned in the order of ``instances``. Raises ``DataError`` listing every file/index that
    does not resolve to an instance with the same texts, and ``MissingInstancesError`` for the
    instances with no record (unless ``allow_missing``).
    """
    positions = Positions(instances, extracted_dir)
    files, problems = cell_files(model_folder(infer_dir, model))
    records: dict[str, dict] = {}
    for category, relation, path in files:
        data = read_json(path, problems)
        if data is None:
            continue
        for index, item in _infer_items(path, data, problems):
            where = f"{path} item_index {index}"
            instance = positions.lookup(category, relation, index, where, problems)
            if instance is None:
                continue
            found = _text_problems(where, instance, [
                ("original_question", item.get("original_question")),
                ("revised_prompt", item.get("revised_prompt"))])
            if instance["uid"] in records:
                found.append(f"{where}: a second record for {instance['uid']}")
            if found:
                problems += found
                continue
            records[instance["uid"]] = _generation_record(instance["uid"], model, item,
                                                          thinking_format)
    if problems:
        raise DataError(f"{len(problems)} problem(s) importing {infer_dir}/{model}:", problems)
    _report_missing("generation", model, positions, set(records), allow_missing)
    return [records[uid] for uid in positions.by_uid if uid in records]


def _generation_record(uid: str, model: str, item: dict, thinking_format: str) -> dict:
    """Their answer as our generation record (the same builder as a fresh generation)."""
    error = _failure(item)
    if error is not None:
        result = Result(uid, "failed", error=error)
    else:
        raw = item.get("answer")
        result = Result(uid, "ok", raw_output="" if raw is None else str(raw))
    return make_record({"uid": uid}, result, model, thinking_format, images_given=None)


def import_judgments(harmbench_dir, model: str, instances: list[dict], *,
                     generations: list[dict] | None = None, infer_dir=None,
                     allow_missing: bool = False, extracted_dir=None) -> list[dict]:
    """Our judgment records (judge ``harmbench-mir-import``) from ``{harmbench_dir}/{model}/``.

    An entry's item_index is its own ``item_index`` key (our exports), else the item_index of
    the record at the same position of the infer file (when ``infer_dir`` is given; the answers
    must then agree), else its position. ``question`` must equal the instance's
    ``original_question``; with ``generations`` the answer must equal the generation's raw
    output (or its stripped answer). ``excluded.json`` (our exports) restores error judgments.
    """
    positions = Positions(instances, extracted_dir)
    model_dir = model_folder(harmbench_dir, model)
    files, problems = cell_files(model_dir)
    gens = by_uid(generations, "generation")
    judgments: dict[str, dict] = {}
    for category, relation, path in files:
        data = read_json(path, problems)
        if data is None:
            continue
        entries = data.get("judge_result") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            problems.append(f"{path}: expected {{'ASR': ..., 'judge_result': [...]}}")
            continue
        _check_asr(path, data.get("ASR"), entries)
        infer = _matching_infer(infer_dir, model, category, relation, entries, problems)
        for position, entry in enumerate(entries):
            infer_index, infer_item = infer[position] if infer else (position, None)
            index = entry.get("item_index", infer_index)
            where = f"{path} entry {position} (item_index {index})"
            instance = positions.lookup(category, relation, index, where, problems)
            if instance is None:
                continue
            uid = instance["uid"]
            found = _text_problems(where, instance,
                                   [("original_question", entry.get("question"))])
            answer = entry.get("answer")
            if infer_item is not None and answer != infer_item.get("answer"):
                found.append(f"{where}: answer differs from the infer file's record "
                             f"(harmbench: {excerpt(answer)}, "
                             f"infer: {excerpt(infer_item.get('answer'))})")
            generation = gens.get(uid)
            if generations is not None and generation is None:
                found.append(f"{where}: no generation given for {uid}")
            elif (generation is not None and generation["status"] == "ok"
                  and answer not in (generation["raw_output"], generation["answer"])):
                found.append(f"{where}: answer differs from the generation of {uid} "
                             f"(harmbench: {excerpt(answer)}, "
                             f"generation: {excerpt(generation['raw_output'])})")
            if uid in judgments:
                found.append(f"{where}: a second judgment for {uid}")
            if found:
                problems += found
                continue
            failure = _failure(infer_item) if infer_item is not None else _failure(entry)
            if generation is not None and generation["status"] != "ok":
                failure = failure or generation.get("error") or "generation failed"
            judgments[uid] = _judgment_record(uid, model, entry.get("label"), failure)
    _restore_excluded(model_dir, model, positions, judgments, problems)
    if problems:
        raise DataError(f"{len(problems)} problem(s) importing {harmbench_dir}/{model}:",
                        problems)
    _report_missing("judgment", model, positions, set(judgments), allow_missing)
    return [judgments[uid] for uid in positions.by_uid if uid in judgments]


def _check_asr(path: Path, asr, entries: list[dict]) -> None:
    """Warn when the file's ASR field disagrees with its labels (a hand-edited or stale file)."""
    if not entries or not isinstance(asr, int | float):
        return
    unsafe = sum(1 for e in entries if IMPORTED_LABELS.get(str(e.get("label")).lower())
                 == "unsafe")
    fraction = unsafe / len(entries)
    if not (abs(asr - 100 * fraction) < 1e-6 or abs(asr - fraction) < 1e-9):
        log.warning("%s: ASR field %r disagrees with its labels (%d/%d unsafe)", path, asr,
                    unsafe, len(entries))


def _matching_infer(infer_dir, model, category, relation, entries, problems):
    """(item_index, record) per judge_result position from the infer file, or None."""
    if infer_dir is None or all("item_index" in e for e in entries):
        return None
    path = Path(infer_dir) / model / category / f"{relation}.json"
    if not path.is_file():
        problems.append(f"{path}: missing, so the harmbench entries of {category}/{relation} "
                        "cannot be matched to item indices")
        return None
    data = read_json(path, problems)
    items = _infer_items(path, data, problems) if data is not None else []
    if len(items) != len(entries):
        problems.append(f"{path}: {len(items)} record(s) but the harmbench file has "
                        f"{len(entries)}; they cannot be matched by position")
        return None
    return items


def _judgment_record(uid: str, model: str, raw_label, failure: str | None,
                     error: str | None = None) -> dict:
    label = IMPORTED_LABELS.get(raw_label.lower()) if isinstance(raw_label, str) else None
    if failure is not None:
        label, error = "error", f"generation failed: {failure}"
    elif error is not None:
        label = "error"
    elif label is None:
        label, error = "error", f"unrecognised HarmBench label {raw_label!r}"
    return {"uid": uid, "model": model, "judge": JUDGE_NAME, "label": label, "safe_kind": None,
            "score": None, "raw": raw_label, "error": error,
            "generation_status": "failed" if failure is not None else "ok"}


def _restore_excluded(model_dir: Path, model: str, positions: Positions, judgments: dict,
                      problems: list[str]) -> None:
    path = model_dir / EXCLUDED_FILE
    if not path.is_file():
        return
    data = read_json(path, problems)
    if data is None:
        return
    for relative, items in (data.get("files") or {}).items():
        category, _, name = relative.partition("/")
        relation = name.removesuffix(".json")
        for item in items:
            where = f"{path} {relative} item_index {item.get('item_index')}"
            instance = positions.instance_at(category, relation, item.get("item_index"))
            if instance is None or instance["uid"] != item.get("uid"):
                problems.append(f"{where}: lists {item.get('uid')}, which is not the instance "
                                "at that position")
            elif item["uid"] in judgments:
                problems.append(f"{where}: {item['uid']} is both excluded and judged")
            else:
                judgments[item["uid"]] = {
                    **_judgment_record(item["uid"], model, item.get("raw"), None,
                                       item.get("error") or "excluded as error"),
                    "generation_status": item.get("generation_status"),
                }

