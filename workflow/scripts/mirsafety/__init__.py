"""Library code of the MIR-SafetyBench workflow.

Rule scripts under ``workflow/scripts/`` stay thin and import from here, so every function that
matters can be unit-tested without Snakemake.
"""
