"""The entropy rules: the seam between Snakemake and the entropy library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).

The two rules run in different envs (``entropy`` needs torch, ``entropy_compare`` only the
analysis stack), so each imports its library inside itself: a rule's env then needs only what
that rule uses (tests/test_envs.py checks this).
"""

from mirsafety.core.logs import rule_entry


@rule_entry
def entropy(smk) -> None:
    from mirsafety.entropy.stage import entropy_shard
    from mirsafety.models.factory import built_weights

    entropy_shard(
        model_name=smk.wildcards.model,
        model=smk.params.model,
        options=smk.params.options,
        generations_path=smk.input.generations,
        instances_path=smk.input.instances,
        dataset_dir=smk.params.dataset_dir,
        out_path=smk.output.entropy,
        meta_path=smk.output.meta,
        threads=smk.threads,
        built=built_weights(smk.input),
    )


@rule_entry
def entropy_compare(smk) -> None:
    from mirsafety.entropy.comparison import write_comparison

    write_comparison(smk.input.entropy, smk.input.judgments, smk.params.metric,
                     smk.output.comparison, smk.output.layers, smk.output.mixed)
