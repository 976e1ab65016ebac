"""
`--help` text of the network, diffusion and training flags (the original's flags, which it left
undescribed). `config.flags.FLAG_HELP` merges these with the flags of sampling and the run.
Each text names the unit or the allowed values and what the default means.
"""

# The UNet (image_train.py, the sampling scripts, super-resolution).
MODEL_FLAG_HELP = {
    "image_size": "side of the square images in pixels (the network's input and the data's crop size)",
    "large_size": "super-resolution: side of the output images; 32, 64, 256 or 512 (each has its own "
                  "channel schedule; --channel_mult does not apply)",
    "small_size": "super-resolution: side of the low-resolution input, upsampled bilinearly to "
                  "--large_size inside the network",
    "num_channels": "channels of the UNet's first level (later levels multiply it by --channel_mult)",
    "num_res_blocks": "residual blocks per UNet level",
    "num_heads": "attention heads per attention layer (when --num_head_channels is -1)",
    "num_heads_upsample": "attention heads in the upsampling half (-1: the same as --num_heads)",
    "num_head_channels": "channels per attention head, which sets the head count (-1: use --num_heads)",
    "attention_resolutions": "feature-map sides (pixels) that get self-attention, comma list, e.g. 32,16,8",
    "channel_mult": "channel multiplier per UNet level, comma list, e.g. 1,2,2 (empty: the table for "
                    "--image_size 32, 64, 128, 256 or 512)",
    "dropout": "dropout probability inside the residual blocks",
    "class_cond": "class-conditional model: a label embedding of --num_classes rows is added to the "
                  "timestep embedding",
    "use_checkpoint": "gradient checkpointing: recompute activations in the backward pass to save memory",
    "use_scale_shift_norm": "condition the residual blocks by a scale and shift of the normalised "
                            "features (FiLM) instead of adding the embedding",
    "resblock_updown": "down- and upsample with residual blocks instead of plain conv/interpolation",
    "use_fp16": "run the network in float16 (checkpoints stay float32); training uses loss scaling",
    "use_new_attention_order": "split q, k, v before the heads (QKVAttention, as the released 64x64 "
                               "model) instead of the legacy order (the other released models)",
}

# The diffusion process (shared by models and noisy classifiers).
DIFFUSION_FLAG_HELP = {
    "learn_sigma": "the model also outputs the variance interpolation (6 output channels), trained by "
                   "the variational bound term",
    "diffusion_steps": "number of diffusion timesteps T the model is trained with",
    "use_kl": "train on the variational bound (KL terms) alone instead of the noise MSE",
    "predict_xstart": "the model predicts x_0 instead of the noise eps",
    "rescale_timesteps": "feed the model t scaled to [0, 1000) whatever --diffusion_steps (the "
                         "improved-diffusion convention)",
    "rescale_learned_sigmas": "with --learn_sigma: multiply the bound term by T / 1000 (RESCALED_MSE)",
}

# The classifier (classifier_train.py, classifier_sample.py, classifier_accuracy.py).
CLASSIFIER_FLAG_HELP = {
    "classifier_width": "channels of the classifier's first level",
    "classifier_depth": "residual blocks per classifier level",
    "classifier_attention_resolutions": "feature-map sides (pixels) where the classifier has "
                                        "self-attention, comma list",
    "classifier_channel_mult": "channel multiplier per classifier level, comma list (empty: the "
                               "table for --image_size 32, 64, 128, 256 or 512)",
    "classifier_pool": "the head after the encoder: adaptive, attention, spatial or spatial_v2",
    "classifier_use_scale_shift_norm": "classifier residual blocks condition on t by scale and shift",
    "classifier_resblock_updown": "classifier downsamples with residual blocks",
    "classifier_use_fp16": "run the classifier in float16",
}

# The training loops.
TRAINING_FLAG_HELP = {
    "lr": "Adam(W) learning rate",
    "weight_decay": "AdamW weight decay",
    "schedule_sampler": "how training timesteps are drawn: uniform, or loss-second-moment (importance "
                        "sampling by each step's recent loss)",
    "log_interval": "write the mean losses to the log and progress.csv every this many steps",
    "save_interval": "write a checkpoint every this many steps (and always at the end)",
    "fp16_scale_growth": "with --use_fp16: how much log2 of the loss scale grows per step without overflow",
    "val_data_dir": "folder of validation images (default: none; the held-out digits with the "
                    "embedded digits)",
    "noised": "train on noised images x_t at random timesteps (a guide for sampling); False: on clean "
              "images only (a judge of finished samples)",
    "iterations": "number of training steps of the classifier run",
    "anneal_lr": "decay the learning rate linearly to 0 over --iterations",
    "eval_interval": "log the validation loss and accuracy every this many steps",
}
