"""The training flag groups: the original's defaults, and names the loops accept."""

import inspect

from guided_diffusion.training import flags as train_flags
from guided_diffusion.training.classifier import ClassifierTrainLoop
from guided_diffusion.training.diffusion import DiffusionTrainLoop


def test_diffusion_training_defaults_are_the_originals():
    assert train_flags.diffusion_training_defaults() == dict(
        data_dir="", schedule_sampler="uniform", lr=1e-4, weight_decay=0.0, lr_anneal_steps=0, batch_size=1,
        microbatch=-1, ema_rate="0.9999", log_interval=10, save_interval=10000, resume_checkpoint="",
        use_fp16=False, fp16_scale_growth=1e-3)


def test_classifier_training_defaults_are_the_originals():
    assert train_flags.classifier_training_defaults() == dict(
        data_dir="", val_data_dir="", noised=True, iterations=150000, lr=3e-4, weight_decay=0.0, anneal_lr=False,
        batch_size=4, microbatch=-1, schedule_sampler="uniform", resume_checkpoint="", log_interval=10,
        eval_interval=5, save_interval=10000)


def test_loop_flags_are_flags_and_loop_arguments():
    for names, defaults, loop in (
        (train_flags.DIFFUSION_LOOP_FLAGS, train_flags.diffusion_training_defaults(), DiffusionTrainLoop),
        (train_flags.CLASSIFIER_LOOP_FLAGS, train_flags.classifier_training_defaults(), ClassifierTrainLoop),
    ):
        parameters = inspect.signature(loop.__init__).parameters
        assert set(names) <= set(defaults) and set(names) <= set(parameters)


def test_run_flags_do_not_collide_with_the_groups():
    run = set(train_flags.run_defaults())
    assert run == {"output_dir", "seed", "random_flip"}
    assert not run & set(train_flags.diffusion_training_defaults())
    assert not run & set(train_flags.classifier_training_defaults())
