"""
Flag groups of the training scripts: defaults dicts for `config.flags.add_dict_to_argparser`.

    run_defaults()                   every training script: --output_dir, --seed, --random_flip
    diffusion_training_defaults()    image_train.py and super_res_train.py (the original's flags)
    classifier_training_defaults()   classifier_train.py (the original's flags)
    runtime.speed.speed_defaults()   every training script: --precision, --compile (SPEED_LOOP_FLAGS)

The model and diffusion flags come from the factory defaults (`script_util`).
"""

# Flags of the diffusion training dict that are `DiffusionTrainLoop` arguments of the same name.
DIFFUSION_LOOP_FLAGS = (
    "batch_size", "microbatch", "lr", "ema_rate", "log_interval", "save_interval", "use_fp16",
    "fp16_scale_growth", "weight_decay", "lr_anneal_steps",
)

# Flags of `runtime.speed.speed_defaults` (--precision, --compile): arguments of every loop.
SPEED_LOOP_FLAGS = ("precision", "compile")

# Flags of the classifier training dict that are `ClassifierTrainLoop` arguments of the same name.
CLASSIFIER_LOOP_FLAGS = (
    "noised", "iterations", "lr", "weight_decay", "anneal_lr", "batch_size", "microbatch", "log_interval",
    "eval_interval", "save_interval",
)


def run_defaults():
    """
    output_dir: where logs and checkpoints go ("" : $OPENAI_LOGDIR, else a new temp folder);
    seed: -1 draws one (recorded in args.json); random_flip: True/False, or "auto" (True for
    --data_dir, False for the embedded digits, which are not mirror-symmetric).
    """
    return dict(output_dir="", seed=-1, random_flip="auto")


def diffusion_training_defaults():
    """The flags of the original's image_train.py and super_res_train.py, with their defaults."""
    return dict(
        data_dir="",
        schedule_sampler="uniform",
        lr=1e-4,
        weight_decay=0.0,
        lr_anneal_steps=0,
        batch_size=1,
        microbatch=-1,
        ema_rate="0.9999",
        log_interval=10,
        save_interval=10000,
        resume_checkpoint="",
        use_fp16=False,
        fp16_scale_growth=1e-3,
    )


def classifier_training_defaults():
    """The flags of the original's classifier_train.py, with their defaults."""
    return dict(
        data_dir="",
        val_data_dir="",
        noised=True,
        iterations=150000,
        lr=3e-4,
        weight_decay=0.0,
        anneal_lr=False,
        batch_size=4,
        microbatch=-1,
        schedule_sampler="uniform",
        resume_checkpoint="",
        log_interval=10,
        eval_interval=5,
        save_interval=10000,
    )
