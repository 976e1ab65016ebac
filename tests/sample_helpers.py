"""Tiny checkpoints and a subprocess runner shared by the sampling-script tests."""

import os
import subprocess
import sys

import torch as th

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL_FLAGS = dict(image_size=8, num_channels=32, num_res_blocks=1, attention_resolutions="4",
                   channel_mult="1,2", num_heads=1, diffusion_steps=100, timestep_respacing="4")
CLASSIFIER_FLAGS = dict(classifier_width=32, classifier_depth=1, classifier_attention_resolutions="4",
                        classifier_channel_mult="1,2")
SR_FLAGS = dict(large_size=32, small_size=8, num_channels=32, num_res_blocks=1, attention_resolutions="8",
                num_heads=1, diffusion_steps=100, timestep_respacing="3")


def one_thread():
    """
    Generator for a module fixture: run torch on one thread, then restore. On a shared 2-core box
    a second intra-op thread makes tiny convolutions tens of times slower (spin-waiting).
    """
    before = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(before)


def flag_list(flags):
    out = []
    for k, v in flags.items():
        out += [f"--{k}", str(v)]
    return out


def perturb(module, seed, std):
    """Add seeded noise of scale `std` to every parameter, so that zero-initialised layers act."""
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for p in module.parameters():
            p.add_(std * th.randn(p.shape, generator=g))
    return module


def perturb_and_save(module, path, seed, std):
    """`perturb` the module and save its state_dict at `path`."""
    th.save(perturb(module, seed, std).state_dict(), path)
    return module


def save_perturbed(folder, **nets):
    """
    `perturb_and_save` each network as folder/<name>.pt.

    :param nets: name -> (module, seed, std).
    :return: name -> path (str).
    """
    paths = {}
    for name, (module, seed, std) in nets.items():
        paths[name] = os.path.join(str(folder), f"{name}.pt")
        perturb_and_save(module, paths[name], seed, std)
    return paths


class LinearClassifier(th.nn.Module):
    """logits = W x.flatten() with a seeded [k, in_dim] W; ignores t (its log-softmax gradient is
    closed form). `calls` counts the forward passes."""

    def __init__(self, in_dim, k):
        super().__init__()
        self.w = th.nn.Parameter(th.randn(k, in_dim, generator=th.Generator().manual_seed(0)))
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return x.flatten(1) @ self.w.t()


def perturbed_nets():
    """:return: (model, classifier, diffusion): a tiny learned-sigma UNet and classifier, seeded,
    `perturb`ed and in eval mode."""
    th.manual_seed(0)
    model, diffusion = build_model(learn_sigma=True)
    classifier = build_classifier()
    return perturb(model, 1, 0.02).eval(), perturb(classifier, 2, 0.02).eval(), diffusion


def build_model(**overrides):
    from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults

    flags = model_and_diffusion_defaults()
    flags.update(MODEL_FLAGS)
    flags.update(overrides)
    return create_model_and_diffusion(**flags)


def build_classifier(**overrides):
    from guided_diffusion.script_util import classifier_defaults, create_classifier

    flags = classifier_defaults()
    flags.update(image_size=MODEL_FLAGS["image_size"], **CLASSIFIER_FLAGS)
    flags.update(overrides)
    return create_classifier(**flags)


def build_sr(**overrides):
    from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults

    flags = sr_model_and_diffusion_defaults()
    flags.update(SR_FLAGS)
    flags.update(overrides)
    return sr_create_model_and_diffusion(**flags)


def run_in_process(name, args, monkeypatch, capsys, env=None, folder="scripts"):
    """
    Run <folder>/<name> as __main__ inside this interpreter (same code path as the CLI, without
    the interpreter and torch start-up). :return: (exit code, stdout, stderr).
    """
    import runpy

    monkeypatch.setattr(sys, "argv", [name] + [str(a) for a in args])
    monkeypatch.delenv("OPENAI_LOGDIR", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    from guided_diffusion import logger

    capsys.readouterr()
    code = 0
    previous = logger.Logger.CURRENT
    logger.Logger.CURRENT = None  # the script's configure() must not close the caller's logger
    try:
        runpy.run_path(os.path.join(REPO, folder, name), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        # close the script's logger (it holds the captured stdout) and restore the previous one
        if logger.Logger.CURRENT is not None and logger.Logger.CURRENT is not previous:
            logger.Logger.CURRENT.close()
        logger.Logger.CURRENT = previous
    for k in env or {}:
        monkeypatch.delenv(k)
    out, err = capsys.readouterr()
    return code, out, err


def run_script(name, args, env=None, timeout=300, launcher=()):
    """Run scripts/<name> as a subprocess (one torch thread, no progress bar noise)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    full_env.pop("OPENAI_LOGDIR", None)
    full_env.update(env or {})
    cmd = list(launcher) + [sys.executable, os.path.join(REPO, "scripts", name)] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
