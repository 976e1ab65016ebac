"""
What every other room runs on; imports no other room.

    logger       key-value and text logging in the original's formats (outputs in log_formats)
    distributed  MPI ranks, torch.distributed, the one state-dict reader (weights_only=True)
    fileio       crash-safe writes: a temporary file beside the target, then a rename
    cli          the one script wrapper: error format and exit codes
    precision    --precision: native dtypes per device, autocast
    compile      --compile: torch.compile with an eager fallback
    kernels      attention and memory-layout choices per device class
    speed        the speed flags of the sampling and training scripts
"""
