"""
The samplers every sampling script and `generate_samples` offer, and one batch run with each.

    ancestral    DDPM ancestral steps (`p_sample_loop`), the original's default
    ddim         DDIM (`ddim_sample_loop`), with --eta (0: deterministic)
    dpm++2m      multistep DPM-Solver++ of order 2 on x0 (`dpm_solver_sample_loop`), deterministic
    dpm++3m      the same of order 3
    dpm++2m-sde  the stochastic DPM-Solver++(2M) variant

Every sampler steps over the diffusion's own (respaced) timesteps, so `--timestep_respacing 20`
means 20 model evaluations for each. All per-step noise comes from the per-sample streams of
`seeds.PerSampleNoise`, so results do not depend on batch composition or the number of ranks.
"""

from ..diffusion.sampling import final_sample

SAMPLERS = ("ancestral", "ddim", "dpm++2m", "dpm++3m", "dpm++2m-sde")
AUTO = "auto"
_DPM_SOLVER = {"dpm++2m": (2, False), "dpm++3m": (3, False), "dpm++2m-sde": (2, True)}  # (order, sde)


def resolve_sampler(sampler, use_ddim=False, eta=0.0):
    """
    Validate the --sampler / --use_ddim / --eta combination.

    :param sampler: one of SAMPLERS, or "auto": the original's choice (ddim with --use_ddim
                    True, else ancestral).
    :param use_ddim: the original's --use_ddim flag.
    :param eta: DDIM's eta (>= 0).
    :return: the sampler's name, one of SAMPLERS.
    :raises ValueError: for an unknown sampler (listing the choices), --use_ddim True with
                        another sampler, or a non-zero eta with a sampler that has none.
    """
    if sampler == AUTO:
        sampler = "ddim" if use_ddim else "ancestral"
    if sampler not in SAMPLERS:
        raise ValueError(f"--sampler {sampler!r} is not one of: {', '.join((AUTO,) + SAMPLERS)}")
    if use_ddim and sampler != "ddim":
        raise ValueError(f"--use_ddim True asks for DDIM but --sampler is {sampler}: drop one of them")
    if eta < 0:
        raise ValueError(f"--eta must be >= 0, got {eta}")
    if eta != 0 and sampler == "ancestral":
        raise ValueError(f"--eta {eta} only applies to DDIM sampling: add --use_ddim True (or --sampler ddim)")
    if eta != 0 and sampler != "ddim":
        kind = "stochastic by construction" if _DPM_SOLVER[sampler][1] else "a deterministic solver"
        raise ValueError(f"--eta {eta} does not apply to --sampler {sampler} ({kind}); "
                         f"only --sampler ddim takes --eta")
    return sampler


def resolve_sampler_flags(args):
    """
    Settle a sampling script's --sampler from --sampler, --use_ddim and --eta, and record it in
    `args` (`args.sampler` the name, `args.use_ddim` whether it is ddim), so the run record and
    the shard key name the sampler actually used.

    :return: the sampler's name.
    """
    args.sampler = resolve_sampler(args.sampler, args.use_ddim, args.eta)
    args.use_ddim = args.sampler == "ddim"
    return args.sampler


def run_sampler(diffusion, sampler, model_fn, shape, noise, *, eta=0.0, clip_denoised=True,
                model_kwargs=None, cond_fn=None, device=None, watch=None):
    """
    Run one reverse-diffusion batch with per-sample noise.

    :param diffusion: a (Spaced)GaussianDiffusion.
    :param sampler: one of SAMPLERS (see `resolve_sampler`).
    :param model_fn: model(x, t, **model_kwargs).
    :param shape: (N, C, H, W).
    :param noise: a `seeds.PerSampleNoise` for the N samples.
    :param eta: DDIM's eta (ddim only).
    :param cond_fn: classifier guidance cond_fn(x, t, **model_kwargs), or None.
    :param watch: optional callable(progressive loop) -> the same step dicts, e.g.
                  `trajectory.TrajectoryRecorder.watch`; it sees every step without changing it.
    :return: float tensor [N, C, H, W], nominally in [-1, 1].
    """
    kwargs = dict(
        noise=noise.initial_noise(shape, device),
        clip_denoised=clip_denoised,
        cond_fn=cond_fn,
        model_kwargs=model_kwargs or {},
        device=device,
        progress=False,
    )
    # the *_sample_loop functions are final_sample(*_progressive), so this is the same loop
    if sampler == "ancestral":
        loop = diffusion.p_sample_loop_progressive(model_fn, shape, noise_fn=noise.noise_fn, **kwargs)
    elif sampler == "ddim":
        loop = diffusion.ddim_sample_loop_progressive(model_fn, shape, eta=eta, noise_fn=noise.noise_fn, **kwargs)
    elif sampler in _DPM_SOLVER:
        order, sde = _DPM_SOLVER[sampler]
        if sde:
            kwargs["noise_fn"] = noise.noise_fn
        loop = diffusion.dpm_solver_sample_loop_progressive(model_fn, shape, order=order, sde=sde, **kwargs)
    else:
        raise ValueError(f"sampler {sampler!r} is not one of: {', '.join(SAMPLERS)}")
    return final_sample(loop if watch is None else watch(loop))
