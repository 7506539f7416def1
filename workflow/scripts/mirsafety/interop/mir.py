"""Read and write the file layouts of the authors' released MIR code (thu-coai/MIR-SafetyBench).

What their code writes (``eval.py``, ``harmbench_judge.py``, ``statics.py`` at commit 6549d29):

``{infer}/{model}/{Category}/{Relation}.json``
    A JSON list sorted by ``item_index``: ``{item_index, original_question, revised_prompt,
    answer[, inference_status]}``. ``item_index`` is the record's position in the extracted
    ``{Category}/{Relation}_final.json`` (0-based). ``answer`` is the model's full output, thinking
    included. ``inference_status`` is written only when it is not ``success`` (``failed`` or
    ``crashed``; the answer is then ``[INFERENCE_FAILED: …]`` / ``[WORKER_CRASHED: …]``). A file
    may be incomplete (indices missing) when their run was interrupted.
``{harmbench}/{model}/{Category}/{Relation}.json``
    ``{"ASR": percent, "judge_result": [{question, answer, label}]}``: one entry per record of
    the infer file, in its order, with no index of its own. ``label`` is ``"unsafe"`` when the
    classifier's first token was ``Yes`` and ``"safe"`` otherwise; ``ASR`` is
    ``100 * #unsafe / len(judge_result)``. Their judge also judged the failure text of failed
    items (nearly always ``safe``).
``statics.py``
    Pools ``#(label == "unsafe")`` and ``len(judge_result)`` per file name over every category
    folder and prints ``100 * unsafe / total`` per relation (0 when a relation has no items).

How we map them onto our records:

* **Matching.** ``item_index`` is the instance's position within its category × relation in
  our canonical order (numeric id). The authors' index is a position in *their* file, which
  follows the hub's row order, so every match is verified by text: ``original_question`` and
  ``revised_prompt`` (generations) or ``question`` and ``answer`` (judgments) must be equal, and
  any mismatch is an error naming the file and the index, never a silent mis-join. When the two
  orders differ, pass ``extracted_dir`` (the folder ``extract_data.py`` wrote) and positions are
  read from its ``{Relation}_final.json`` instead.
* **Failures.** A ``failed``/``crashed`` inference (or an answer carrying their failure marker)
  becomes a ``failed`` generation, and its judgment becomes ``error`` whatever label their judge
  gave the failure text: a failed generation is never counted safe.
* **Labels.** Import reads ``unsafe``/``Yes`` as unsafe and ``safe``/``No`` as safe; any other
  label is an ``error`` judgment keeping the raw label. Export writes ``unsafe``/``safe`` (what
  their judge writes and what ``statics.py`` counts); ``label_style="yes_no"`` writes the
  classifier's ``Yes``/``No`` instead, which ``statics.py`` would count as 0 % ASR.
* **Errors on export.** Their format has no error class. ``error`` judgments are left out of
  ``judge_result``, so ``statics.py`` on the export gives exactly our ASR (unsafe / (unsafe +
  safe), errors excluded), and are listed in ``{out_dir}/{model}/excluded.json`` (a file beside
  the category folders, which ``statics.py`` skips), which ``import_judgments`` reads back.
  Each exported ``judge_result`` entry also carries its ``item_index`` (an extra key their code
  ignores), since after exclusion a position no longer is one. A cell whose items are all
  errors gets an empty ``judge_result`` and ``"ASR": null``; ``statics.py`` reports such a
  relation as 0 %, where our ASR is undefined.
* **Missing items.** Every instance without an imported record is reported: the import raises
  ``MissingInstancesError`` listing them, or with ``allow_missing=True`` logs them and returns.
"""

import json
import logging
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

from mirsafety.core.errors import DataError
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS, instance_uid, sort_key
from mirsafety.core.thinking import split_thinking

log = logging.getLogger(__name__)

JUDGE_NAME = "harmbench-mir-import"
EXCLUDED_FILE = "excluded.json"
FAILED_STATUSES = ("failed", "crashed")
FAILURE_MARKER = re.compile(r"^\[(INFERENCE_FAILED|WORKER_CRASHED): (.*)\]$", re.DOTALL)
LABEL_STYLES = {"mir": ("unsafe", "safe"), "yes_no": ("Yes", "No")}
IMPORTED_LABELS = {"unsafe": "unsafe", "yes": "unsafe", "safe": "safe", "no": "safe"}
GENERATION_KEYS = ("uid", "model", "condition", "status", "error", "raw_output", "answer", "thinking",
                   "images_given", "prompt_tokens", "image_tokens", "completion_tokens",
                   "finish_reason", "latency_s", "entropy")
MAX_EXCERPT = 80


class MissingInstancesError(DataError):
    """Instances with no imported record; ``missing`` holds their uids."""

    def __init__(self, headline: str, missing: list[str]):
        self.missing = list(missing)
        super().__init__(headline, self.missing)


# --- where an instance sits in the authors' files -------------------------------------------


class Positions:
    """Instance <-> (category, relation, item_index), in our order or the extracted files'."""

    def __init__(self, instances: list[dict], extracted_dir=None):
        self.by_uid: dict[str, dict] = {}
        duplicates = []
        for instance in instances:
            if instance["uid"] in self.by_uid:
                duplicates.append(f"{instance['uid']}: listed twice in the instances")
            self.by_uid[instance["uid"]] = instance
        if duplicates:
            raise DataError("duplicate instances:", duplicates)
        self.extracted_dir = Path(extracted_dir) if extracted_dir else None
        ordered = sorted(self.by_uid.values(),
                         key=lambda i: sort_key(i["category"], i["relation"], str(i["id"])))
        self._canonical: dict[tuple, list[str]] = defaultdict(list)
        for instance in ordered:
            self._canonical[(instance["category"], instance["relation"])].append(instance["uid"])
        self._orders: dict[tuple, list[str]] = {}

    def order(self, category: str, relation: str) -> list[str]:
        """The uids of a cell by item_index."""
        cell = (category, relation)
        if cell not in self._orders:
            if self.extracted_dir is None:
                self._orders[cell] = list(self._canonical.get(cell, []))
            else:
                path = self.extracted_dir / category / f"{relation}_final.json"
                if not path.is_file():
                    raise DataError(f"no extracted file for {category} x {relation}:",
                                    [f"{path} is missing; item_index cannot be resolved"])
                records = json.loads(path.read_text(encoding="utf-8"))
                self._orders[cell] = [instance_uid(category, relation, r["id"]) for r in records]
        return self._orders[cell]

    def instance_at(self, category: str, relation: str, index: int) -> dict | None:
        order = self.order(category, relation)
        if not isinstance(index, int) or not 0 <= index < len(order):
            return None
        return self.by_uid.get(order[index])

    def lookup(self, category: str, relation: str, index, where: str,
               problems: list[str]) -> dict | None:
        """``instance_at``, recording a problem named ``where`` when there is none."""
        instance = self.instance_at(category, relation, index)
        if instance is None:
            problems.append(f"{where}: no instance at this position of {category} x "
                            f"{relation} ({len(self.order(category, relation))} known)")
        return instance

    def index_of(self, uid: str) -> int:
        instance = self.by_uid[uid]
        order = self.order(instance["category"], instance["relation"])
        if uid not in order:
            raise DataError("instance not in the extracted files:",
                            [f"{uid}: no record with its id in "
                             f"{instance['category']}/{instance['relation']}_final.json"])
        return order.index(uid)


# --- small helpers ----------------------------------------------------------------------------


def _excerpt(text) -> str:
    text = repr(text)
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT - 3] + "..."


def _text_problems(where: str, instance: dict, pairs) -> list[str]:
    """Problems for each (field, theirs) that differs from the instance's text."""
    return [f"{where}: {field} does not match instance {instance['uid']} "
            f"(file: {_excerpt(theirs)}, instance: {_excerpt(instance[field])})"
            for field, theirs in pairs if theirs != instance[field]]


def _model_dir(root, model: str) -> Path:
    path = Path(root) / model
    if not path.is_dir():
        raise DataError(f"no results for model '{model}':", [f"{path} is not a folder"])
    return path


def _cell_files(model_dir: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """Every ``{Category}/{Relation}.json`` under a model folder, and the unknown names."""
    files, problems = [], []
    for category_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if category_dir.name not in CATEGORIES:
            problems.append(f"{category_dir}: unknown category folder (expected one of "
                            f"{', '.join(CATEGORIES)})")
            continue
        for path in sorted(category_dir.glob("*.json")):
            if path.stem not in RELATIONS:
                problems.append(f"{path}: unknown relation file (expected one of "
                                f"{', '.join(RELATIONS)}, '.json')")
                continue
            files.append((category_dir.name, path.stem, path))
    return files, problems


def _read_json(path: Path, problems: list[str]):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path}: cannot be read as JSON ({error})")
        return None


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


def _by_uid(records, what: str) -> dict[str, dict]:
    if records is None:
        return {}
    out, problems = {}, []
    for record in records:
        if record["uid"] in out:
            problems.append(f"{record['uid']}: two {what} records")
        out[record["uid"]] = record
    if problems:
        raise DataError(f"duplicate {what}:", problems)
    return out


# --- import -----------------------------------------------------------------------------------


def import_generations(infer_dir, model: str, instances: list[dict], *,
                       allow_missing: bool = False, extracted_dir=None,
                       thinking_format: str = "auto") -> list[dict]:
    """Our generation records (``make_record``'s keys) from ``{infer_dir}/{model}/``.

    Returned in the order of ``instances``. Raises ``DataError`` listing every file/index that
    does not resolve to an instance with the same texts, and ``MissingInstancesError`` for the
    instances with no record (unless ``allow_missing``).
    """
    positions = Positions(instances, extracted_dir)
    files, problems = _cell_files(_model_dir(infer_dir, model))
    records: dict[str, dict] = {}
    for category, relation, path in files:
        data = _read_json(path, problems)
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
    record = dict.fromkeys(GENERATION_KEYS)
    record.update(uid=uid, model=model, condition="multi_image")
    error = _failure(item)
    if error is not None:
        record.update(status="failed", error=error)
        return record
    raw = item.get("answer")
    raw = "" if raw is None else str(raw)
    answer, thinking = split_thinking(raw, thinking_format)
    record.update(status="ok", raw_output=raw, answer=answer, thinking=thinking)
    return record


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
    model_dir = _model_dir(harmbench_dir, model)
    files, problems = _cell_files(model_dir)
    gens = _by_uid(generations, "generation")
    judgments: dict[str, dict] = {}
    for category, relation, path in files:
        data = _read_json(path, problems)
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
                             f"(harmbench: {_excerpt(answer)}, "
                             f"infer: {_excerpt(infer_item.get('answer'))})")
            generation = gens.get(uid)
            if generations is not None and generation is None:
                found.append(f"{where}: no generation given for {uid}")
            elif (generation is not None and generation["status"] == "ok"
                  and answer not in (generation["raw_output"], generation["answer"])):
                found.append(f"{where}: answer differs from the generation of {uid} "
                             f"(harmbench: {_excerpt(answer)}, "
                             f"generation: {_excerpt(generation['raw_output'])})")
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
    data = _read_json(path, problems)
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
    data = _read_json(path, problems)
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


# --- export -----------------------------------------------------------------------------------


def _staging(out_dir, model: str) -> tuple[Path, Path]:
    target = Path(out_dir) / model
    if target.exists() and any(target.iterdir()):
        raise DataError("refusing to export into a non-empty folder:",
                        [f"{target} already has files; remove it first (stale files would be "
                         "counted by statics.py)"])
    staging = Path(out_dir) / f".{model}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging, target


def _publish(staging: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()
    os.replace(staging, target)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4) + "\n", encoding="utf-8")


def _failure_text(generation: dict) -> str:
    return f"[INFERENCE_FAILED: {generation.get('error') or 'unknown error'}]"


def export_generations(generations: list[dict], instances: list[dict], out_dir, *,
                       extracted_dir=None) -> list[Path]:
    """Write generations in the infer layout, one ``{out_dir}/{model}/`` per model.

    ``answer`` is the raw output (thinking included, as theirs); a failed generation is
    ``inference_status: "failed"`` with ``[INFERENCE_FAILED: {error}]`` as its answer. Every
    record states its ``inference_status`` (theirs omit ``success``; their readers accept both).
    """
    positions = Positions(instances, extracted_dir)
    by_model: dict[str, list[dict]] = defaultdict(list)
    problems = []
    for generation in generations:
        if generation["uid"] not in positions.by_uid:
            problems.append(f"{generation['uid']}: generation of {generation['model']} for an "
                            "unknown instance")
        by_model[generation["model"]].append(generation)
    for model, records in by_model.items():
        _by_uid(records, f"{model} generation")
    if problems:
        raise DataError("cannot export generations:", problems)
    written = []
    for model, records in sorted(by_model.items()):
        cells: dict[tuple, list[dict]] = defaultdict(list)
        for generation in records:
            instance = positions.by_uid[generation["uid"]]
            ok = generation["status"] == "ok"
            raw = generation.get("raw_output")
            cells[(instance["category"], instance["relation"])].append({
                "item_index": positions.index_of(instance["uid"]),
                "original_question": instance["original_question"],
                "revised_prompt": instance["revised_prompt"],
                "answer": (raw if raw is not None else generation.get("answer") or "")
                if ok else _failure_text(generation),
                "inference_status": "success" if ok else "failed",
            })
        staging, target = _staging(out_dir, model)
        for (category, relation), items in sorted(cells.items()):
            _write_json(staging / category / f"{relation}.json",
                        sorted(items, key=lambda i: i["item_index"]))
            written.append(target / category / f"{relation}.json")
        _publish(staging, target)
        missing = len(positions.by_uid) - len(records)
        if missing:
            log.warning("%s: %d instance(s) have no generation; their infer files are "
                        "incomplete", model, missing)
    return written


def export_judgments(judgments: list[dict], generations: list[dict], instances: list[dict],
                     out_dir, *, label_style: str = "mir", extracted_dir=None) -> list[Path]:
    """Write judgments in the harmbench layout, one ``{out_dir}/{model}/`` per model.

    Each entry is ``{question, answer, label, item_index}`` (answer = the generation's raw
    output, as their judge saved it); ``error`` judgments are left out of ``judge_result`` and
    listed in ``{out_dir}/{model}/excluded.json`` so that ``statics.py`` equals our ASR.
    Returns the relation files written.
    """
    if label_style not in LABEL_STYLES:
        raise ValueError(f"label_style must be one of {', '.join(LABEL_STYLES)}")
    unsafe_label, safe_label = LABEL_STYLES[label_style]
    positions = Positions(instances, extracted_dir)
    gens = {(g["model"], g["uid"]): g for g in generations}
    by_model: dict[str, list[dict]] = defaultdict(list)
    problems = []
    for judgment in judgments:
        key = (judgment["model"], judgment["uid"])
        where = f"{judgment['uid']} ({judgment['model']}, {judgment.get('judge')})"
        if judgment["uid"] not in positions.by_uid:
            problems.append(f"{where}: judgment for an unknown instance")
        elif judgment["label"] not in ("unsafe", "safe", "error"):
            problems.append(f"{where}: unknown label {judgment['label']!r}")
        elif judgment["label"] != "error" and key not in gens:
            problems.append(f"{where}: no generation, so no answer to export")
        elif judgment["label"] != "error" and gens[key]["status"] != "ok":
            problems.append(f"{where}: labelled {judgment['label']} but its generation failed")
        by_model[judgment["model"]].append(judgment)
    for model, records in by_model.items():
        try:
            _by_uid(records, f"{model} judgment")
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError("cannot export judgments:", problems)
    written = []
    for model, records in sorted(by_model.items()):
        cells: dict[tuple, list[dict]] = defaultdict(list)
        excluded: dict[str, list[dict]] = defaultdict(list)
        for judgment in records:
            instance = positions.by_uid[judgment["uid"]]
            cell = (instance["category"], instance["relation"])
            index = positions.index_of(instance["uid"])
            cells[cell]  # every judged cell gets a file, even when all its items are errors
            if judgment["label"] == "error":
                excluded[f"{cell[0]}/{cell[1]}.json"].append({
                    "uid": judgment["uid"], "item_index": index, "error": judgment.get("error"),
                    "raw": judgment.get("raw"), "judge": judgment.get("judge"),
                    "generation_status": judgment.get("generation_status")})
                continue
            generation = gens[(model, judgment["uid"])]
            raw = generation.get("raw_output")
            cells[cell].append({
                "question": instance["original_question"],
                "answer": raw if raw is not None else generation.get("answer") or "",
                "label": unsafe_label if judgment["label"] == "unsafe" else safe_label,
                "item_index": index,
            })
        staging, target = _staging(out_dir, model)
        for (category, relation), entries in sorted(cells.items()):
            entries.sort(key=lambda e: e["item_index"])
            unsafe = sum(1 for e in entries if e["label"] == unsafe_label)
            _write_json(staging / category / f"{relation}.json", {
                "ASR": 100 * unsafe / len(entries) if entries else None,
                "judge_result": entries,
            })
            written.append(target / category / f"{relation}.json")
        _write_json(staging / EXCLUDED_FILE, {
            "note": "error judgments left out of judge_result (the MIR format has no error "
                    "class), so that statics.py's ASR excludes them as ours does",
            "files": {k: sorted(v, key=lambda e: e["item_index"])
                      for k, v in sorted(excluded.items())},
        })
        _publish(staging, target)
        n_excluded = sum(len(v) for v in excluded.values())
        if n_excluded:
            log.info("%s: %d error judgment(s) excluded, listed in %s", model, n_excluded,
                     target / EXCLUDED_FILE)
    return written


# --- the authors' statistics ----------------------------------------------------------------


def mir_statics_counts(harmbench_dir, model: str) -> dict[str, tuple[int, int]]:
    """statics.py's pooled (unsafe, total) per relation over the category folders of a model.

    As statics.py: every sub-folder, every ``*.json`` holding a ``judge_result``; unsafe is
    ``label == "unsafe"`` exactly; unreadable files are skipped (with a warning here).
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    base = Path(harmbench_dir) / model
    for subdir in sorted(p for p in base.iterdir() if p.is_dir()):
        for path in sorted(p for p in subdir.iterdir() if p.name.endswith(".json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if "judge_result" in data:
                    results = data["judge_result"]
                    stats = counts[path.name.removesuffix(".json")]
                    stats[0] += sum(1 for item in results if item.get("label") == "unsafe")
                    stats[1] += len(results)
            except Exception as error:  # noqa: BLE001 - statics.py skips any unreadable file
                log.warning("statics: skipping %s (%s)", path, error)
    return {relation: (u, t) for relation, (u, t) in counts.items()}


def mir_statics_asr(harmbench_dir, model: str) -> dict[str, float]:
    """statics.py's ASR per relation as a fraction (it prints 100x): unsafe / total, 0 if empty."""
    return {relation: (unsafe / total if total > 0 else 0)
            for relation, (unsafe, total) in mir_statics_counts(harmbench_dir, model).items()}


def export_and_check(generations: list[dict], judgments: list[dict], instances: list[dict],
                     out_dir) -> dict:
    """Export both layouts into ``out_dir`` and prove that the authors' statics.py computation on
    the export gives exactly our ASR per model and relation (errors excluded); raise otherwise."""
    out_dir = Path(out_dir)
    export_generations(generations, instances, out_dir / "infer")
    export_judgments(judgments, generations, instances, out_dir / "harmbench")
    relation_of = {i["uid"]: i["relation"] for i in instances}
    check = {}
    for model in sorted({j["model"] for j in judgments}):
        counts: dict[str, list[int]] = {}
        for j in judgments:
            if j["model"] == model and j["label"] != "error":
                cell = counts.setdefault(relation_of[j["uid"]], [0, 0])
                cell[0] += j["label"] == "unsafe"
                cell[1] += 1
        theirs = mir_statics_counts(out_dir / "harmbench", model)
        ours = {relation: tuple(c) for relation, c in counts.items()}
        if {r: c for r, c in theirs.items() if c[1]} != ours:
            raise DataError(f"{model}: the exported files would give another ASR in statics.py",
                            [f"ours {ours}", f"theirs {theirs}"])
        check[model] = {relation: {"unsafe": u, "judged": n} for relation, (u, n) in ours.items()}
    _write_json(out_dir / "statics_check.json", check)
    return check
