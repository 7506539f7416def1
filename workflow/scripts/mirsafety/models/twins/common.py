"""Small helpers the family modules share."""


def head_dim(text: dict) -> int:
    """The attention head size of a text config given as a dict."""
    return text["hidden_size"] // text["num_attention_heads"]
