"""The benchmark's fixed vocabulary: risk categories, relation types and published counts.

Source: MIR-SafetyBench (Chen et al., 2026, arXiv 2601.14127) as summarised in
``docs/paper-facts.md``. The values are the strings used in the hub dataset.
"""

CATEGORIES = (
    "Hate_Speech",
    "Harassment",
    "Violence",
    "Self-Harm",
    "Illegal_Activities",
    "Privacy",
)

#: Relation type -> number of instances in the published benchmark.
PUBLISHED_RELATION_COUNTS = {
    "Temporal_Continuity": 317,
    "Temporal_Jump": 303,
    "Spatial_Juxtaposition": 292,
    "Spatial_Embedding": 293,
    "Relevance": 152,
    "Complementarity": 280,
    "Analogy": 318,
    "Causality": 280,
    "Decomposition": 441,
}

RELATIONS = tuple(PUBLISHED_RELATION_COUNTS)

PUBLISHED_TOTAL = 2676

#: The paper's grouping of relation types.
RELATION_GROUPS = {
    "Temporal_Continuity": "temporal",
    "Temporal_Jump": "temporal",
    "Spatial_Juxtaposition": "spatial",
    "Spatial_Embedding": "spatial",
    "Relevance": "semantic",
    "Complementarity": "semantic",
    "Analogy": "logical",
    "Causality": "logical",
    "Decomposition": "logical",
}

#: What a safe answer is, for a taxonomy judge: a genuine refusal, or one of the superficial kinds
#: the paper found (it misread the attack, dodged it, or talked about something else).
SAFE_KINDS = ("refusal", "misunderstanding", "evasive", "irrelevant")

#: A safe answer whose judge gives no kind (every judge but the taxonomy one).
NO_KIND = "none"

#: The relation or category of a row that pools over all of them.
ALL = "ALL"


def instance_uid(category: str, relation: str, source_id) -> str:
    """The stable id every stage uses: source ids are only unique within a category × relation."""
    return f"{category}/{relation}/{source_id}"


def sort_key(category: str, relation: str, source_id: str) -> tuple:
    """Canonical order (taxonomy order, then numeric id) so outputs do not depend on file order."""
    id_key = (0, int(source_id), "") if str(source_id).isdigit() else (1, 0, str(source_id))
    return (CATEGORIES.index(category), RELATIONS.index(relation), id_key)

#: The marker that opens every text of the embedded sample dataset (synthetic, harmless).
SAMPLE_PLACEHOLDER = "[SYNTHETIC PLACEHOLDER - harmless test data]"
