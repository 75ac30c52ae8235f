"""OOD detectors: post-hoc scores of a trained classifier, higher = more out-of-distribution.

The shape follows pytorch-ood (https://github.com/kkirchheim/pytorch-ood, Kirchheim et al., CVPR-W
2022): a detector holds the model, ``fit(data) -> self`` learns what it needs from
in-distribution data (a no-op for the logit-only scores), ``predict(x)`` scores images, and the
scores that depend on the logits alone are also a pure ``@staticmethod score(logits)``, so a
pipeline that already holds logits can score them without the model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import bad_param
from ..._registry import Registry
from ...data import Dataset
from ...exceptions import NotFittedError, UnsupportedLayerError

__all__ = [
    "DETECTORS",
    "Detector",
    "Energy",
    "GarbageProbability",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "Uncertainty",
    "list_detectors",
    "make_detector",
    "register_detector",
]

#: Images per forward pass in ``fit`` and ``predict``.
BATCH_SIZE = 512


# --------------------------------------------------------------------------- checks and helpers


def _check_positive_int(value: Any, name: str, owner: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise bad_param(owner, name, "an int in [1, inf)", value)
    return int(value)


def _check_positive_float(value: Any, name: str, owner: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise bad_param(owner, name, "a float in (0, inf)", value)
    return float(value)


def _check_logits(logits: Any, owner: str) -> torch.Tensor:
    """``logits`` as a floating ``(N, K)`` tensor with ``K >= 2``, or a ValueError naming ``owner``."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{owner}.score expects logits of shape (N, K) with K >= 2. Got {got} instead.")
    return logits if logits.is_floating_point() else logits.float()


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless module)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def _apply(model: nn.Module | None, x: Any, fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
           owner: str) -> torch.Tensor:
    """``fn`` over batches of ``x`` in eval mode on the model's device (the mode is restored); CPU result."""
    if model is None:
        raise ValueError(
            f"{owner} was built without a model, so it cannot score images; pass the classifier to the "
            f"constructor (make_detector(name, model)), or score logits or features directly."
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{owner}.predict expects a non-empty batch of images of shape (N, C, H, W). Got {got} instead.")
    batch_size = _check_positive_int(batch_size, "batch_size", owner)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        device = _model_device(model)
        out = [fn(x[i : i + batch_size].to(device)).detach().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def _feature_fn(model: nn.Module | None, owner: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The penultimate-feature map of a netinvert classifier or a :class:`HookedClassifier`."""
    forward_with_features = getattr(model, "forward_with_features", None)
    if model is not None and forward_with_features is None:
        raise UnsupportedLayerError(
            f"{owner} needs penultimate features, but {type(model).__name__} has no forward_with_features(); "
            "use a netinvert classifier, or wrap the module in netinvert.models.HookedClassifier "
            "(feature_layer names the layer to read)."
        )
    return lambda batch: forward_with_features(batch)[1].flatten(1)


def _labelled_batches(data: Any, batch_size: int, owner: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of a netinvert Dataset (its train split), a pair of tensors, or an iterable of pairs."""
    if isinstance(data, Dataset):
        data = (data.x_train, data.y_train)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"{owner}.fit got {len(x)} images but {len(y)} labels; they must match.")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{owner}.fit expects a netinvert Dataset, a pair (x, y) of tensors, or an iterable of (x, y) batches "
            f"(e.g. a DataLoader). Got {type(data).__name__} instead."
        )
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2
                and isinstance(item[0], torch.Tensor) and isinstance(item[1], torch.Tensor)):
            raise TypeError(f"{owner}.fit expects batches (x, y) of tensors. Got a {type(item).__name__} batch instead.")
        yield item[0], item[1]


# --------------------------------------------------------------------------- the registry

DETECTORS: Registry[type[Detector]] = Registry("OOD detector")


def register_detector(name: str) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator registering a :class:`Detector` subclass under ``name`` (also set as its ``name``)."""

    def decorator(cls: type[Detector]) -> type[Detector]:
        cls.name = name
        DETECTORS.add(name, cls)
        return cls

    return decorator


def make_detector(name: str, model: nn.Module | None = None, **params: Any) -> Detector:
    """Build a registered detector for ``model``.

    Parameters
    ----------
    name : str
        A name from :func:`list_detectors`: ``msp``, ``max-logit``, ``energy``, ``mahalanobis``,
        ``garbage``, ``ue``.
    model : nn.Module, optional
        The classifier, mapping ``(N, C, H, W)`` images in [0, 1] to logits ``(N, K)``. ``mahalanobis``
        also needs ``forward_with_features`` (every netinvert classifier and
        :class:`~netinvert.models.HookedClassifier` has it). ``None`` builds a detector that only
        scores logits (or features).
    **params
        The detector's hyper-parameters, e.g. ``t`` for ``energy`` (see each class).

    Returns
    -------
    Detector

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the valid names.
    TypeError
        If a parameter is unknown to the detector.

    Examples
    --------
    >>> import torch
    >>> det = make_detector("energy", None, t=1.0)
    >>> det.predict_logits(torch.zeros(1, 2))
    tensor([-0.6931])
    """
    return DETECTORS.get(name)(model, **params)


def list_detectors() -> list[str]:
    """Registered detector names, sorted."""
    return DETECTORS.names()


# --------------------------------------------------------------------------- base class


class Detector:
    """Base of the OOD detectors: scores where higher means more out-of-distribution.

    Subclasses that score logits implement the pure ``@staticmethod score(logits, ...)`` and list
    its keyword hyper-parameters in :meth:`_params`; :meth:`predict` runs the model in eval mode
    without gradients, in batches, on the model's device, and returns CPU float32 scores.

    Parameters
    ----------
    model : nn.Module or None
        The classifier (images ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``).
    batch_size : int, default 512
        Images per forward pass.
    """

    #: Registry name, set by :func:`register_detector`.
    name: ClassVar[str] = ""
    #: Whether :meth:`fit` must see in-distribution data before :meth:`predict`.
    requires_fit: ClassVar[bool] = False

    def __init__(self, model: nn.Module | None = None, *, batch_size: int = BATCH_SIZE) -> None:
        self.model = model
        self.batch_size = batch_size

    def _params(self) -> dict[str, Any]:
        """The hyper-parameters besides ``batch_size`` (for logit scores, the keywords of :meth:`score`)."""
        return {}

    def get_params(self) -> dict[str, Any]:
        """Name and constructor parameters (plain JSON, for run cards): ``make_detector(**...)`` rebuilds it."""
        return {"name": self.name, **self._params(), "batch_size": self.batch_size}

    def fit(self, data: Any = None) -> Detector:
        """Learn from in-distribution data; logit-only scores need nothing, so this returns ``self``."""
        return self

    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """OOD score ``(N,)`` of logits ``(N, K)``."""
        raise NotImplementedError

    def predict_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """:meth:`score` of ``logits`` with this detector's hyper-parameters."""
        return self.score(logits, **self._params())

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """OOD scores ``(N,)`` (float32, CPU) of images ``x`` of shape ``(N, C, H, W)`` in [0, 1]."""
        logits = _apply(self.model, x, self.model, self.batch_size, type(self).__name__)
        return self.predict_logits(logits).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "name")
        return f"{type(self).__name__}({params})"


# --------------------------------------------------------------------------- logit scores


@register_detector("msp")
class MaxSoftmax(Detector):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017, arXiv 1610.02136).

    .. math:: s(x) = -\\max_k \\operatorname{softmax}(f(x))_k

    pytorch-ood: ``MaxSoftmax``. Scores lie in ``[-1, -1/K]``.

    Examples
    --------
    >>> import torch
    >>> MaxSoftmax.score(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    tensor([-0.5000, -0.7500])
    """

    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """``-max softmax`` of logits ``(N, K)``; shape ``(N,)``."""
        logits = _check_logits(logits, "MaxSoftmax")
        return -torch.softmax(logits, 1).amax(1)


@register_detector("max-logit")
class MaxLogit(Detector):
    """Maximum logit (Hendrycks et al., ICML 2022, arXiv 1911.11132).

    .. math:: s(x) = -\\max_k f(x)_k

    pytorch-ood: ``MaxLogit``.

    Examples
    --------
    >>> import torch
    >>> MaxLogit.score(torch.tensor([[1.0, 3.0, 2.0]]))
    tensor([-3.])
    """

    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """``-max logit`` of logits ``(N, K)``; shape ``(N,)``."""
        return -_check_logits(logits, "MaxLogit").amax(1)


@register_detector("energy")
class Energy(Detector):
    """Free energy of the logits (Liu et al., NeurIPS 2020, arXiv 2010.03759).

    .. math:: s(x) = E(x; T) = -T \\log \\sum_k e^{f(x)_k / T}

    pytorch-ood: ``EnergyBased``.

    Parameters
    ----------
    model : nn.Module or None
    t : float, default 1.0
        The temperature :math:`T > 0` (the paper uses 1).
    batch_size : int, default 512

    Examples
    --------
    >>> import torch
    >>> Energy.score(torch.zeros(1, 2))
    tensor([-0.6931])
    """

    def __init__(self, model: nn.Module | None = None, *, t: float = 1.0, batch_size: int = BATCH_SIZE) -> None:
        super().__init__(model, batch_size=batch_size)
        self.t = t

    def _params(self) -> dict[str, Any]:
        return {"t": self.t}

    @staticmethod
    def score(logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        """``-T * logsumexp(logits / T)`` of logits ``(N, K)``; shape ``(N,)``."""
        logits = _check_logits(logits, "Energy")
        t = _check_positive_float(t, "t", "Energy")
        return -t * torch.logsumexp(logits / t, 1)


@register_detector("garbage")
class GarbageProbability(Detector):
    """Probability of the garbage class of an ``(n+1)``-class model (arXiv 2411.17777, 2407.18002).

    The classifier is trained with an extra class holding noise and inverted samples; its softmax
    probability is the OOD score:

    .. math:: s(x) = \\operatorname{softmax}(f(x))_g

    with :math:`g` the garbage class, the last one by convention.

    Parameters
    ----------
    model : nn.Module or None
        An ``(n+1)``-class classifier.
    garbage_index : int, default -1
        Index of the garbage class among the ``K = n + 1`` logits (negative counts from the end).
    batch_size : int, default 512

    Examples
    --------
    >>> import torch
    >>> GarbageProbability.score(torch.tensor([[0.2, 0.3, 0.5]]).log())
    tensor([0.5000])
    """

    def __init__(self, model: nn.Module | None = None, *, garbage_index: int = -1,
                 batch_size: int = BATCH_SIZE) -> None:
        super().__init__(model, batch_size=batch_size)
        self.garbage_index = garbage_index

    def _params(self) -> dict[str, Any]:
        return {"garbage_index": self.garbage_index}

    @staticmethod
    def score(logits: torch.Tensor, garbage_index: int = -1) -> torch.Tensor:
        """``softmax(logits)[:, garbage_index]`` of logits ``(N, K)``; shape ``(N,)``."""
        logits = _check_logits(logits, "GarbageProbability")
        k = logits.shape[1]
        ok = isinstance(garbage_index, numbers.Integral) and not isinstance(garbage_index, bool) \
            and -k <= garbage_index < k
        if not ok:
            raise bad_param("GarbageProbability", "garbage_index", f"an int in [-{k}, {k}) for {k} logits", garbage_index)
        return torch.softmax(logits, 1)[:, int(garbage_index)]


@register_detector("ue")
class Uncertainty(Detector):
    """The uncertainty estimate UE of the garbage-class papers (arXiv 2411.17777, 2407.18002).

    With :math:`p = \\operatorname{softmax}(f(x))` over all :math:`K = n + 1` classes (the garbage
    class included) and :math:`k = \\arg\\max_i p_i`:

    .. math::

        UE(p) = 1 - \\frac{\\sum_i (p_i - 1/K)^2}{\\sum_i (\\delta_{ik} - 1/K)^2}

    the squared distance of :math:`p` from the uniform distribution, relative to that of the
    one-hot vector of its own prediction (the denominator equals :math:`(K-1)/K`). UE is 1 for a
    uniform :math:`p` and 0 for a one-hot one; higher = more uncertain = more OOD. Any ``K >= 2``
    works, so it also scores a plain ``n``-class model.

    Examples
    --------
    >>> import torch
    >>> Uncertainty.score(torch.tensor([[0.0, 0.0, 0.0], [0.0, -math.inf, -math.inf]]))
    tensor([1., 0.])
    """

    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """UE of ``softmax(logits)`` for logits ``(N, K)``; shape ``(N,)``."""
        logits = _check_logits(logits, "Uncertainty")
        p = torch.softmax(logits, 1)
        k = p.shape[1]
        one_hot = F.one_hot(p.argmax(1), k).to(p.dtype)
        return 1.0 - ((p - 1.0 / k) ** 2).sum(1) / ((one_hot - 1.0 / k) ** 2).sum(1)


# --------------------------------------------------------------------------- feature scores


@register_detector("mahalanobis")
class Mahalanobis(Detector):
    """Mahalanobis distance to the nearest class mean in penultimate features (Lee et al., NeurIPS 2018, arXiv 1807.03888).

    :meth:`fit` estimates one mean :math:`\\mu_c` per class present in the labels and one
    covariance tied across classes, :math:`\\Sigma = \\frac{1}{N} \\sum_c \\sum_{i: y_i = c}
    (z_i - \\mu_c)(z_i - \\mu_c)^\\top + \\epsilon I`, in float64; the score of features :math:`z` is

    .. math:: s(x) = \\min_c\\, (z - \\mu_c)^\\top \\Sigma^{-1} (z - \\mu_c)

    (squared distances; :math:`\\Sigma^{-1}` is the pseudo-inverse). pytorch-ood's ``Mahalanobis``
    returns the same ranking (it does not divide by :math:`N` and halves the distance). Without the
    input pre-processing of the paper.

    Features are the model's penultimate representation, ``model.forward_with_features(x)[1]``:
    every netinvert classifier has it, and :class:`~netinvert.models.HookedClassifier` gives it to
    any module. For an ``(n+1)``-class garbage model, fit on in-distribution data only: the class
    means are those of the labels seen, so the garbage class has none.

    Parameters
    ----------
    model : nn.Module or None
        ``None`` when only :meth:`fit_features` and :meth:`predict_features` are used.
    eps : float, default 1e-6
        Ridge :math:`\\epsilon` added to the covariance's diagonal.
    batch_size : int, default 512

    Attributes
    ----------
    classes_ : tensor of shape (C,)
        The labels seen by :meth:`fit`, sorted.
    means_ : tensor of shape (C, D)
        Class means :math:`\\mu_c` (float64).
    covariance_, precision_ : tensor of shape (D, D)
        :math:`\\Sigma` and its pseudo-inverse (float64).

    Examples
    --------
    >>> import torch
    >>> blob = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # covariance 0.5 I
    >>> z, y = torch.cat([blob, blob + torch.tensor([4.0, 0.0])]), torch.tensor([0] * 4 + [1] * 4)
    >>> det = Mahalanobis(None, eps=0.0).fit_features(z, y)
    >>> det.predict_features(torch.tensor([[0.0, 0.0], [0.0, 1.0], [2.0, 1.0]]))
    tensor([ 0.,  2., 10.])
    """

    requires_fit = True

    def __init__(self, model: nn.Module | None = None, *, eps: float = 1e-6, batch_size: int = BATCH_SIZE) -> None:
        super().__init__(model, batch_size=batch_size)
        self.eps = eps

    def _params(self) -> dict[str, Any]:
        return {"eps": self.eps}

    @staticmethod
    def score(logits: torch.Tensor) -> torch.Tensor:
        """Not defined: the Mahalanobis score needs features and fitted means, see :meth:`predict_features`."""
        raise TypeError(
            "Mahalanobis has no score(logits): it scores penultimate features with fitted class means; use "
            "predict(x), or predict_features(z) after fit_features(z, y)."
        )

    def predict_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Not defined, as :meth:`score`."""
        return self.score(logits)

    def fit(self, data: Any) -> Mahalanobis:
        """Fit class means and the tied covariance on in-distribution data.

        Parameters
        ----------
        data : Dataset, (x, y) tensors, or iterable of (x, y) batches
            Images ``(N, C, H, W)`` in [0, 1] and int labels ``(N,)``; a netinvert
            :class:`~netinvert.data.Dataset` contributes its train split, a ``DataLoader`` its batches.

        Returns
        -------
        self
        """
        owner = type(self).__name__
        batch_size = _check_positive_int(self.batch_size, "batch_size", owner)
        features = _feature_fn(self.model, owner)
        zs, ys = [], []
        for x, y in _labelled_batches(data, batch_size, owner):
            zs.append(_apply(self.model, x, features, batch_size, owner))
            ys.append(y.detach().cpu())
        if not zs:
            raise ValueError(f"{owner}.fit got no data; pass in-distribution images and labels.")
        return self.fit_features(torch.cat(zs), torch.cat(ys))

    def fit_features(self, z: torch.Tensor, y: torch.Tensor) -> Mahalanobis:
        """Fit on features ``z`` of shape ``(N, D)`` and int labels ``y`` of shape ``(N,)``; returns ``self``."""
        owner = type(self).__name__
        eps = self.eps
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
            raise bad_param(owner, "eps", "a float in [0, inf)", eps)
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            raise ValueError(f"{owner}.fit_features expects features of shape (N, D). Got {getattr(z, 'shape', type(z).__name__)} instead.")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(z) or y.is_floating_point():
            raise ValueError(f"{owner}.fit_features expects int labels of shape ({len(z)},). Got {getattr(y, 'shape', type(y).__name__)} instead.")
        if len(z) < 2:
            raise ValueError(f"{owner}.fit_features needs at least 2 samples to estimate a covariance. Got {len(z)} instead.")
        z = z.detach().cpu().double()
        if not torch.isfinite(z).all():
            raise ValueError(f"{owner}.fit_features got NaN or infinite features; check the model and the inputs.")
        y = y.detach().cpu().long()
        classes, index = torch.unique(y, sorted=True, return_inverse=True)
        means = torch.zeros(len(classes), z.shape[1], dtype=torch.float64).index_add_(0, index, z)
        means /= torch.bincount(index, minlength=len(classes)).unsqueeze(1).double()
        centred = z - means[index]
        cov = centred.T @ centred / len(z) + eps * torch.eye(z.shape[1], dtype=torch.float64)
        self.classes_ = classes
        self.means_ = means
        self.covariance_ = cov
        self.precision_ = torch.linalg.pinv(cov, hermitian=True)
        return self

    @staticmethod
    def distances(z: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distances ``(N, C)``: :math:`(z_i - \\mu_c)^\\top P (z_i - \\mu_c)` for precision :math:`P`."""
        d = z.unsqueeze(1) - means.unsqueeze(0)
        return ((d @ precision) * d).sum(-1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "precision_"):
            raise NotFittedError(
                f"This {type(self).__name__} detector is not fitted yet; call fit(...) with in-distribution "
                "images and labels (or fit_features(z, y)) first."
            )

    def predict_features(self, z: torch.Tensor) -> torch.Tensor:
        """Score features ``(N, D)``: the squared distance to the nearest class mean; float32 ``(N,)`` on CPU."""
        self._check_fitted()
        owner = type(self).__name__
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.means_.shape[1]:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"{owner} was fitted on {self.means_.shape[1]}-dimensional features. Got {got} instead.")
        dist = self.distances(z.detach().cpu().double(), self.means_, self.precision_)
        return dist.amin(1).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(N,)`` (float32, CPU) of images ``x``: :meth:`predict_features` of their features."""
        self._check_fitted()
        owner = type(self).__name__
        z = _apply(self.model, x, _feature_fn(self.model, owner), self.batch_size, owner)
        return self.predict_features(z)
