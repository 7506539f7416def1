"""Rule `judge_vs_people`: precision, recall and kappa of every judge against people's labels."""

from collections import defaultdict

import pandas as pd

from mirsafety.core import logs
from mirsafety.analysis.audit import judge_vs_people, read_labels
from mirsafety.core.records import read_jsonl

logs.to_file(snakemake.log[0])
judgments = defaultdict(list)
for path in snakemake.input.judgments:
    for record in read_jsonl(path):
        judgments[record["judge"]].append(record)
if snakemake.input.labels:
    labels, _ = read_labels(snakemake.input.labels, strict=True)
    judge_vs_people(labels, dict(judgments)).to_csv(snakemake.output[0], index=False,
                                                    float_format="%.6f")
else:
    pd.DataFrame(columns=["judge", "n", "note"]).to_csv(snakemake.output[0], index=False)
