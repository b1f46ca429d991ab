"""Generator and discriminators."""
from anycost_jax.models.generator import Generator, Mapping  # noqa: F401
