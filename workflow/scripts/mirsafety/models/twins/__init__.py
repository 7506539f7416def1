"""Model families the tiny builder knows: one module each, like VLMEvalKit's ``vlm/<family>``.

A family module holds what makes a tiny model a faithful stand-in for a real checkpoint of that
family: the real special tokens (``SPECIAL_TOKENS``), the real chat template (``CHAT_TEMPLATE``,
written here, its source cited, tested against a rendering from that source), the transformers
model class (``MODEL_CLASS``), optional extra stop tokens (``STOP_TOKENS``), and two builders,
``config(model, tokenizer, ids)`` and ``processor(model, tokenizer)``, that take the model's
entry of ``resources/tiny_models.yaml``.
``models.tiny.FAMILIES`` lists them; ``docs/extending.md`` says how to add one.
"""
