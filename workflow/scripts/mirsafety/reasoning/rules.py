"""The reasoning rules: the seam between Snakemake and the reasoning library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).

The three rules run in three envs (data, generate, analysis), so each imports its library inside
itself: a rule's env then needs only what that rule uses (tests/test_envs.py checks this).
"""

import json
import logging
from pathlib import Path

from mirsafety.core.logs import rule_entry


@rule_entry
def reasoning_set(smk) -> None:
    from mirsafety.reasoning.item_set import load_spec, read_muirbench, write_reasoning_set

    set_dir = Path(smk.output.item_list).parent
    if smk.params.benchmark == "muirbench":
        read_muirbench(smk.input.source, set_dir)
    else:
        write_reasoning_set(load_spec(smk.input.spec), set_dir)


@rule_entry
def reasoning_generate(smk) -> None:
    from mirsafety.models.factory import built_weights
    from mirsafety.reasoning.scores import run_reasoning

    run_reasoning(smk.wildcards.model, smk.params.model, Path(smk.input.item_list).parent,
                  Path(smk.output.summary).parent, threads=smk.threads,
                  built=built_weights(smk.input))


@rule_entry
def capability(smk) -> None:
    from mirsafety.core.records import write_json
    from mirsafety.reasoning.scores import capability_table, load_published

    measured = {}
    for path in smk.input.summaries:
        summary = json.loads(Path(path).read_text())
        measured[summary["model_name"]] = summary
    published = load_published(smk.input.scores, smk.input.sources, smk.input.aliases,
                               models=smk.params.models)
    table = capability_table(measured, published, smk.params.models)
    table.to_csv(smk.output.table, index=False, float_format="%.6f")
    unmatched = {key: published.attrs.get(key, []) for key in ("unmatched", "no_alias", "missing",
                                                               "ambiguous")}
    write_json(smk.output.unmatched, unmatched)
    logging.getLogger("capability").warning("models without a published score: %s",
                                            unmatched["unmatched"])
