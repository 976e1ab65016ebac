"""
Reading a network's construction flags off its state-dict layout (parameter names and shapes).

Pure functions over `name -> tensor or shape` dicts, so they work on checkpoints, on live
models and on models built on the meta device. What a layout cannot tell (the image size, the
noise schedule, the diffusion steps) is never guessed here.

Key patterns used (see tests/data/checkpoints for full layouts): `time_embed.0.weight`
[4*mc, mc]; `label_emb.weight` [num_classes, 4*mc]; `input_blocks.i.j.<name>` and
`output_blocks.i.j.<name>`; ResBlocks' `emb_layers.1.weight` (2*C outputs with scale-shift
norm); `.op.weight` (conv downsampling) and `.conv.weight` (conv upsampling); the head `out.*`.
"""

import re

_BLOCK = re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.+)$")


def layout_shape(value):
    """A tensor's (or a shape's) shape as a tuple of ints."""
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def compare_state_dicts(expected, found):
    """
    Compare a model's layout with a checkpoint's.

    :param expected: name -> tensor (or shape) of the model.
    :param found: name -> tensor (or shape) of the checkpoint.
    :return: (missing keys, unexpected keys, [(key, checkpoint shape, model shape)]).
    """
    exp = {k: layout_shape(v) for k, v in expected.items()}
    got = {k: layout_shape(v) for k, v in found.items()}
    missing = [k for k in exp if k not in got]
    unexpected = [k for k in got if k not in exp]
    mismatched = [(k, got[k], exp[k]) for k in exp if k in got and got[k] != exp[k]]
    return missing, unexpected, mismatched


def infer_flags(state_dict, image_size=None):
    """
    Read generic flag values off a UNet / classifier state dict.

    :param state_dict: name -> tensor or shape.
    :param image_size: the image size, to turn attention downsample rates into resolutions.
    :return: dict generic flag -> (value, reason). Only what the layout determines: among
        num_channels, class_cond, num_classes, learn_sigma, use_scale_shift_norm,
        resblock_updown, pool, num_res_blocks, channel_mult, attention_resolutions.
    """
    sd = {k: layout_shape(v) for k, v in state_dict.items()}
    out = {}
    if "time_embed.0.weight" not in sd:
        return out
    mc = sd["time_embed.0.weight"][1]
    out["num_channels"] = (mc, f"time_embed.0.weight is {list(sd['time_embed.0.weight'])}")
    out.update(_infer_conditioning(sd))
    blocks = _blocks(sd)
    out.update(_infer_resampling(sd, blocks))
    out.update(_infer_head(sd))
    out.update(_infer_classifier_classes(sd))
    outs = sorted(i for (part, i) in blocks if part == "output_blocks")
    if outs:
        out.update(_infer_unet_levels(sd, blocks, outs, mc, image_size))
    return out


def _blocks(sd):
    """(part, block index) -> {layer index -> set of parameter names} for input/output blocks."""
    blocks = {}
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            block = blocks.setdefault((m.group(1), int(m.group(2))), {})
            block.setdefault(int(m.group(3)), set()).add(m.group(4))
    return blocks


def _infer_conditioning(sd):
    """class_cond and num_classes, learn_sigma and use_scale_shift_norm."""
    out = {}
    if "label_emb.weight" in sd:
        rows = sd["label_emb.weight"][0]
        out["class_cond"] = (True, "the checkpoint has label_emb")
        out["num_classes"] = (rows, f"label_emb.weight has {rows} rows")
    else:
        out["class_cond"] = (False, "the checkpoint has no label_emb")
    if "out.2.weight" in sd and len(sd["out.2.weight"]) == 4:
        oc = sd["out.2.weight"][0]
        out["learn_sigma"] = (oc == 6, f"its output conv has {oc} channels")
    emb = [(k, v) for k, v in sd.items() if k.endswith("emb_layers.1.weight")]
    if emb:
        k, v = emb[0]
        norm = sd[k.replace("emb_layers.1.weight", "out_layers.0.weight")][0]
        out["use_scale_shift_norm"] = (v[0] == 2 * norm, f"{k} has {v[0]} outputs for {norm} channels")
    return out


def _infer_resampling(sd, blocks):
    """resblock_updown: conv up/downsampling layers, or ResBlocks that resample."""
    down_conv = any(k.endswith(".op.weight") for k in sd)
    up_conv = any(k.startswith("output_blocks") and k.endswith(".conv.weight") for k in sd)
    up_res = any(
        "in_layers.0.weight" in names
        for (part, _), layers in blocks.items()
        if part == "output_blocks"
        for j, names in layers.items()
        if j > 0
    )
    if down_conv or up_conv:
        return {"resblock_updown": (False, "the checkpoint has conv up/downsampling layers (op / conv)")}
    if up_res:
        return {"resblock_updown": (True, "the checkpoint up/downsamples with ResBlocks")}
    return {}


def _infer_head(sd):
    """The classifier's pool, from the parameters of its `out` head."""
    if "out.2.positional_embedding" in sd:
        return {"pool": ("attention", "the checkpoint head has an attention pool")}
    if "out.3.weight" in sd and len(sd["out.3.weight"]) == 4:
        return {"pool": ("adaptive", "the checkpoint head is a 1x1 conv")}
    if "out.1.weight" in sd and len(sd["out.1.weight"]) == 1 and "out.3.weight" in sd:
        return {"pool": ("spatial_v2", "the checkpoint head is Linear, GroupNorm, Linear")}
    if "out.2.weight" in sd and len(sd["out.2.weight"]) == 2:
        return {"pool": ("spatial", "the checkpoint head is Linear, ReLU, Linear")}
    return {}


# The classifier's logits layer for each pool: the parameter whose first dimension is the count.
_LOGITS = {
    "attention": "out.2.c_proj.weight",
    "adaptive": "out.3.weight",
    "spatial": "out.2.weight",
    "spatial_v2": "out.3.weight",
}


def _infer_classifier_classes(sd):
    """num_classes of a classifier: the rows of its last layer."""
    pool = _infer_head(sd).get("pool", (None,))[0]
    key = _LOGITS.get(pool)
    if key is None or key not in sd:
        return {}
    return {"num_classes": (sd[key][0], f"{key} has {sd[key][0]} outputs")}


def _infer_unet_levels(sd, blocks, outs, mc, image_size):
    """Levels, blocks per level, channel_mult and attention from the UNet's output blocks."""
    ups = []
    for i in outs:
        layers = blocks[("output_blocks", i)]
        if any(j > 0 and {"conv.weight", "in_layers.0.weight"} & names for j, names in layers.items()):
            ups.append(i)
    levels = len(ups) + 1
    if len(outs) % levels:
        return {}
    per_level = len(outs) // levels
    res = {"num_res_blocks": (per_level - 1, f"{len(outs)} output blocks over {levels} levels")}
    mult, ds_attn = [], []
    for lvl in range(levels):
        first = lvl * per_level
        level = levels - 1 - lvl
        shape = sd.get(f"output_blocks.{first}.0.out_layers.3.weight")
        if shape is None:
            return res
        mult.insert(0, shape[0] / mc)
        if any("qkv.weight" in names for names in blocks[("output_blocks", first)].values()):
            ds_attn.append(2**level)
    res["channel_mult"] = (tuple(mult), "channel widths of the output blocks")
    if image_size and ds_attn:
        resolutions = ",".join(str(image_size // ds) for ds in sorted(ds_attn))
        res["attention_resolutions"] = (resolutions, "positions of the attention blocks")
    return res
