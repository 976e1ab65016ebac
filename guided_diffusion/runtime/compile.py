"""
`torch.compile` for the networks (`--compile True`), with its cost shown and an eager fallback.

`CompiledCall(module)` is a plain callable, not a module: the network itself is left untouched,
so its `state_dict()` keys (and hence checkpoints) stay those of the eager network, with no
`_orig_mod.` prefix. The first call traces and compiles, and its duration is logged next to the
second call's; where the compiler is missing or fails, one warning line is logged and every call
runs the eager network instead. Random numbers are drawn outside the networks (sampling noise,
timesteps), so compiling changes neither per-sample seeds nor which samples a shard holds.
"""

import time

import torch as th

from . import logger


def compile_unavailable():
    """:return: why torch.compile cannot run in this interpreter, or None when it can."""
    dynamo = getattr(th, "_dynamo", None)
    if dynamo is None or not hasattr(th, "compile"):
        return f"torch {th.__version__} has no torch.compile"
    if not dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version or platform"
    return None


class CompiledCall:
    """
    Call `module` through `torch.compile`, falling back to eager calls when compiling fails.

    :param module: the network (or any callable), called as module(*args, **kwargs).
    :param name: how logs refer to it ("model", "classifier").
    :param compile_kwargs: passed to torch.compile (e.g. backend, mode).
    """

    def __init__(self, module, name="model", **compile_kwargs):
        self.eager = module
        self.name = name
        self.compiled = None
        self.first_call_s = None
        self.second_call_s = None
        reason = compile_unavailable()
        if reason is not None:
            self._fall_back(f"unavailable: {reason}")
        else:
            self.compiled = th.compile(module, **compile_kwargs)

    @property
    def is_compiled(self):
        """Whether calls go through the compiled graph (False after a fallback)."""
        return self.compiled is not None

    def _fall_back(self, reason):
        self.compiled = None
        logger.warn(f"compile: {self.name}: torch.compile {reason}; running eager")

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the eager call below re-raises genuine input errors
            out = self.eager(*args, **kwargs)
            self._fall_back(f"failed with {_root_cause(exc)}")
            return out
        self._record(time.perf_counter() - start)
        return out

    def _record(self, seconds):
        if self.first_call_s is None:
            self.first_call_s = seconds
        elif self.second_call_s is None:
            self.second_call_s = seconds
            logger.log(
                f"compile: {self.name}: first call {self.first_call_s:.2f} s (tracing and compiling), "
                f"second call {seconds:.3f} s"
            )


def _root_cause(exc):
    """'Type: first line' of the innermost cause (dynamo wraps backend errors in its own)."""
    while exc.__cause__ is not None or getattr(exc, "inner_exception", None) is not None:
        exc = exc.__cause__ or exc.inner_exception
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else 'no message'}"


def maybe_compile(module, enabled, name="model", **compile_kwargs):
    """
    :return: `CompiledCall(module, name)` when `enabled`, else `module` itself.
    """
    if not enabled:
        return module
    return CompiledCall(module, name=name, **compile_kwargs)
