"""Shared test set-up: fresh PRNG keys, strict dtype promotion, hypothesis settings."""

import itertools

import jax
import pytest
from hypothesis import settings

# JAX compiles on first use, so a property test's first example can take
# seconds; hypothesis's default 200 ms deadline would flag that as a failure.
settings.register_profile("grulm_edu", deadline=None)
settings.load_profile("grulm_edu")

_counter = itertools.count()


@pytest.fixture
def key():
    """A PRNG key that no other test receives."""
    return jax.random.key(1000 + next(_counter))


@pytest.fixture
def strict_promotion():
    """Make mixing dtypes without an explicit cast an error inside the test.

    Not global: optax itself raises an int32 step count to a float power,
    which strict promotion rejects. Rank promotion stays allowed, because
    adding a bias of shape (H,) to (B, T, H) is the idiom the notebooks teach.
    """
    with jax.numpy_dtype_promotion("strict"):
        yield
