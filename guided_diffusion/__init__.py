"""
Classifier-guided diffusion (Dhariwal & Nichol 2021): a from-scratch, checkpoint-compatible
re-implementation.

Map of the package. The twelve module paths of the original (`dist_util`, `fp16_util`,
`gaussian_diffusion`, `image_datasets`, `logger`, `losses`, `nn`, `resample`, `respace`,
`script_util`, `train_util`, `unet`) are faces: they keep the original's public names and
re-export them from the rooms below. Rooms never import a face.

    runtime/    logging, MPI + torch.distributed, crash-safe file writes, the CLI wrapper
    models/     network layers, attention, UNet blocks, UNet / SuperRes / encoder (classifier)
    diffusion/  schedules, the GaussianDiffusion process, sampling steps and solvers, training
                losses, likelihood terms, respacing, timestep samplers
    data/       image folders, the embedded digits, pixel conversion
    config/     defaults dicts -> flags -> factories; checkpoint loading with flag hints
    training/   the training loop (diffusion, classifier, super-resolution), resume state, stop
    sampling/   per-sample seeds, labels, guidance, generation, resumable shards, final files
    scoring/    bits per dimension over real images, judging labelled samples (a classifier, or the
                independent pixel k-NN judge)
    demo/       `make demo`: the recipe, its stages (the real scripts as subprocesses), the table

Data flow. Training: data/ yields (images in [-1, 1], cond) -> training/ draws t from a
diffusion/ timestep sampler -> `GaussianDiffusion.training_losses(model, x, t)` -> optimizer, EMA,
atomic checkpoints. Sampling: config/ builds model + diffusion from flags and loads the weights
-> sampling/ draws per-sample noise and labels -> the diffusion/ sampler loop calls
`model(x, t, **model_kwargs)` (and `cond_fn` for guidance) -> uint8 images -> shards -> npz + PNG.

Room imports (checked by tests/test_package_layout.py): a room imports only rooms listed above
it, so there are no cycles, and no room imports a face.

    models     -> runtime
    diffusion  -> models
    data       -> runtime
    config     -> runtime, models, diffusion
    training   -> runtime, models, diffusion, data, config
    sampling   -> runtime, models, diffusion, data, config
    scoring    -> runtime, data, sampling
    demo       -> runtime, diffusion, data, scoring
"""
