"""
The sampling flag group: defaults shared by image_sample.py, classifier_sample.py and
super_res_sample.py (the first five are the original's, with its defaults).
"""


def sampling_defaults():
    """
    clip_denoised .. model_path: as in the original. sampler: one of `samplers.SAMPLERS`, or
    "auto" for the original's choice (ddim with --use_ddim True, else ancestral); seed: -1 draws
    a fresh run seed (recorded); output_dir: "" means $OPENAI_LOGDIR, else a temp folder; eta:
    DDIM's eta; progress: a tqdm bar on rank 0; save_trajectory: K > 0 also writes PNG strips of
    x_t and the predicted x_0 at K timesteps for the first samples (0: off; the samples are unchanged).
    """
    return dict(
        clip_denoised=True,
        num_samples=10000,
        batch_size=16,
        use_ddim=False,
        model_path="",
        sampler="auto",
        seed=-1,
        output_dir="",
        eta=0.0,
        progress=True,
        save_trajectory=0,
    )


def class_label_defaults():
    """
    class_labels: "" random per sample, "balanced", a comma list (cycled over the samples), or
    "null" (the null label of a model trained with --class_dropout_prob).
    Labels come from [0, num_classes), the --num_classes flag of the model and classifier defaults.
    """
    return dict(class_labels="")


def guidance_defaults():
    """
    guidance_scale: classifier-free guidance scale w for a model trained with
    --class_dropout_prob (-1: not given); guidance_interval: "lo,hi" training timesteps where
    guidance of either kind acts ("" every step).
    """
    return dict(guidance_scale=-1.0, guidance_interval="")
