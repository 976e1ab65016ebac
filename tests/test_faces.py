"""The faces: the original module paths keep every name they export, re-exported from the rooms."""

import importlib

import pytest


# Names each face exported when the rooms were introduced (public API plus the private helpers
# that tests and users reach for); a face may gain names, never lose one.
FACE_NAMES = {
    "dist_util": [
        "GPUS_PER_NODE", "SETUP_RETRY_COUNT", "SETUP_TIMEOUT_S", "_LOCAL_RANK_VARS", "_SINGLE",
        "_SIZE_VARS", "_SingleProcessComm", "_destroy_process_group", "_find_free_port",
        "_local_rank", "_local_rank_of", "_read_bytes", "dev", "get_rank", "get_world_size",
        "launched_by_mpi", "load_state_dict", "mpi_comm", "setup_dist", "sync_params",
    ],
    "fp16_util": [
        "INITIAL_LOG_LOSS_SCALE", "MixedPrecisionTrainer", "_CONV_TYPES", "_log", "_logger",
        "_logkv_mean", "check_overflow", "convert_module_to_f16", "convert_module_to_f32",
        "get_param_groups_and_shapes", "make_master_params", "master_params_to_model_params",
        "master_params_to_state_dict", "model_grads_to_master_grads", "param_grad_or_zeros",
        "state_dict_to_master_params", "unflatten_master_params", "zero_grad", "zero_master_grads",
    ],
    "gaussian_diffusion": [
        "GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "_check_enum",
        "_extract_into_tensor", "betas_for_alpha_bar", "diffusion_coefficients",
        "extract_into_tensor", "fixed_large_variance", "get_named_beta_schedule", "validate_betas",
    ],
    "image_datasets": [
        "IMAGE_EXTENSIONS", "ImageDataset", "ResumableLoader", "SuperResData", "_SeededItems",
        "_downscale_box_while_large", "_ignore_stop_signals", "_list_image_files_recursively",
        "_open_rgb", "center_crop_arr", "classes_from_file_names", "list_image_files_recursively",
        "load_data", "random_crop_arr",
    ],
    "losses": [
        "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood", "normal_kl",
    ],
    "nn": [
        "GroupNorm32", "SiLU", "avg_pool_nd", "checkpoint", "conv_nd", "linear", "mean_flat",
        "normalization", "scale_module", "timestep_embedding", "update_ema", "zero_module",
    ],
    "resample": [
        "LossAwareSampler", "LossSecondMomentResampler", "SCHEDULE_SAMPLERS", "ScheduleSampler",
        "UniformSampler", "UnknownNameError", "create_named_schedule_sampler",
    ],
    "respace": [
        "GaussianDiffusion", "SpacedDiffusion", "_WrappedModel", "_ddim_stride_steps",
        "_parse_section_counts", "space_timesteps",
    ],
    "script_util": [
        "CHANNEL_MULT_BY_SIZE", "CLASSIFIER_HEAD_CHANNELS", "EncoderUNetModel", "NUM_CLASSES",
        "SR_CHANNEL_MULT_BY_SIZE", "SuperResModel", "UNetModel", "_FALSE", "_SR_EXCLUDED", "_TRUE",
        "_attention_ds", "_channel_mult", "_check_classifier_heads", "add_dict_to_argparser",
        "args_to_dict", "classifier_and_diffusion_defaults", "classifier_defaults",
        "create_classifier", "create_classifier_and_diffusion", "create_gaussian_diffusion",
        "create_model", "create_model_and_diffusion", "diffusion_defaults",
        "model_and_diffusion_defaults", "parse_list_flag", "sr_create_model",
        "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults", "str2bool",
    ],
    "unet": [
        "AttentionBlock", "AttentionPool2d", "Downsample", "EncoderUNetModel", "QKVAttention",
        "QKVAttentionLegacy", "ResBlock", "SuperResModel", "TimestepBlock",
        "TimestepEmbedSequential", "UNetModel", "Upsample", "avg_pool_nd",
        "build_input_and_middle", "checkpoint", "conv_nd", "convert_module_to_f16",
        "convert_module_to_f32", "count_flops_attn", "linear", "normalization", "time_embed_mlp",
        "timestep_embedding", "zero_module",
    ],
}
ROOMS = ("runtime", "models", "diffusion", "data", "config", "training", "sampling", "scoring")


@pytest.mark.parametrize("face", sorted(FACE_NAMES))
def test_face_keeps_every_name(face):
    module = importlib.import_module(f"guided_diffusion.{face}")
    missing = [n for n in FACE_NAMES[face] if not hasattr(module, n)]
    assert not missing, f"guided_diffusion.{face} lost {missing}"


@pytest.mark.parametrize("face", sorted(FACE_NAMES))
def test_face_names_are_the_room_objects(face):
    # A face defines nothing itself: every class and function it exports lives in a room.
    module = importlib.import_module(f"guided_diffusion.{face}")
    for name in FACE_NAMES[face]:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None)
        if callable(obj) and home and home.startswith("guided_diffusion."):
            assert home.split(".")[1] in ROOMS, (face, name, home)


def test_diffusion_reference_method_names_remain():
    from guided_diffusion.gaussian_diffusion import GaussianDiffusion

    for name in ("_vb_terms_bpd", "_prior_bpd", "_predict_xstart_from_eps", "_predict_eps_from_xstart",
                 "_predict_xstart_from_xprev", "_scale_timesteps"):
        assert callable(getattr(GaussianDiffusion, name)), name
