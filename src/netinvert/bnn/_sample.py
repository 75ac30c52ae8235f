"""Near-uniform sampling of preimages with CMSGen (as the BNN inversion paper did), and marginals.

CMSGen samples over all variables; every auxiliary variable of our encodings is a function of the
inputs, so a near-uniform sample of models is a near-uniform sample of input preimages. CMSGen's own
time limit overshoots (METHODS.md section 5), so it runs in a child process that streams samples
back and is killed at the budget; the child dies with its parent and runs under its own CPU-time and
memory limits (:func:`netinvert.bnn.run_streaming`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._encode import Encoding
from ._model import BNN
from ._solve import SatResult, run_streaming

__all__ = ["SampleResult", "sample_preimages", "save_marginal_heatmap"]


@dataclass(frozen=True)
class SampleResult:
    """``samples`` (n, n_inputs) in {0, 1}; ``status`` UNSAT when the label has no preimage."""

    label: int
    samples: np.ndarray
    status: SatResult
    seconds: float

    @property
    def marginals(self) -> np.ndarray:
        """Per-input frequency of 1 among the samples."""
        return self.samples.mean(0) if len(self.samples) else np.full(self.samples.shape[1], np.nan)


def _cmsgen(clauses: list[list[int]], inputs: list[int], n: int, seed: int) -> Iterator[list[int] | None]:
    try:
        import pycmsgen
    except ImportError as exc:
        raise ImportError("Sampling needs pycmsgen: pip install pycmsgen") from exc
    s = pycmsgen.Solver(seed=seed)
    s.add_clauses(clauses)
    for _ in range(n):
        ok, model = s.solve()
        if not ok:
            yield None
            return
        yield [int(bool(model[v])) for v in inputs]


def sample_preimages(encoding: Encoding, label: int, n: int, *, time_s: float | None = 60.0, seed: int = 0,
                     model: BNN | None = None, memory_gb: float | None = None,
                     cpu_seconds: float | None = None) -> SampleResult:
    """Draw up to ``n`` near-uniform preimages of ``label`` (fewer if the budget runs out).

    Every sample is checked by the exported net and, if ``model`` is given, by PyTorch.
    ``memory_gb`` and ``cpu_seconds`` limit CMSGen's child process (``None``: 8 GiB beyond what it
    inherits at fork, and the budget plus ``max(10 s, budget / 10)``; see
    :func:`netinvert.bnn.run_streaming`).
    """
    if encoding.native:
        raise ValueError("CMSGen reads CNF only; encode with a clausal encoding, not 'native'.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"The 'n' parameter of sample_preimages must be an int in [1, inf). Got {n!r} instead.")
    k = encoding.net.n_classes
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < k:
        raise ValueError(f"The 'label' parameter of sample_preimages must be an int in [0, {k - 1}]. Got {label!r} instead.")
    clauses = [*encoding.formula.clauses, [encoding.outputs[int(label)]]]
    # CMSGen does not sample the inputs no clause mentions: uniform bits drawn here keep the
    # sample uniform over all inputs
    read = encoding.read_inputs()
    items, finished, seconds = run_streaming(_cmsgen, (clauses, [encoding.inputs[i] for i in read], int(n), int(seed)), time_s,
                                             memory_gb=memory_gb, cpu_seconds=cpu_seconds)
    samples = [x for x in items if x is not None]
    arr = np.random.default_rng(seed).integers(0, 2, (len(samples), len(encoding.inputs)), dtype=np.int8)
    arr[:, read] = np.asarray(samples, dtype=np.int8).reshape(len(samples), len(read))
    net = encoding.net
    torch_ok = model is None or not len(arr) or bool((model.predict(torch.as_tensor(arr)) == int(label)).all())
    if len(arr) and not (torch_ok and (net.predict(arr) == int(label)).all()):
        raise RuntimeError("A sampled input does not get its label in the exported network: encoding bug.")
    if None in items:
        status = SatResult.UNSAT
    elif len(samples) == n or finished:
        status = SatResult.SAT
    else:
        status = SatResult.UNKNOWN if not samples else SatResult.SAT
    return SampleResult(int(label), arr, status, seconds)


def save_marginal_heatmap(marginals: np.ndarray, shape: tuple[int, int], path: str | Path, *, title: str = "") -> Path:
    """Save the per-pixel probability of 1 as a heatmap PNG (0 = black/off, 1 = on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3.2, 3.0), dpi=100)
    im = ax.imshow(np.asarray(marginals, dtype=float).reshape(shape), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="P(pixel on)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
