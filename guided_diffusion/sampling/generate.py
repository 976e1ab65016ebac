"""One reverse-diffusion batch with per-sample noise (see `seeds.PerSampleNoise`)."""


def generate(diffusion, model_fn, shape, noise, *, use_ddim=False, eta=0.0, clip_denoised=True,
             model_kwargs=None, cond_fn=None, device=None):
    """
    Run one reverse-diffusion batch with per-sample noise.

    :param diffusion: a (Spaced)GaussianDiffusion.
    :param model_fn: model(x, t, **model_kwargs).
    :param shape: (N, C, H, W).
    :param noise: a `seeds.PerSampleNoise` for the N samples.
    :param use_ddim: DDIM (with `eta`) instead of ancestral sampling.
    :return: float tensor [N, C, H, W], nominally in [-1, 1].
    """
    kwargs = dict(
        noise=noise.initial_noise(shape, device),
        clip_denoised=clip_denoised,
        cond_fn=cond_fn,
        model_kwargs=model_kwargs or {},
        device=device,
        progress=False,
        noise_fn=noise.noise_fn,
    )
    if use_ddim:
        return diffusion.ddim_sample_loop(model_fn, shape, eta=eta, **kwargs)
    return diffusion.p_sample_loop(model_fn, shape, **kwargs)


def check_eta(eta, use_ddim):
    """:raises ValueError: when a non-zero --eta is given without DDIM sampling."""
    if eta != 0 and not use_ddim:
        raise ValueError(f"--eta {eta} only applies to DDIM sampling: add --use_ddim True")
