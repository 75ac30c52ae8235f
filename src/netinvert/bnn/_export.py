"""Export a trained :class:`BNN` to an exact integer network, and BNN run folders.

Every hidden neuron ``sign(BN(sum_j A_ij x_j))`` with ``x_j = 2 v_j - 1`` becomes
``h_i = [sum_j l_ij >= C_i]`` where ``l_ij`` is ``v_j`` or ``not v_j``. The threshold is not derived
from a formula with ceilings: the batch-norm module itself is evaluated (eval mode, float32) on
every integer pre-activation the neuron can take, so the exported net reproduces PyTorch's own
rounding, ties at zero (``sign(0) = +1``), negative scales (the inequality flips: literals are
negated) and zero scales (a constant neuron) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import RunFormatError, UnsafeCheckpointError
from ..runs import WEIGHTS_NAME, file_sha256, read_card, save_weights, write_card
from ._model import BNN, InputBinarizer

__all__ = ["IntegerBNN", "BNNRun", "export_bnn", "save_bnn_run", "load_bnn_run"]


@dataclass(frozen=True)
class IntegerBNN:
    """A BNN as integers: what the CNF encodes, and a numpy reference forward pass.

    Attributes
    ----------
    layers : tuple of (lits, bounds)
        Per hidden layer, ``lits`` int8 ``(H, n_prev)`` in {-1, 0, +1} (+1: the literal ``v_j``,
        -1: ``not v_j``, 0: absent) and ``bounds`` int64 ``(H,)``: ``h_i = [sum_j l_ij >= C_i]``.
    head : ndarray
        int8 ``(n_classes, n_last)`` in {-1, 0, +1}: ``score_k = sum_j W_kj (2 h_j - 1)``.
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    head: np.ndarray

    @property
    def n_inputs(self) -> int:
        return int(self.layers[0][0].shape[1]) if self.layers else int(self.head.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.head.shape[0])

    def hidden(self, bits: np.ndarray, *, start: int = 0) -> list[np.ndarray]:
        """Hidden bits of every layer from layer ``start`` on.

        ``bits`` ``(N, width)`` in {0, 1} are the inputs when ``start`` is 0, the first hidden
        layer's bits when it is 1, and so on: searches that change first-layer neurons directly
        (flip bounds, the counting DP) run the rest of the net from there.
        """
        # float32 matmuls use BLAS and are exact here: every sum is an integer below the fan-in, far under 2^24
        v = np.asarray(bits).astype(np.float32)
        out = []
        for lits, bounds in self.layers[start:]:
            pos = (lits == 1).astype(np.float32)
            neg = (lits == -1).astype(np.float32)
            count = v @ pos.T + (1 - v) @ neg.T
            v = (count >= bounds).astype(np.float32)
            out.append(v.astype(np.int64))
        return out

    def scores(self, bits: np.ndarray, *, start: int = 0) -> np.ndarray:
        """Integer class scores; ``bits`` and ``start`` as in :meth:`hidden`."""
        h = self.hidden(bits, start=start)
        last = h[-1] if h else np.asarray(bits).astype(np.int64)
        return (2 * last - 1) @ self.head.astype(np.int64).T

    def predict(self, bits: np.ndarray, *, start: int = 0) -> np.ndarray:
        """Labels; ``np.argmax`` takes the lowest index on ties, like ``torch.argmax``."""
        return self.scores(bits, start=start).argmax(1)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [{"lits": l.tolist(), "bounds": b.tolist()} for l, b in self.layers],
                "head": self.head.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntegerBNN:
        try:
            layers = tuple((np.asarray(x["lits"], dtype=np.int8).reshape(len(x["bounds"]), -1),
                            np.asarray(x["bounds"], dtype=np.int64)) for x in d["layers"])
            return cls(layers=layers, head=np.asarray(d["head"], dtype=np.int8))
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFormatError(f"The exported network in the card is malformed ({exc}); re-run 'netinvert bnn train'.") from None


def _fold_layer(weight: np.ndarray, bn: torch.nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``sign(BN(A x))`` into literals and integer bounds using BN's own float32 output."""
    a = weight.astype(np.int8)
    m = (a != 0).sum(1)  # literals per neuron
    s = np.arange(int(m.max()) + 1 if len(m) else 1)
    # S true literals give pre-activation y = 2 S - m_i (exact in float32)
    y = torch.tensor(2 * s[:, None] - m[None, :], dtype=torch.float32)
    with torch.no_grad():
        bn.eval()
        fires = (bn(y) >= 0).numpy()
    lits = np.empty_like(a)
    bounds = np.empty(len(m), dtype=np.int64)
    for i, mi in enumerate(m):
        f = fires[: mi + 1, i]
        if f.all() or not f.any():
            lits[i], bounds[i] = a[i], 0 if f.all() else mi + 1
        elif np.all(np.diff(f.astype(np.int8)) >= 0):  # fires for S >= C
            lits[i], bounds[i] = a[i], int(np.argmax(f))
        elif np.all(np.diff(f.astype(np.int8)) <= 0):  # fires for S <= s_max: count negations
            s_max = int(np.flatnonzero(f).max())
            lits[i], bounds[i] = -a[i], mi - s_max
        else:  # cannot happen for an affine map; refuse rather than export a wrong net
            raise RunFormatError(f"Neuron {i}: batch norm is not monotone in its input; cannot fold it.")
    return lits, bounds


def export_bnn(model: BNN) -> IntegerBNN:
    """Export ``model`` (eval mode) to an :class:`IntegerBNN` with the same argmax on every input."""
    model.eval()
    layers = []
    with torch.no_grad():
        for lin, bn in zip(model.linears, model.norms):
            layers.append(_fold_layer(lin.quantized_weight().numpy().astype(np.int8), bn))
        head = model.head.quantized_weight().numpy().astype(np.int8)
    return IntegerBNN(layers=tuple(layers), head=head)


@dataclass(frozen=True)
class BNNRun:
    """A BNN run folder, loaded: the PyTorch model, its input rule, the exported integer net and the card.

    Attributes
    ----------
    model : BNN
        In eval mode.
    binarizer : InputBinarizer
    net : IntegerBNN
        Checked equal to a fresh export of ``model``.
    card : dict
        The run's ``card.json``.
    run_dir : Path
    """

    model: BNN
    binarizer: InputBinarizer
    net: IntegerBNN
    card: dict[str, Any]
    run_dir: Path

    @property
    def weights_sha256(self) -> str:
        """sha256 of the run's ``weights.safetensors`` (what a query's card records; checked at load)."""
        recorded = self.card.get("weights_sha256")
        return recorded if isinstance(recorded, str) else file_sha256(self.run_dir / WEIGHTS_NAME)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the binarised input as an image (``(1, n_inputs)`` when unknown)."""
        _, h, w = self.card.get("input_image_shape", [1, 0, 0])
        shape = (h // self.binarizer.pool, w // self.binarizer.pool) if h * w else (1, self.net.n_inputs)
        return shape if shape[0] * shape[1] == self.net.n_inputs else (1, self.net.n_inputs)


def save_bnn_run(run_dir: str | Path, model: BNN, binarizer: InputBinarizer, net: IntegerBNN, card: dict[str, Any]) -> Path:
    """Write ``weights.safetensors`` (latent weights + BN state) and ``card.json`` (with the integer
    net and the sha256 of the weights file) into ``run_dir``; :func:`run_bnn_training` calls it
    inside a staged run folder."""
    run_dir = Path(run_dir)
    weights = save_weights(run_dir / WEIGHTS_NAME, model.state_dict(), metadata={"model": "bnn"})
    full = {"kind": "bnn", "model_params": model.get_params(),
            "binarizer": {"pool": binarizer.pool, "threshold": binarizer.threshold, "rule": binarizer.describe()},
            **card, "weights_sha256": file_sha256(weights), "integer_net": net.to_dict()}
    write_card(run_dir, full)
    return run_dir


def _checked_weights(run_dir: Path, card: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The run's weights, refused when they are not the bytes the card recorded or hold NaN/inf."""
    from ..models import check_finite, read_weights

    path = run_dir / WEIGHTS_NAME
    state, sha = read_weights(path)
    recorded = card.get("weights_sha256")
    if recorded is not None and sha != recorded:
        raise UnsafeCheckpointError(f"{path} changed since card.json was written: its sha256 is {sha}, the card records "
                                    f"{recorded}. The file was replaced, edited or damaged; restore it or re-run 'netinvert bnn train'.")
    check_finite(state, path)
    return state


def load_bnn_run(run_dir: str | Path) -> BNNRun:
    """Load a folder written by :func:`save_bnn_run` (``netinvert bnn train``) as a :class:`BNNRun`.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` or its card is missing.
    RunFormatError
        The card is not a BNN run's, or its integer net does not match the weights.
    UnsafeCheckpointError
        The weights are not the file the card recorded (sha256), or hold NaN or infinite values.
    """
    card = read_card(run_dir, required=("kind",))
    if card["kind"] != "bnn":  # before the missing keys, which would only say that less precisely
        raise RunFormatError(f"{run_dir} holds a {card['kind']!r} run; pass a folder written by 'netinvert bnn train'.")
    card = read_card(run_dir, required=("kind", "model_params", "binarizer", "integer_net"))
    p, b = card["model_params"], card["binarizer"]
    try:
        model = BNN(p["n_inputs"], tuple(p["hidden"]), p["n_classes"], ternary_delta=p.get("ternary_delta"),
                    fan_in=p.get("fan_in"), blocks=p.get("blocks"))  # ValueError: params no BNN has (an edited card)
        binarizer = InputBinarizer(pool=int(b["pool"]), threshold=float(b["threshold"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFormatError(f"{run_dir} does not hold a consistent BNN run ({exc}); re-run 'netinvert bnn train'.") from None
    weights = _checked_weights(Path(run_dir), card)  # UnsafeCheckpointError names the damage itself
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise RunFormatError(f"{run_dir} does not hold a consistent BNN run ({exc}); re-run 'netinvert bnn train'.") from None
    model.eval()
    net = IntegerBNN.from_dict(card["integer_net"])
    # The CNF is built from the card's integer net: a stale or edited card would silently encode
    # another network than the weights, so it must equal a fresh export of them.
    if export_bnn(model).to_dict() != net.to_dict():
        raise RunFormatError(f"The integer network in {run_dir}/card.json does not match its weights; re-run 'netinvert bnn train'.")
    return BNNRun(model, binarizer, net, card, Path(run_dir))
