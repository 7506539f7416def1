"""Stage 6, multi-image reasoning capability, from two sources that are never mixed.

* **measured**: a model answers multiple-choice multi-image items (the embedded procedural set
  of ``item_set.py``, or MuirBench read from its hub parquet) through the same backends and
  resumable loop as the safety generations; answers are extracted strictly and scored with a
  Wilson 95% interval. Capability name ``measured:<benchmark>``.
* **published**: scores printed by papers and model cards (``published_reasoning_scores.csv``),
  mapped to registry names by an explicit alias file and reduced to ONE source per benchmark
  column by the rule in ``published_sources.yaml``. Capability name ``published:<column>``.

``capability_table`` puts both in one long table for the analysis; every row keeps its source.
"""

import logging
import math
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from mirsafety.core.intervals import wilson
from mirsafety.core.records import read_jsonl, sha256_file, write_json, write_jsonl
from mirsafety.core.thinking import split_thinking
from mirsafety.reasoning.item_set import LETTERS, measured_capability, read_items

log = logging.getLogger(__name__)

MEASURED_SOURCE = "measured by this workflow"
PUBLISHED_COLUMNS = ["model", "benchmark", "score", "source", "note"]
TABLE_COLUMNS = ["model", "capability", "score", "ci_low", "ci_high", "n_items", "source"]


# --- prompt -----------------------------------------------------------------------------------

def option_letters(options: list) -> str:
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"{len(options)} options; 2 to {len(LETTERS)} are supported")
    return LETTERS[: len(options)]


def build_prompt(item: dict) -> str:
    """The question, one ``X. option`` line per option, and the answer instruction.

    The images are not referenced in the text: they come first in the request, in item order.
    """
    letters = option_letters(item["options"])
    lines = [item["question"].strip(), ""]
    lines += [f"{letter}. {option}" for letter, option in zip(letters, item["options"],
                                                               strict=True)]
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    lines += ["", f"Answer with the letter of the correct option ({listed}) only."]
    return "\n".join(lines)


def as_instance(item: dict) -> dict:
    """An item in the shape ``generate.run_shard`` takes (uid, revised_prompt, images)."""
    return {"uid": item["id"], "revised_prompt": build_prompt(item), "images": item["images"]}


# --- answer extraction ------------------------------------------------------------------------

_MARKUP = re.compile(r"[*_`#]+")
# The whole reply is one letter: "B", "(B)", "[b]", "B.", "B)", "Option B", "Answer: B".
_WHOLE = re.compile(r"(?i:(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)\s*"
                    r"(?:is\s*)?[:\-=]?\s*)?[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:!)]?")
# A leading letter with a delimiter, followed by text: "B. Image 2", "(B) Image 2", "B: two".
_LEADING = re.compile(r"[(\[]?([A-Z])(?:[)\]]\s*[.:]?|[.:])(?=\s|$)")
# Letters declared as the answer anywhere in the reply (upper-case letters only, so that the
# article "a" never counts): "the answer is B", "Answer: (B)", "correct option is B",
# "option B is correct", "B is the answer".
_DECLARED = [
    re.compile(r"(?i:answer)\s*(?i:is|would\s+be|should\s+be|will\s+be)?\s*[:\-=]?\s*"
               r"(?i:option\s+|choice\s+)?[(\[]?([A-Z])(?![A-Za-z0-9])"),
    re.compile(r"(?i:correct|right|best)\s+(?i:option|choice|letter)\s*(?i:is)?\s*[:\-=]?\s*"
               r"[(\[]?([A-Z])(?![A-Za-z0-9])"),
    re.compile(r"(?<![A-Za-z0-9])(?i:option\s+|choice\s+)?[(\[]?([A-Z])[)\]]?\s+(?i:is)\s+"
               r"(?i:the\s+)?(?i:correct|right|answer)"),
]
_PARENTHESISED = re.compile(r"\(([A-Z])\)")


def extract_choice(text: str | None, letters: str = "ABCD", thinking: str = "auto") -> str | None:
    """The option letter a reply gives, or None when it gives none, or several, or one that is
    not among ``letters``.

    Thinking is stripped first (``thinking.split_thinking`` with the model's format). Then, in
    order: (1) the whole reply is one letter ("B", "(B)", "B.", "Answer: B"), any case;
    (2) otherwise the reply's leading letter with a delimiter ("B. Image 2", "(B) two") and
    every letter declared as the answer anywhere ("The answer is B", "Answer: (B)", "the correct
    option is B", "B is correct") are collected, upper-case only; if there are none, letters in
    parentheses "(B)" anywhere are collected. Exactly one distinct letter must result. No
    guessing, no matching of option texts, no "last letter wins".
    """
    if text is None:
        return None
    answer, _ = split_thinking(text, thinking)
    reply = " ".join(_MARKUP.sub("", answer).split())
    whole = _WHOLE.fullmatch(reply)
    if whole:
        letter = whole[1].upper()
        return letter if letter in letters else None
    found = []
    leading = _LEADING.match(reply)
    if leading:
        found.append(leading[1])
    for pattern in _DECLARED:
        found += pattern.findall(reply)
    if not found:
        found = _PARENTHESISED.findall(reply)
    distinct = set(found)
    if len(distinct) != 1:
        return None
    letter = distinct.pop()
    return letter if letter in letters else None


# --- scoring ----------------------------------------------------------------------------------

def _field(result, name):
    return result.get(name) if isinstance(result, dict) else getattr(result, name, None)


def score_results(results, items: list[dict], thinking: str = "auto") -> list[dict]:
    """One scored record per item, in item order: uid, benchmark, task, status, error,
    raw_output, extracted (letter or None), gold, correct, unparsed.

    ``results`` are generation records or backend ``Result``s (uid, status, raw_output[, error]).
    Every item needs exactly one result and every result an item: a partial run is an error,
    not a smaller denominator. A failed generation is wrong (``status`` says why); an ``ok``
    one whose letter cannot be extracted is wrong and ``unparsed``.
    """
    by_uid: dict[str, object] = {}
    for result in results:
        uid = _field(result, "uid")
        if uid in by_uid:
            raise ValueError(f"two results for item {uid}")
        by_uid[uid] = result
    ids = [i["id"] for i in items]
    missing = [u for u in ids if u not in by_uid]
    extra = sorted(set(by_uid) - set(ids))
    if missing or extra:
        raise ValueError(f"results do not match the items: {len(missing)} item(s) without a "
                         f"result (e.g. {missing[:3]}), {len(extra)} result(s) for unknown "
                         f"items (e.g. {extra[:3]})")
    records = []
    for item in items:
        result = by_uid[item["id"]]
        status = _field(result, "status")
        raw = _field(result, "raw_output")
        ok = status == "ok"
        extracted = extract_choice(raw, option_letters(item["options"]), thinking) if ok else None
        records.append({
            "uid": item["id"],
            "benchmark": item.get("benchmark"),
            "task": item["task"],
            "status": status,
            "error": _field(result, "error"),
            "raw_output": raw,
            "extracted": extracted,
            "gold": item["answer"],
            "correct": extracted is not None and extracted == item["answer"],
            "unparsed": ok and extracted is None,
        })
    return records


def _summary(records: list[dict]) -> dict:
    n = len(records)
    correct = sum(r["correct"] for r in records)
    (low,), (high,) = wilson([correct], [n])
    return {
        "n": n,
        "n_correct": correct,
        "n_wrong_parsed": sum(r["status"] == "ok" and not r["unparsed"] and not r["correct"]
                              for r in records),
        "n_unparsed": sum(r["unparsed"] for r in records),
        "n_failed": sum(r["status"] != "ok" for r in records),
        "accuracy": 100 * correct / n if n else math.nan,
        "ci_low": 100 * float(low),
        "ci_high": 100 * float(high),
    }


def evaluate(results, items: list[dict], thinking: str = "auto") -> dict:
    """Accuracy (percent) with its Wilson 95% interval over all items, and per task.

    Returns ``{benchmark, n, n_correct, n_wrong_parsed, n_unparsed, n_failed, accuracy, ci_low,
    ci_high, ci_method: "wilson", confidence: 0.95, chance_accuracy, predicted: {letter: count},
    per_task: {task: {n, n_correct, n_wrong_parsed, n_unparsed, n_failed, accuracy, ci_low,
    ci_high}}}``. ``n = n_correct + n_wrong_parsed + n_unparsed + n_failed``; unparsed and failed
    items count as wrong. ``chance_accuracy`` is the mean of 1/options (25% with four options).
    """
    if _is_scored(results):
        records = results
        if sorted(r["uid"] for r in records) != sorted(i["id"] for i in items):
            raise ValueError("scored records do not match the items")
    else:
        records = score_results(results, items, thinking)
    benchmarks = sorted({str(i.get("benchmark")) for i in items})
    summary = {"benchmark": benchmarks[0] if len(benchmarks) == 1 else "+".join(benchmarks),
               **_summary(records), "ci_method": "wilson", "confidence": 0.95}
    summary["chance_accuracy"] = (100 * sum(1 / len(i["options"]) for i in items) / len(items)
                                  if items else math.nan)
    summary["predicted"] = dict(sorted(Counter(r["extracted"] for r in records
                                               if r["extracted"]).items()))
    tasks = list(dict.fromkeys(r["task"] for r in records))
    summary["per_task"] = {t: _summary([r for r in records if r["task"] == t]) for t in tasks}
    return summary


def _is_scored(results) -> bool:
    return (isinstance(results, list) and results and isinstance(results[0], dict)
            and "gold" in results[0] and "correct" in results[0])


# --- running a model --------------------------------------------------------------------------

def run_reasoning(model_name: str, model: dict, set_dir, out_dir, *, backend=None,
                  threads: int = 1, built=None) -> dict:
    """Run one registry model over a set folder's items and score it; resumable.

    Writes in ``out_dir``: ``generations.jsonl`` and ``generations.meta.json`` (written by
    ``generate.run_shard``, with its resume ledger ``.generations.progress.jsonl``: a re-run with
    the same model, weights and items re-asks only items not yet ``ok``), ``records.jsonl`` (one
    scored record per item, see ``score_results``) and ``summary.json`` (``evaluate``'s result
    plus model_name, items_sha256 and the generation status counts). Returns the summary.
    ``backend`` (already loaded) is used instead of ``make_backend(model)`` and not closed.
    ``built`` is the folder the build rule made, for tiny weights.
    """
    from mirsafety.entropy.capture import EntropyHook
    from mirsafety.generation.generate import run_shard
    from mirsafety.models.factory import make_backend, weights_identity

    if model["backend"] == "mir_import":
        raise ValueError(f"{model_name}: an imported (mir_import) model cannot answer the "
                         "reasoning items; give it a backend that generates")
    set_dir, out_dir = Path(set_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = read_items(set_dir)
    items_sha = sha256_file(set_dir / "items.jsonl")
    settings = {"stage": "reasoning", "model_name": model_name, "model": model,
                "weights": weights_identity(model, built), "items_sha256": items_sha}
    own = backend is None
    if own:
        import torch

        torch.set_num_threads(threads)
        backend = make_backend(model, capture=EntropyHook(), built=built)
    settings["weights"]["resolved_commit"] = getattr(backend, "commit", None)
    settings["generation_config"] = backend.generation_config()
    try:
        meta = run_shard([as_instance(i) for i in items], set_dir, backend,
                         model_name=model_name, model=model, settings=settings,
                         out_path=out_dir / "generations.jsonl",
                         meta_path=out_dir / "generations.meta.json")
    finally:
        if own:
            backend.close()
    generations = read_jsonl(out_dir / "generations.jsonl")
    records = score_results(generations, items, model.get("thinking", "auto"))
    for record in records:
        record["model"] = model_name
    write_jsonl(out_dir / "records.jsonl", records)
    summary = {"model_name": model_name, "items_sha256": items_sha,
               "status_counts": meta["status_counts"],
               **evaluate(records, items)}
    write_json(out_dir / "summary.json", summary)
    return summary


# --- published scores -------------------------------------------------------------------------

def read_published_csv(path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PUBLISHED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    frame["score"] = pd.to_numeric(frame["score"], errors="raise").astype(float)
    return frame


def load_aliases(path) -> dict[str, str | None]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    aliases = data.get("aliases")
    if not isinstance(aliases, dict):
        raise ValueError(f"{path}: expected a mapping under 'aliases'")
    for name, target in aliases.items():
        if target is not None and not isinstance(target, str):
            raise ValueError(f"{path}: alias of {name} must be a model name or null")
    return aliases


def choose_source(rows: pd.DataFrame, prefixes: list[str], column: str) -> str | None:
    """The one source of a column: the first prefix (in priority order) that starts some source
    of ``rows``. A prefix that starts two different sources is an error (make it longer)."""
    sources = list(dict.fromkeys(rows["source"]))
    for prefix in prefixes:
        matching = [s for s in sources if s.startswith(prefix)]
        if len(matching) > 1:
            raise ValueError(f"published_sources: prefix {prefix!r} of column {column} matches "
                             f"{len(matching)} sources; make it unique: {matching}")
        if matching:
            return matching[0]
    return None


def _pick_row(rows: pd.DataFrame, prefer_note: list[str]):
    """One row of a model within the chosen source, or None when the source prints several
    different scores for it that ``prefer_note`` does not settle."""
    if rows["score"].nunique() > 1:
        for needle in prefer_note:
            preferred = rows[rows["note"].str.contains(needle, regex=False)]
            if len(preferred):
                rows = preferred
                break
    return rows.iloc[0] if rows["score"].nunique() == 1 else None


def load_published(path, sources_path, aliases_path, models: list[str] | None = None
                   ) -> pd.DataFrame:
    """Published scores of registry models: one row per (model, column) with the column's one
    source. Columns: model (registry name), benchmark (the column name of
    ``published_sources.yaml``), score (percent), source, note, published_model (the name in the
    CSV).

    ``models`` defaults to the alias file's names. Nothing is averaged and a column never mixes
    sources (see ``published_sources.yaml`` for the rule). What could not be matched is
    returned in ``frame.attrs``, never dropped silently:

    * ``unmatched``: models with no published score in any column (no alias, alias null, or no
      row of theirs in any chosen source), in ``models`` order;
    * ``no_alias``: the models of ``unmatched`` that the alias file does not list at all (add
      them, with null where the CSV has no row for them);
    * ``missing``: {column: [models with an alias but no score in that column]};
    * ``ambiguous``: ["model / column", ...] where the chosen source prints several scores;
    * ``sources``: {column: the chosen source or None}; ``roles``: {column: role}.
    """
    table = read_published_csv(path)
    aliases = load_aliases(aliases_path)
    spec = yaml.safe_load(Path(sources_path).read_text())
    models = list(aliases) if models is None else list(models)
    unknown = sorted(t for t in aliases.values() if t is not None and t not in set(table["model"]))
    if unknown:
        raise ValueError(f"{aliases_path}: alias target(s) not in {path}: {unknown}")
    published_name = {m: aliases.get(m) for m in models}
    rows, missing, ambiguous, sources, roles = [], {}, [], {}, {}
    for column, rule in spec["columns"].items():
        roles[column] = rule.get("role")
        benchmark_rows = table[table["benchmark"] == rule["benchmark"]]
        source = choose_source(benchmark_rows, rule["sources"], column)
        sources[column] = source
        if source is None:
            log.warning("published column %s: no source of its priority list is in %s",
                        column, path)
            missing[column] = [m for m in models if published_name[m]]
            continue
        chosen = benchmark_rows[benchmark_rows["source"] == source]
        missing[column] = []
        for model in models:
            name = published_name[model]
            if name is None:
                continue
            mine = chosen[chosen["model"] == name]
            if mine.empty:
                missing[column].append(model)
                continue
            row = _pick_row(mine, rule.get("prefer_note") or [])
            if row is None:
                ambiguous.append(f"{model} / {column}")
                missing[column].append(model)
                continue
            rows.append({"model": model, "benchmark": column, "score": float(row["score"]),
                         "source": source, "note": row["note"], "published_model": name})
    frame = pd.DataFrame(rows, columns=[*PUBLISHED_COLUMNS, "published_model"])
    scored = set(frame["model"])
    unmatched = [m for m in models if m not in scored]
    if unmatched:
        log.warning("no published reasoning score for %d model(s): %s", len(unmatched),
                    ", ".join(unmatched))
    no_alias = [m for m in models if m not in aliases]
    frame.attrs.update(unmatched=unmatched, no_alias=no_alias, missing=missing, ambiguous=ambiguous,
                       sources=sources, roles=roles)
    return frame


# --- the capability table ---------------------------------------------------------------------

def capability_table(measured: dict, published: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One long table for the analysis: columns model, capability, score (percent), ci_low,
    ci_high, n_items, source.

    ``measured``: {model: evaluate() result, or a list of them (one per set)} -> capability
    ``measured:<benchmark>`` with its Wilson interval and item count, source "measured by this
    workflow". ``published`` (``load_published``): capability ``published:<column>``, interval
    and n_items NaN, source = the citation. Rows follow ``models``' order, measured first;
    models outside ``models`` are left out; a model without any row is logged.
    """
    rows = []
    for model in models:
        results = measured.get(model, [])
        for result in results if isinstance(results, list) else [results]:
            rows.append({"model": model, "capability": measured_capability(result["benchmark"]),
                         "score": result["accuracy"], "ci_low": result["ci_low"],
                         "ci_high": result["ci_high"], "n_items": result["n"],
                         "source": MEASURED_SOURCE})
        for row in published[published["model"] == model].itertuples():
            rows.append({"model": model, "capability": f"published:{row.benchmark}",
                         "score": row.score, "ci_low": math.nan, "ci_high": math.nan,
                         "n_items": math.nan, "source": row.source})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for column in ("score", "ci_low", "ci_high", "n_items"):
        table[column] = table[column].astype(float)
    without = [m for m in models if m not in set(table["model"])]
    if without:
        log.warning("capability table: no measured or published score for %s",
                    ", ".join(without))
    return table
