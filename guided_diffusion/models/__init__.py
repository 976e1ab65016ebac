"""
The networks. Checkpoint keys and their order equal the original's.

    layers     conv/pool/linear factories, GroupNorm32, timestep embedding, EMA, checkpointing
    fp16       conversion of convolutions to float16 and back
    attention  QKV attention (two channel layouts), AttentionBlock, AttentionPool2d
    blocks     TimestepEmbedSequential, Upsample, Downsample, ResBlock
    torso      the half shared by UNet and classifier: time MLP, label embedding, input and
               middle blocks
    unet       UNetModel and SuperResModel
    encoder    EncoderUNetModel (the noisy-image classifier)
    layout     reading flags (widths, depth, heads, ...) off a state dict's names and shapes
"""
