"""grulm_edu: a GRU language model in JAX, built up one lesson at a time.

Modules: `corpus` (Shakespeare plays, user text), `chars` (character
tokenizer), `data` (splits and batches), `losses`, `model`, `training`,
`generation`, `checkpoint`, and `cli` for ``python -m grulm_edu``.
"""

__version__ = "0.1.0"
