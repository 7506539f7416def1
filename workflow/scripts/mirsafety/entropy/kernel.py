"""The entropy kernel: attention rows reduced to their entropies without keeping the rows.

Definition (our choice; the paper does not say how it computed its entropies)
------------------------------------------------------------------------------
For every self-attention layer of the language model (the attention modules that carry a
``layer_idx``; the vision tower and cross-attention layers are left alone, see below) and every
head, take the attention distribution ``p`` of one query row over its keys, after the causal and
padding masks (a masked key has probability 0 and does not count as a key):

* ``H = -sum_j p_j log p_j`` over all the row's keys (nats), and ``H_norm = H / log(n)`` with
  ``n`` the number of keys the row may attend to (0 when ``n == 1``), so ``H_norm`` is in [0, 1];
* ``H_img``: the same over the *image-token* keys only, with ``p`` renormalised to sum to one over
  them, and ``H_img_norm = H_img / log(n_img)`` (undefined when the row sees no image key, 0 when it
  sees one). Image-token keys are the positions the model scatters the image features into, the
  model config's image token (``<|image_pad|>`` for Qwen2-VL, ``<image>`` for Idefics3 and
  SmolVLM, ``<image_soft_token>`` for Gemma 3, not its ``<start_of_image>`` placeholder): the
  image embeddings themselves, not the tags around them.

The keys a row "may attend to" are those the model's own mask allows, whatever it is: causal and
padding, and also, where the model says so, the later tokens of the row's own image (Gemma 3's
image tokens attend to their whole image, both ways).

Sliding-window layers (Gemma 3's local layers: a row sees only its last ``sliding_window``
keys). ``p`` is the layer's distribution, so ``H`` and ``H_img`` are over the keys the row can
actually see in that layer: ``H_img`` is ``p`` renormalised over the image keys inside the window,
and is undefined (NaN, like a row before any image) when the window holds no image key, e.g. the
rows after the last image once the window has passed it, even though the prompt has images. The
normalisers, and the ``n``/``n_img`` reported, are the row's keys in the model's sense: those it
could attend to without the window (as a global layer of the same model sees them), the same in
every layer. So a sliding layer's ``H_norm`` is at most ``log(keys in the window) / log(n)``:
it says how spread the row's attention is over the context it has been shown, comparable with a
global layer's, not how spread it is over what the window lets through; and ``H_img_norm`` of a
row seeing 2 of an image's 256 keys, evenly, is ``log 2 / log 256``, not 1.

Each quantity is averaged over the heads (per row and layer), then over the selected response
rows (per layer), and the per-layer values are averaged over the layers (``*_mean``).

Models with cross-attention layers (Mllama, i.e. Llama-3.2-Vision). The image features are not in
the sequence: they reach the text only through the ``cross_attention_layers``, whose keys are the
vision tower's tile features. Those layers are not measured (``layers`` lists the self-attention
layers' indices only), so every quantity is over the sequence, as for the other models. The
self-attention layers never see an image patch: their only "image keys" are the ``<|image|>``
placeholder tokens, one per image, and that is what is counted: ``H_img`` is the entropy over the
``<|image|>`` positions (``n_img`` = the number of images in the prompt; with one image, the
study's setting for Llama-3.2-Vision, ``H_img`` and ``H_img_norm`` are 0 by construction), and
``H`` counts the placeholders as ordinary keys. The image-key quantities of such a model measure
something else than those of models whose image features sit in the sequence.

How. :func:`reduce_rows` recomputes the attention of the query rows of interest, in chunks, and
reduces each row to its entropies at once, in float32: with the module's scaling, the
causal/padding mask (also when SDPA received no mask object and relied on ``is_causal``: then
SDPA's own upper-left causal rule) and grouped-query attention (a key/value head's query heads
are stacked, no key is repeated). Two equivalent ways, tested against each other and against
eager attention:

* explicit (any device, any mask): ``softmax(QK^T)`` of at most ``chunk_elements`` scores at a
  time, ``H = sum entr(p)``;
* fused (CPU, boolean or no mask): one flash-attention call with the keys as values gives each
  row's log-sum-exp and expected key, and ``H = logsumexp(s) - E_p[s]`` with
  ``E_p[s] = scale * q . E_p[k]`` -- no score matrix at all. Causal rows are split into the keys
  before the chunk (no mask) and the chunk's own triangle (``is_causal``), merged by
  log-sum-exp; ``H_img`` is the same over the image keys alone.

Nothing of size layers x heads x T x T is ever held. Which rows are reduced, and when, is the
capture's business (:mod:`mirsafety.entropy.capture`).
"""

import logging
import math

import torch

log = logging.getLogger(__name__)

__all__ = ["CHUNK_ELEMENTS", "QUANTITIES", "USE_FUSED", "image_key_columns", "reduce_rows"]

#: The four per-row quantities, in the order they are stored.
QUANTITIES = ("entropy_all", "entropy_img", "entropy_all_norm", "entropy_img_norm")
#: Scores per chunk (batch x heads x rows x keys): 2**20 float32 = 4 MiB, a few such buffers live.
CHUNK_ELEMENTS = 1 << 20
# Finite "minus infinity" for masked scores: softmax gives exactly 0 there, and a row with no
# allowed key (never a selected one) stays finite instead of turning into NaN.
_NEG = torch.finfo(torch.float32).min


# A row chunk's masking, as the reductions see it (the capture builds these "specs"):
#   ("causal", positions)      each row sees the keys up to its position (SDPA without a mask);
#   ("none", None)             every key (one query row, e.g. a decode step);
#   ("mask", allowed, additive) a bool mask (B|1, 1|H, c, K) and an additive float one or None.


def image_key_columns(image_keys):
    """(columns (n,), which batch rows hold an image there (B, 1, 1, n) or None when all do) for
    the union of the batch's image-key positions; None without image keys."""
    if image_keys is None or not bool(image_keys.any()):
        return None
    columns = image_keys.any(0).nonzero().flatten()
    held = image_keys.index_select(1, columns)
    return columns, (None if bool(held.all()) else held[:, None, None, :])


def _allowed(spec, k_len, device):
    """(allowed bool (b, h, c, K) or None for every key, additive float or None) of a spec."""
    if spec[0] == "none":
        return None, None
    if spec[0] == "causal":
        keys = torch.arange(k_len, device=device)
        return (keys[None, :] <= spec[1][:, None])[None, None], None
    return spec[1], spec[2]


def _explicit_chunk(q, keys_t, spec, columns, held, group, position_bias, keep_probs):
    """Entropies of a chunk of rows from their materialised probabilities (any device, any mask).

    q (B, H, c, D) float, already scaled; keys_t (B, Hkv, D, K). Returns (H, n, H_img, n_img),
    each (B, H, c), and the probabilities (B, H, c, K) when ``keep_probs``.
    """
    batch, heads, c, dim = q.shape
    kv_heads, k_len = keys_t.shape[1], keys_t.shape[3]
    # Group the query heads over their key/value head (repeat_kv's order: h = kv * group + g).
    scores = torch.matmul(q.reshape(batch, kv_heads, group * c, dim), keys_t)
    scores = scores.view(batch, heads, c, k_len)
    allowed, additive = _allowed(spec, k_len, q.device)
    if additive is not None:
        scores += additive
    if position_bias is not None:
        scores += position_bias
    if allowed is not None:
        scores.masked_fill_(~allowed, _NEG)
        count = allowed.sum(-1).expand(batch, heads, c)  # counted before broadcasting
    else:
        count = torch.full((batch, heads, c), k_len, device=q.device)
    h_img = img_count = None
    if columns is not None:
        # Masked keys already hold _NEG; other batch rows' image columns are masked here.
        img_scores = scores.index_select(-1, columns)
        visible = None if allowed is None else allowed.index_select(-1, columns)
        if held is not None:
            visible = held if visible is None else (visible & held)
            img_scores.masked_fill_(~visible, _NEG)
        img_count = (torch.full((batch, heads, c), columns.numel(), device=q.device)
                     if visible is None else visible.sum(-1).expand(batch, heads, c))
        h_img = torch.special.entr(torch.softmax(img_scores, -1)).sum(-1)
        del img_scores
    probs = torch.softmax(scores, -1)  # exactly 0 at masked keys
    del scores
    h_all = torch.special.entr(probs).sum(-1)
    return h_all, count, h_img, img_count, (probs if keep_probs else None)


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
#: Use the fused CPU kernel where it applies (tests switch it off to check the other path).
USE_FUSED = _FLASH_CPU is not None


def _attend(q, key, group, scale, mask=None, causal=False):
    """(log-sum-exp (B, H, c), expected key (B, H, c, D)) of rows q (B, H, c, D) over ``key``
    (B, Hkv, K, D), from one fused flash-attention call with the keys as values.

    The rows of a key/value head's query heads are stacked so no key is copied; ``mask`` is a
    float (b, 1, c, K) mask or None; ``causal`` aligns the rows with the keys' start (then the
    keys are repeated per query head, as the causal pattern is per row)."""
    batch, heads, c, dim = q.shape
    kv_heads = key.shape[1]
    if causal:
        key = key.repeat_interleave(group, 1) if group > 1 else key
        out, lse = _FLASH_CPU(q, key, key, is_causal=True, scale=scale)
        return lse.reshape(batch, heads, c), out.reshape(batch, heads, c, dim)
    if mask is not None and group > 1:
        mask = mask.repeat(1, 1, group, 1)
    out, lse = _FLASH_CPU(q.reshape(batch, kv_heads, group * c, dim), key, key, attn_mask=mask,
                          scale=scale)
    return lse.reshape(batch, heads, c), out.reshape(batch, heads, c, dim)


def _merge(first, second):
    """Combine (lse, expected key) of two disjoint key sets into those of their union."""
    (lse1, out1), (lse2, out2) = first, second
    lse = torch.logaddexp(lse1, lse2)
    out = out1 * torch.exp(lse1 - lse)[..., None] + out2 * torch.exp(lse2 - lse)[..., None]
    return lse, out


def _entropy_from(q, scale, lse, out):
    """H = log Z - E_p[s], with E_p[s] = scale * q . E_p[k] (exact for a boolean mask)."""
    return (lse - scale * (q * out).sum(-1)).clamp_(min=0)


def _float_mask(allowed):
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, -math.inf)


def _fused_chunk(q, key, spec, columns, held, group, scale):
    """Entropies of a chunk of rows through the fused CPU kernel, without materialising a row.

    q (B, H, c, D) float (unscaled), key (B, Hkv, K, D) float; boolean or no masks only.
    Returns (H, n, H_img, n_img), each (B, H, c) (H_img/n_img None without image keys), or None
    where the chunk needs the explicit path.
    """
    batch, heads, c, _ = q.shape
    k_len = key.shape[2]
    kind = spec[0]
    full = (batch, heads, c)
    if kind == "causal":
        positions = spec[1]
        start = int(positions[0])
        if int(positions[-1]) - start != c - 1 or start + c > k_len:
            return None  # not one contiguous run of rows
        tail = _attend(q, key[:, :, start:start + c], group, scale, causal=True)
        found = tail if start == 0 else _merge(
            _attend(q, key[:, :, :start], group, scale), tail)
        count = (positions + 1).expand(full)
        allowed = None
    elif kind == "none":
        found, count, allowed = _attend(q, key, group, scale), torch.full(full, k_len), None
    else:
        allowed, additive = spec[1], spec[2]
        if additive is not None or allowed.shape[1] != 1:
            return None  # additive or per-head masks: explicit path
        found = _attend(q, key, group, scale, mask=_float_mask(allowed))
        count = allowed.sum(-1).expand(full)
    h_all = _entropy_from(q, scale, *found)
    if columns is None:
        return h_all, count, None, None
    image_key = key.index_select(2, columns)
    if kind == "causal":
        visible = None if int(columns[-1]) <= start else (
            columns[None, :] <= spec[1][:, None])[None, None]
    else:
        visible = None if allowed is None else allowed.index_select(-1, columns)
    if held is not None:
        visible = held if visible is None else (visible & held)
    if visible is None:
        img_count = torch.full(full, columns.numel())
        found = _attend(q, image_key, group, scale)
    else:
        img_count = visible.sum(-1).expand(full)
        found = _attend(q, image_key, group, scale, mask=_float_mask(visible))
    return h_all, count, _entropy_from(q, scale, *found), img_count


def reduce_rows(query, key, rows, spec, *, scaling, image_columns,
                 chunk_elements=CHUNK_ELEMENTS, position_bias=None, keep_probs=False,
                 hidden=None):
    """Entropies of the query rows ``rows`` (r,) of ``query``, chunk by chunk.

    query (B, H, Q, D), key (B, Hkv, K, D); ``spec(start, stop, chunk_rows)`` gives a chunk's
    masking (``spec.kind``: "causal", "none" or "mask" for every chunk); ``image_columns`` from
    :func:`image_key_columns`. ``hidden``: for a sliding-window layer, (keys (B, r), image keys
    (B, r)) each row may attend to that the window hides (see the module doc), None otherwise.
    Returns ({quantity: (B, r)} head means, n_keys (B, r), n_img (B, r), probabilities
    (B, H, r, K) or None); n_keys/n_img count the row's keys, hidden ones included.

    On CPU the fused flash kernel gives each row's log-sum-exp and expected key at once
    (H = log Z - scale q . E_p[k]); elsewhere, or for additive masks and position biases, the
    probabilities of ``chunk_elements`` scores at a time are materialised and reduced.

    A model split over several GPUs runs each layer where its weights are: the row and column
    indices (made on the input's device) go to the layer's device, and the results come back to
    the rows' device, where the capture gathers every layer.
    """
    home, device = rows.device, query.device
    rows = rows.to(device)
    if image_columns is not None:
        image_columns = tuple(None if t is None else t.to(device) for t in image_columns)
    batch, heads, _, dim = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    group = heads // kv_heads
    n_rows = rows.numel()
    key = key.float()
    scale = dim ** -0.5 if scaling is None else scaling
    columns = held = None
    if image_columns is not None:
        columns, held = image_columns
        if int(columns[-1]) >= k_len:  # only the keys seen so far
            keep = columns < k_len
            columns = columns[keep]
            held = None if held is None else held[..., keep]
        if not columns.numel():
            columns = held = None
    fused = (USE_FUSED and query.device.type == "cpu" and position_bias is None
             and not keep_probs)
    # Explicit: a chunk's scores (B, H, c, K) hold chunk_elements numbers. Fused: no score
    # matrix is held, only a mask of (B, group * c, K) where one is needed (else one chunk).
    per_row = batch * (group if fused else heads) * k_len
    step = max(1, chunk_elements // max(1, per_row))
    if fused and getattr(spec, "kind", "mask") != "mask":
        step = max(step, n_rows)
    outputs = {name: [] for name in QUANTITIES}
    n_keys, n_img, kept = [], [], []
    for start in range(0, n_rows, step):
        chunk_rows = rows[start:start + step]
        c = chunk_rows.numel()
        q = query.index_select(2, chunk_rows).float()
        chunk_spec = tuple(t.to(device) if torch.is_tensor(t) else t
                           for t in spec(start, start + c, chunk_rows))
        found = None
        if fused:
            try:
                found = _fused_chunk(q, key, chunk_spec, columns, held, group, scale)
            except RuntimeError as error:  # a kernel refusing its inputs: the explicit path
                log.warning("fused entropy kernel failed (%s); using the explicit path", error)
                fused = False
        if found is None:
            bias = (None if position_bias is None
                    else position_bias.index_select(-2, chunk_rows)[..., :k_len].float())
            *found, probs = _explicit_chunk(q * scale, key.transpose(-1, -2), chunk_spec,
                                            columns, held, group, bias, keep_probs)
            if keep_probs:
                kept.append(probs)
        h_all, count, h_img, img_count = found
        if h_img is None:
            img_count = torch.zeros_like(count)
            h_img = torch.full(count.shape, torch.nan, device=count.device)
        else:  # a row that sees no image key (none yet, or none in its window): undefined
            h_img = torch.where(img_count > 0, h_img, torch.nan)
        if hidden is not None:  # the keys the window hides count in the normalisers
            count = count + hidden[0][:, None, start:start + c].to(count.device)
            img_count = img_count + hidden[1][:, None, start:start + c].to(count.device)
        outputs["entropy_all"].append(h_all.mean(1))
        outputs["entropy_img"].append(h_img.mean(1))
        outputs["entropy_all_norm"].append(_normalise(h_all, count).mean(1))
        outputs["entropy_img_norm"].append(_normalise(h_img, img_count).mean(1))
        n_keys.append(count[:, 0])
        n_img.append(img_count[:, 0])
    result = {name: torch.cat(parts, 1).to(home) for name, parts in outputs.items()}
    return (result, torch.cat(n_keys, 1).to(home), torch.cat(n_img, 1).to(home),
            torch.cat(kept, 2).to(home) if keep_probs else None)


def _normalise(entropy, count):
    """entropy / log(count); 0 for a single key, NaN for none (and where entropy is NaN)."""
    log_n = torch.log(count.clamp(min=1).float())
    normed = entropy / torch.where(count > 1, log_n, 1.0)
    return torch.where(count > 1, normed, torch.where(count == 1, entropy * 0.0, torch.nan))

