"""Rule `entropy`: attention entropy of every answer of one generation shard."""
from mirsafety.entropy.rules import entropy

entropy(snakemake)  # noqa: F821 - injected by Snakemake
