"""
The reference implementation's spellings of GaussianDiffusion's helper methods.

The reference named them with a leading underscore, yet users call and override them. Here the
public name is the implementation; `ReferenceNames` binds the other spelling to the same
function in every class that defines one of the two, so a subclass overriding either spelling
changes what every caller gets (both names resolve to the override), and `super()` calls from
the override reach the parent's implementation.
"""

# The reference's private method names -> the public methods that implement them.
REFERENCE_ALIASES = {
    "_scale_timesteps": "scale_timesteps",
    "_predict_xstart_from_eps": "predict_xstart_from_eps",
    "_predict_xstart_from_xprev": "predict_xstart_from_xprev",
    "_predict_eps_from_xstart": "predict_eps_from_xstart",
    "_vb_terms_bpd": "vb_terms_bpd",
    "_prior_bpd": "prior_bpd",
}


class ReferenceNames:
    """Base class that keeps each REFERENCE_ALIASES pair bound to one function (see above)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        for private, public in REFERENCE_ALIASES.items():
            if private in own and public not in own:
                setattr(cls, public, own[private])
            elif public in own and private not in own:
                setattr(cls, private, own[public])
