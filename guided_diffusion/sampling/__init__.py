"""
Sampling: from a trained model (and optionally a classifier) to image files.

    generate        the one entry point: per-sample seeds, labels, guidance -> uint8 images
    seeds           per-sample noise and label streams, independent of batch and world size
    labels          --class_labels and per-sample label assignment
    samplers        the samplers offered (ancestral, ddim, dpm++) and one batch run of each
    guidance        classifier guidance (cond_fn); cfg: classifier-free guidance; interval:
                    guidance limited to a range of timesteps; guided: one run's combination
    loading         building networks from flags and loading their checkpoints for inference
    defaults        the sampling flag group
    shards, sharded resumable shards and the distributed shard loop; runner: the scripts' tail
    record, outputs the run record and the final npz / PNG / JSON files; logdir: output folder
    base_samples    low-resolution inputs of super-resolution sampling
    grid, trajectory  PNG contact sheets; denoising trajectories of any sampler
    interpolation, interp_sources, interpolation_run  image interpolation through the latents
"""
