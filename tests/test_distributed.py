"""Data-parallel training on 8 simulated CPU devices matches one device."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from grulm_edu.chars import CharTokenizer
    from grulm_edu.data import make_batches
    from grulm_edu.distributed import data_mesh
    from grulm_edu.model import ModelConfig, init_params
    from grulm_edu.training import TrainConfig, fit

    assert jax.device_count() == 8, jax.devices()
    text = "Once more unto the breach, dear friends, once more;\\n" * 40
    tokenizer = CharTokenizer.from_text(text)
    train = make_batches(tokenizer.encode(text), batch_size=16, seq_len=12)
    config = TrainConfig(batch_size=16, seq_len=12, num_steps=8, warmup_steps=2)
    params = init_params(jax.random.key(0), ModelConfig(tokenizer.vocab_size, 6, 12))

    single_state, single = fit(params, train, None, config)
    mesh = data_mesh()
    sharded_state, sharded = fit(params, train, None, config, mesh=mesh)

    sharding = jax.tree_util.tree_leaves(sharded_state.params)[0].sharding
    print("devices", len(sharding.device_set))
    np.testing.assert_allclose(sharded.loss, single.loss, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(sharded_state.params), jax.tree_util.tree_leaves(single_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    try:
        fit(params, make_batches(tokenizer.encode(text), batch_size=12, seq_len=12), None,
            TrainConfig(batch_size=12, seq_len=12, num_steps=2, warmup_steps=1), mesh=mesh)
    except ValueError as error:
        print("error:", error)
    """
)


def test_data_parallel_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "devices 8" in result.stdout
    assert "error: batch size 12 is not divisible by the 8 devices" in result.stdout
