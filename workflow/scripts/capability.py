"""Rule `capability`: measured and published capability scores in one long table."""

import json
import logging
from pathlib import Path

from mirsafety.core import logs
from mirsafety.reasoning.scores import capability_table, load_published
from mirsafety.core.records import write_json

logs.to_file(snakemake.log[0])
measured = {}
for path in snakemake.input.summaries:
    summary = json.loads(Path(path).read_text())
    measured[summary["model_name"]] = summary
published = load_published(snakemake.input.scores, snakemake.input.sources,
                           snakemake.input.aliases, models=snakemake.params.models)
table = capability_table(measured, published, snakemake.params.models)
table.to_csv(snakemake.output.table, index=False, float_format="%.6f")
unmatched = {key: published.attrs.get(key, []) for key in ("unmatched", "no_alias", "missing",
                                                           "ambiguous")}
write_json(snakemake.output.unmatched, unmatched)
logging.getLogger("capability").warning("models without a published score: %s",
                                        unmatched["unmatched"])
