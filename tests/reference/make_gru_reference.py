"""Write PyTorch nn.GRU reference values for the JAX GRU tests.

The script builds a single-layer float64 ``torch.nn.GRU`` for three fixed cases
("scalar", "small" and "medium"). It writes them to ``gru_reference.json`` next
to this file. Each case contains the parameters, inputs, hidden states, a scalar
loss and the autograd gradients of that loss. The loss is
``0.5 * sum(h_seq * g)`` for a fixed array ``g`` that is stored with the case.

The stored values were produced with PyTorch 2.13.0 (CPU build). To regenerate
them, run this from the repository root in an environment with torch 2.13.0
and numpy (not the JAX environment, because the two frameworks are kept in
separate environments)::

    python tests/reference/make_gru_reference.py

All random draws come from per-case seeded generators, and torch runs on one
CPU thread, so repeated runs on the same machine write identical files.
"""

import json
from pathlib import Path

import torch

OUTPUT_PATH = Path(__file__).with_name("gru_reference.json")
CONVENTION = (
    "PyTorch nn.GRU, gate order r, z, n; "
    "n = tanh(W_in x + b_in + r * (W_hn h + b_hn))"
)
# Hidden states of the "scalar" case, computed by hand from the PyTorch equations.
SCALAR_EXPECTED_H_SEQ = [0.624050, 0.612929]
SCALAR_TOLERANCE = 1e-6


def build_gru(input_size, hidden_size, params):
    """Build a float64 nn.GRU whose weights and biases are copied from params."""
    gru = torch.nn.GRU(
        input_size, hidden_size, batch_first=True, dtype=torch.float64
    )
    with torch.no_grad():
        gru.weight_ih_l0.copy_(params["W_ih"])
        gru.weight_hh_l0.copy_(params["W_hh"])
        gru.bias_ih_l0.copy_(params["b_ih"])
        gru.bias_hh_l0.copy_(params["b_hh"])
    return gru


def run_case(name, params, x, h0, g):
    """Run the GRU forward and backward and return the case as a JSON-ready dict."""
    batch, steps, input_size = x.shape
    hidden_size = h0.shape[1]
    gru = build_gru(input_size, hidden_size, params)

    x = x.clone().requires_grad_(True)
    h0 = h0.clone().requires_grad_(True)
    # nn.GRU expects h0 with a leading num_layers axis of size 1.
    h_seq, h_n = gru(x, h0.unsqueeze(0))
    loss = 0.5 * torch.sum(h_seq * g)
    loss.backward()

    return {
        "name": name,
        "input_size": input_size,
        "hidden_size": hidden_size,
        "batch": batch,
        "steps": steps,
        "W_ih": params["W_ih"].tolist(),
        "W_hh": params["W_hh"].tolist(),
        "b_ih": params["b_ih"].tolist(),
        "b_hh": params["b_hh"].tolist(),
        "x": x.detach().tolist(),
        "h0": h0.detach().tolist(),
        "h_seq": h_seq.detach().tolist(),
        "h_last": h_n[0].detach().tolist(),
        "g": g.tolist(),
        "loss": loss.item(),
        "grad_W_ih": gru.weight_ih_l0.grad.tolist(),
        "grad_W_hh": gru.weight_hh_l0.grad.tolist(),
        "grad_b_ih": gru.bias_ih_l0.grad.tolist(),
        "grad_b_hh": gru.bias_hh_l0.grad.tolist(),
        "grad_x": x.grad.tolist(),
        "grad_h0": h0.grad.tolist(),
    }


def make_scalar_case():
    """Return the hand-checkable case with E = H = B = 1 and T = 2."""
    params = {
        "W_ih": torch.tensor([[0.5], [0.5], [0.5]], dtype=torch.float64),
        "W_hh": torch.tensor([[1.0], [1.0], [2.0]], dtype=torch.float64),
        "b_ih": torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64),
        "b_hh": torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
    }
    x = torch.tensor([[[1.0], [-1.0]]], dtype=torch.float64)
    h0 = torch.tensor([[0.5]], dtype=torch.float64)
    g = torch.ones(1, 2, 1, dtype=torch.float64)
    return run_case("scalar", params, x, h0, g)


def make_random_case(name, input_size, hidden_size, batch, steps, weight_std, seed):
    """Return a case with normal(0, weight_std) parameters drawn from a fixed seed.

    Inputs x and the loss weights g are standard normal. The initial state h0
    is uniform in (-1, 1), the interval that every later hidden state lies in.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std=1.0):
        return std * torch.randn(*shape, generator=generator, dtype=torch.float64)

    params = {
        "W_ih": normal(3 * hidden_size, input_size, std=weight_std),
        "W_hh": normal(3 * hidden_size, hidden_size, std=weight_std),
        "b_ih": normal(3 * hidden_size, std=weight_std),
        "b_hh": normal(3 * hidden_size, std=weight_std),
    }
    x = normal(batch, steps, input_size)
    h0 = 2.0 * torch.rand(batch, hidden_size, generator=generator, dtype=torch.float64) - 1.0
    g = normal(batch, steps, hidden_size)
    return run_case(name, params, x, h0, g)


def check_scalar_case(case):
    """Raise AssertionError if the scalar case does not match the hand-computed states."""
    h_seq = [step[0] for step in case["h_seq"][0]]
    for step, (actual, expected) in enumerate(zip(h_seq, SCALAR_EXPECTED_H_SEQ)):
        assert abs(actual - expected) < SCALAR_TOLERANCE, (
            f"scalar case: hidden state at step {step} is {actual:.6f}, "
            f"expected {expected:.6f}; check the gate order and where b_hn is added"
        )


def main():
    # Use one thread so the summation order in torch's CPU kernels does not
    # depend on the machine's core count.
    torch.set_num_threads(1)

    scalar = make_scalar_case()
    check_scalar_case(scalar)
    cases = [
        scalar,
        make_random_case("small", 3, 4, 2, 5, weight_std=0.5, seed=0),
        make_random_case("medium", 8, 16, 3, 12, weight_std=0.3, seed=1),
    ]

    reference = {
        "torch_version": torch.__version__,
        "convention": CONVENTION,
        "cases": cases,
    }
    with OUTPUT_PATH.open("w") as file:
        json.dump(reference, file, indent=1)
        file.write("\n")

    h_seq = [step[0] for step in scalar["h_seq"][0]]
    print(f"wrote {OUTPUT_PATH}")
    print("scalar h_seq: " + ", ".join(f"{h:.6f}" for h in h_seq))


if __name__ == "__main__":
    main()
