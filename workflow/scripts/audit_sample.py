"""Rule `audit_sample`: the blind sheet people label, and the key with the judges' labels."""

from collections import defaultdict

from mirsafety.core import logs
from mirsafety.analysis.audit import audit_key, draw_audit_sample, write_audit_csv, write_key_csv
from mirsafety.core.records import read_jsonl

logs.to_file(snakemake.log[0])
judgments = defaultdict(list)
for path in snakemake.input.judgments:
    for record in read_jsonl(path):
        judgments[record["judge"]].append(record)
generations = [r for path in snakemake.input.generations for r in read_jsonl(path)]
rows = draw_audit_sample(read_jsonl(snakemake.input.instances), generations, dict(judgments),
                         per_stratum=snakemake.params.per_stratum,
                         disagreement_boost=snakemake.params.disagreement_boost,
                         seed=snakemake.params.seed)
write_audit_csv(rows, snakemake.output.sheet)
write_key_csv(audit_key(rows, dict(judgments)), snakemake.output.key)
