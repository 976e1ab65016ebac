"""
Training: one loop (`loop.TrainLoopBase`) with a loss step per model kind.

    loop.py             the shared loop: DDP, resume, EMA, lr schedule, saves, stop, logging
    diffusion.py        diffusion and super-resolution loss step (`DiffusionTrainLoop`)
    classifier.py       noisy-classifier loss step (`ClassifierTrainLoop`)
    checkpoints.py      which checkpoint to resume; loading and writing checkpoint files
    state.py            checkpoint names and discovery; the side file for exact resume
    stopping.py         SIGTERM/SIGINT as a request to save and stop between steps
    mixed_precision.py  fp16 master weights and dynamic loss scaling
    flags.py            the training scripts' flag groups (defaults dicts)
    setup.py            what the scripts do around the loop (logger, seed, data, args.json)
"""
