"""The file layouts of the authors' released MIR code (thu-coai/MIR-SafetyBench).

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
import re
from collections import defaultdict
from pathlib import Path

from mirsafety.core.errors import DataError
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS, instance_uid, sort_key

JUDGE_NAME = "harmbench-mir-import"
EXCLUDED_FILE = "excluded.json"
FAILED_STATUSES = ("failed", "crashed")
FAILURE_MARKER = re.compile(r"^\[(INFERENCE_FAILED|WORKER_CRASHED): (.*)\]$", re.DOTALL)
LABEL_STYLES = {"mir": ("unsafe", "safe"), "yes_no": ("Yes", "No")}
IMPORTED_LABELS = {"unsafe": "unsafe", "yes": "unsafe", "safe": "safe", "no": "safe"}
MAX_EXCERPT = 80


class MissingInstancesError(DataError):
    """Instances with no imported record; ``missing`` holds their uids."""

    def __init__(self, headline: str, missing: list[str]):
        self.missing = list(missing)
        super().__init__(headline, self.missing)


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


def excerpt(text) -> str:
    text = repr(text)
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT - 3] + "..."


def model_folder(root, model: str) -> Path:
    path = Path(root) / model
    if not path.is_dir():
        raise DataError(f"no results for model '{model}':", [f"{path} is not a folder"])
    return path


def cell_files(model_dir: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
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


def read_json(path: Path, problems: list[str]):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path}: cannot be read as JSON ({error})")
        return None


def by_uid(records, what: str) -> dict[str, dict]:
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

