"""
The diffusion process, independent of any network (it only calls `model(x, t, **model_kwargs)`).

    types             ModelMeanType, ModelVarType, LossType enums
    schedule          beta schedules and the float64 coefficient tables (notation table)
    likelihood        Gaussian KL and the discretized Gaussian decoder likelihood
    gaussian          GaussianDiffusion: q, p, guidance; the facade over the modules below
    sampling          ancestral and DDIM steps and the one reverse-process loop
    dpm_solver        multistep DPM-Solver++ (2M, 3M, 2M-SDE) on the x_0 prediction
    training_losses   training objectives and bits-per-dim
    respacing         space_timesteps and SpacedDiffusion (a subset of the steps)
    timestep_sampler  uniform and loss-aware sampling of training timesteps
    reference_names   the original's private method names on GaussianDiffusion
"""
