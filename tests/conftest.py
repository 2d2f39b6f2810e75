"""Shared test set-up: fresh PRNG keys and strict dtype promotion."""

import itertools

import jax
import pytest

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
