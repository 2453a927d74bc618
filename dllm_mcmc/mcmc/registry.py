"""The registry of samplers: what a sampler *is*, said once.

One `SamplerSpec` per sampler holds its options (a frozen dataclass: types, defaults, ranges checked in its
``__post_init__``), its cost formula (sequential forward calls and rows of one unit, what ``--plan`` prints),
whether its draws are independent, and how the evaluation uses it:

- a **kernel** sampler (``kernel=`` a `dllm_mcmc.mcmc.kernel.TargetKernel` class: ``imh``, ``power``,
  ``stepwise``, ``pgibbs``, ``smc``) runs under `dllm_mcmc.sample`; an evaluation draws ``n`` samples of a
  prompt as ``n`` chains, each kept after ``warmup`` steps;
- a **batch** sampler (``draw=`` a function: ``decode``, ``best_of``, ``majority``, ``particles``) draws all
  ``n`` samples of every prompt of a unit in one call (`DrawRequest` → `Draw`).

`dllm_mcmc.sample`, the evaluation methods, ``--plan``, the lm-eval model and ``dllm-mcmc samplers`` read
only from here. A config's options are checked when it is read (`SamplerSpec.parse_options`), before any
model loads: an unknown option is refused naming the closest valid one.

**Adding a sampler** is one file (the kernel or draw function, its options dataclass and its cost function)
plus one entry: in `BUILTIN` for the package, or, from a separately installed package, an entry point in the
group ``dllm_mcmc.samplers`` whose object is a `SamplerSpec` (or a function returning one)::

    [project.entry-points."dllm_mcmc.samplers"]
    my_sampler = "my_package.sampler:SPEC"

It is then usable by name in ``sample(kernel=...)`` (kernels), eval configs, ``--plan`` and
``dllm-mcmc lm-eval``.

Example:
    >>> spec = get_sampler("imh")
    >>> spec.kernel.__name__, spec.independent, spec.parse_options({"proposal_batch": 2})
    ('IMH', False, IMHOptions(proposal_batch=2))
    >>> spec.parse_options({"propsal_batch": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: propsal_batch is not an option of sampler 'imh' (did you mean 'proposal_batch'?); its options: ...
    >>> from dllm_mcmc.mcmc.spec import UnitShape
    >>> spec.cost(spec.parse_options({"proposal_batch": 8}), UnitShape(steps=16, gen_length=16, samples=4, warmup=6))
    Cost(nfe=16, rows=512, scorings=1, scored=32)
"""

from __future__ import annotations

import difflib
import logging
from importlib.metadata import entry_points

from dllm_mcmc.mcmc.decoders import BEST_OF, DECODE, MAJORITY
from dllm_mcmc.mcmc.imh import IMH_SPEC
from dllm_mcmc.mcmc.particle_gibbs import PGIBBS_SPEC
from dllm_mcmc.mcmc.particles import PARTICLES
from dllm_mcmc.mcmc.power import POWER_SPEC
from dllm_mcmc.mcmc.smc import SMC_SPEC
from dllm_mcmc.mcmc.spec import SamplerSpec
from dllm_mcmc.mcmc.stepwise import STEPWISE_SPEC

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "get_sampler", "kernel_names", "reload_samplers", "samplers"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dllm_mcmc.samplers"
"""The entry-point group a separately installed package registers its `SamplerSpec` objects in."""

BUILTIN: dict[str, SamplerSpec] = {spec.name: spec for spec in (DECODE, BEST_OF, MAJORITY, PARTICLES, IMH_SPEC,
                                                                 POWER_SPEC, STEPWISE_SPEC, PGIBBS_SPEC, SMC_SPEC)}
"""The package's own samplers: one entry each (adding one is its file plus a line here)."""

_registry: dict[str, SamplerSpec] | None = None

def samplers() -> dict[str, SamplerSpec]:
    """Every sampler by name: the built-in ones, then those of installed packages (entry points of
    `ENTRY_POINT_GROUP`, loaded once). A plugin that fails to load, or that reuses a built-in name, is
    skipped with a warning naming it (it never hides a built-in sampler)."""
    global _registry
    if _registry is None:
        registry = dict(BUILTIN)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                spec = point.load()
                if callable(spec) and not isinstance(spec, SamplerSpec):
                    spec = spec()
                if not isinstance(spec, SamplerSpec):
                    raise TypeError(f"it gave {type(spec).__name__}, not a SamplerSpec")
            except Exception as error:  # a broken plugin must not break the package
                logger.warning("sampler plugin %r (%s) not loaded: %s", point.name, point.value, error)
                continue
            if spec.name in registry:
                logger.warning("sampler plugin %r (%s) not loaded: the name %r is taken", point.name, point.value,
                               spec.name)
                continue
            registry[spec.name] = spec
        _registry = registry
    return _registry


def reload_samplers() -> dict[str, SamplerSpec]:
    """Read the entry points again (after installing a plugin into a running interpreter)."""
    global _registry
    _registry = None
    return samplers()


def get_sampler(name: str) -> SamplerSpec:
    """The `SamplerSpec` named ``name``; ``ValueError`` naming the closest names otherwise."""
    registry = samplers()
    if isinstance(name, str) and name in registry:
        return registry[name]
    close = difflib.get_close_matches(str(name), list(registry), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"sampler {name!r} is unknown{hint}; choose one of {', '.join(registry)}")


def kernel_names() -> tuple[str, ...]:
    """The names of the kernel samplers (usable in ``sample(kernel=...)``)."""
    return tuple(name for name, spec in samplers().items() if spec.is_kernel)
