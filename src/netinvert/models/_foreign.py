"""Bring your own model: wrap any ``nn.Module`` classifier and load it without running pickles.

Inversion methods need two things from a classifier: logits and a penultimate feature vector
(the diversity losses compare samples in it). netinvert's own :class:`~netinvert.models.Classifier`
provides both; :class:`HookedClassifier` gives a foreign module the same interface by reading the
features with a forward hook. :func:`load_classifier` turns a path (our run folder, a TorchScript
file, or a state dict plus a factory) into such a classifier.

Loading never unpickles arbitrary objects: safetensors files hold only tensors, and torch files
are read with ``torch.load(..., weights_only=True)``, which refuses any pickle that would import
or call something. A file that is neither is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import importlib
import pickle
import re
import warnings
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._device import resolve_device
from ..exceptions import RunFormatError, UnsafeCheckpointError, UnsupportedLayerError
from ..runs import CARD_NAME, WEIGHTS_NAME, file_sha256, load_weights, read_json
from ._base import Classifier
from ._checkpoint import check_expected, check_finite, check_sha256, load_classifier_run

__all__ = ["HookedClassifier", "load_classifier"]


class HookedClassifier(nn.Module):
    """Give any image classifier netinvert's classifier interface.

    The wrapped module must map ``(N, C, H, W)`` images in [0, 1] to logits ``(N, n_classes)``
    (normalisation, if any, is its own business). Penultimate features are read with a forward
    hook during the ordinary forward pass, so logits and features come from one pass and
    gradients flow through both, as the inversion losses need.

    Parameters
    ----------
    module : nn.Module
        The classifier. A TorchScript module is accepted too; Python hooks cannot run inside
        compiled code, so for it the features are the input of the last linear operation of its
        (inlined) forward graph and ``feature_layer`` must be left unset.
    input_shape : (C, H, W)
        Shape of one input image.
    n_classes : int
        Number of logits.
    feature_layer : str, optional
        Name (as in ``module.named_modules()``) of the layer whose output is the feature vector.
        Default: the *input* of the last ``nn.Linear``, i.e. what the classification head sees.
    use_layer_input : bool, optional
        Take the named layer's input instead of its output. Defaults to ``True`` when
        ``feature_layer`` is unset and ``False`` otherwise.

    Raises
    ------
    UnsupportedLayerError
        If the module has no ``nn.Linear`` (and no layer is named), or ``feature_layer`` names no
        layer; the message lists the layer names.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    >>> clf = HookedClassifier(net, input_shape=(1, 8, 8), n_classes=10)
    >>> logits, feats = clf.forward_with_features(torch.rand(4, 1, 8, 8))
    >>> tuple(logits.shape), tuple(feats.shape)
    ((4, 10), (4, 16))
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        feature_layer: str | None = None,
        use_layer_input: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"The 'module' parameter of HookedClassifier must be an nn.Module. Got {type(module).__name__} instead.")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(f"The 'input_shape' parameter of HookedClassifier must be (C, H, W) of positive ints. Got {tuple(input_shape)} instead.")
        if int(n_classes) < 2:
            raise ValueError(f"The 'n_classes' parameter of HookedClassifier must be an int in [2, inf). Got {n_classes} instead.")
        self.module = module
        self.input_shape = shape
        self.n_classes = int(n_classes)
        self.feature_layer = feature_layer
        self.use_layer_input = (feature_layer is None) if use_layer_input is None else bool(use_layer_input)
        self._scripted = isinstance(module, torch.jit.ScriptModule)
        if self._scripted:
            if feature_layer is not None:
                raise UnsupportedLayerError(
                    "TorchScript modules cannot take forward hooks, so 'feature_layer' cannot be used with them; "
                    "leave it unset (features = input of the last linear operation) or load the weights into a "
                    "Python module with a factory instead."
                )
            self._scripted_fn = _scripted_forward_with_features(module)
        else:
            self._layer_name = _resolve_layer(module, feature_layer)

    def __getstate__(self) -> dict[str, Any]:
        # The compiled TorchScript function cannot be copied or pickled; it is rebuilt from the module.
        state = self.__dict__.copy()
        state.pop("_scripted_fn", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._scripted:
            self._scripted_fn = _scripted_forward_with_features(self.module)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear ``ValueError`` when ``x`` is not a batch of this classifier's images."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (N, {', '.join(map(str, self.input_shape))}). Got {got} instead."
            )

    def _check_logits(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n, self.n_classes):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"The wrapped module returned {got}, not logits of shape ({n}, {self.n_classes}); check n_classes "
                "and that the module returns a single logits tensor."
            )
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of [0, 1] images ``x``."""
        self.check_input(x)
        return self._check_logits(self.module(x), len(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` of [0, 1] images ``x`` (flattened if the layer is spatial)."""
        return self.forward_with_features(x)[1]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features from a single forward pass."""
        self.check_input(x)
        if self._scripted:
            logits, feats = self._scripted_fn(self.module._c, x)
        else:
            logits, feats = self._hooked_forward(x)
        return self._check_logits(logits, len(x)), feats.flatten(1)

    def _hooked_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.module.get_submodule(self._layer_name)
        captured: list[torch.Tensor] = []
        if self.use_layer_input:
            handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        else:
            # Cloned because a following in-place op (ReLU(inplace=True)) would overwrite the output.
            handle = layer.register_forward_hook(
                lambda _m, _args, out: captured.append(out.clone() if isinstance(out, torch.Tensor) else out)
            )
        try:
            logits = self.module(x)
        finally:
            handle.remove()
        if not captured:
            raise UnsupportedLayerError(
                f"Layer {self._layer_name!r} was not called during the forward pass, so it yields no features; "
                "name a layer the forward pass uses with feature_layer."
            )
        # A layer called several times (e.g. a shared block) reports its last call: the one
        # closest to the output, which is what "penultimate" means.
        feats = captured[-1]
        if not isinstance(feats, torch.Tensor):
            raise UnsupportedLayerError(f"Layer {self._layer_name!r} does not produce a tensor; name another feature_layer.")
        return logits, feats

    def get_params(self) -> dict[str, Any]:
        """Wrapper settings, recorded in the cards of runs that use this classifier."""
        return {
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "feature_layer": self.feature_layer,
            "use_layer_input": self.use_layer_input,
            "module": type(self.module).__name__ if not self._scripted else "TorchScript",
        }


def _resolve_layer(module: nn.Module, name: str | None) -> str:
    """Name of the hooked layer: ``name`` if it exists, else the last ``nn.Linear``."""
    layers = dict(module.named_modules())
    if name is None:
        linear = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
        if not linear:
            raise UnsupportedLayerError(
                f"{type(module).__name__} has no nn.Linear whose input could serve as features; pass "
                f"feature_layer= one of: {_layer_list(layers)}."
            )
        return linear[-1]
    if name not in layers or name == "":
        raise UnsupportedLayerError(
            f"{type(module).__name__} has no layer named {name!r}; feature_layer must be one of: {_layer_list(layers)}."
        )
    return name


def _layer_list(layers: Mapping[str, nn.Module]) -> str:
    names = [f"{n} ({type(m).__name__})" for n, m in layers.items() if n]
    return ", ".join(names) if names else "(the module has no sub-layers)"


def _scripted_forward_with_features(module: torch.jit.ScriptModule) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Compile ``(self, x) -> (logits, input of the last aten::linear)`` from a TorchScript forward.

    TorchScript runs its submodules inside compiled code where Python hooks never fire, so the
    feature tensor is exposed by adding it as a second output of a copy of the inlined graph.
    """
    try:
        graph = module.inlined_graph
        linear = [node for node in graph.nodes() if node.kind() == "aten::linear"]
        if not linear:
            raise UnsupportedLayerError(
                "The TorchScript model has no linear operation whose input could serve as features; "
                "export it from a module that ends in nn.Linear, or load its weights with a factory."
            )
        feats = linear[-1].inputsAt(0)
        (logits,) = list(graph.outputs())
        pair = graph.create("prim::TupleConstruct", [logits, feats])
        graph.appendNode(pair)
        pair.output().setType(torch._C.TupleType([logits.type(), feats.type()]))
        graph.eraseOutput(0)
        graph.registerOutput(pair.output())
        return torch._C._create_function_from_graph("forward_with_features", graph)
    except (RuntimeError, AttributeError, ValueError) as exc:
        raise UnsupportedLayerError(
            f"Could not expose features of this TorchScript model ({exc}); load its weights with a factory instead."
        ) from None


# --------------------------------------------------------------------------- loading


def load_classifier(
    source: str | Path,
    *,
    factory: str | Callable[..., nn.Module] | None = None,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    feature_layer: str | None = None,
    device: str | torch.device = "cpu",
    expected_sha256: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a classifier for inversion from a run folder, a TorchScript file or a state dict.

    Parameters
    ----------
    source : path
        One of

        - a run folder written by ``netinvert train`` (``card.json`` + ``weights.safetensors``),
          or the ``weights.safetensors`` inside one: returns our :class:`Classifier`;
        - a TorchScript file (``torch.jit.save``): wrapped in :class:`HookedClassifier`;
        - a state dict, as safetensors or a ``torch.save`` file holding only tensors, together
          with ``factory``: wrapped in :class:`HookedClassifier`.
    factory : "package.module:function" or callable, optional
        Builds the bare ``nn.Module`` the state dict belongs to. It is called with the
        ``factory_kwargs`` of a card beside the weights, if any, else with no arguments. Only the
        caller names a factory: a card cannot, since importing what a data file names would let
        that file run code.
    input_shape : (C, H, W), optional
        Needed for foreign models unless a JSON card beside the file (``<file stem>.json`` or
        ``card.json``) gives ``input_shape``; explicit values win over the card's.
    n_classes : int, optional
        Likewise (card key ``n_classes``).
    feature_layer : str, optional
        See :class:`HookedClassifier`; may also come from the card.
    device : str or torch.device
        Where the model is put: ``cpu``, ``cuda`` or ``auto`` (a GPU if there is one).
    expected_sha256 : str, optional
        The sha256 the weights file must have: ``info["weights_sha256"]`` of an earlier load, as a
        run that used the classifier records it. A different file (a swapped or retrained
        classifier) is refused before anything in it is read.

    Returns
    -------
    classifier : nn.Module
        In eval mode, with ``input_shape``, ``n_classes``, ``forward``, ``features``,
        ``forward_with_features`` and ``check_input``.
    info : dict
        ``format`` (``run``, ``torchscript`` or ``state_dict``), ``source``, ``input_shape``,
        ``n_classes``, ``feature_layer``, ``factory``, ``dataset`` (if the card names one),
        ``card`` (the card read, or ``{}``) and ``weights_sha256`` (the sha256 of the weights file
        read: ``weights.safetensors`` of a run folder, else ``source`` itself).

    Raises
    ------
    FileNotFoundError
        If ``source`` or a file the run folder needs is missing (the message names it).
    UnsafeCheckpointError
        If the file is corrupt, holds NaN or infinite weights (the tensor is named), is a pickle
        that would import or call code (nothing in it is run), changed since its run's card was
        written, or differs from ``expected_sha256``.
    RunFormatError
        If the weights do not fit the architecture, or a card is malformed.
    ValueError
        If the input shape or class count is unknown or inconsistent, or the factory is invalid.

    Notes
    -----
    The format is read from the file's bytes, not its name. A TorchScript archive is loaded by
    torch's own TorchScript loader, which resolves only TorchScript types (no Python pickles);
    its compiled code runs when the model is called, as any model's code does, so load models
    from sources you trust to compute honestly.

    Examples
    --------
    >>> clf, info = load_classifier("runs/digits-cnn")  # doctest: +SKIP
    >>> clf, info = load_classifier("net.pt", input_shape=(1, 28, 28), n_classes=10)  # doctest: +SKIP
    >>> clf, info = load_classifier("net.safetensors", factory="mypkg.nets:make_net")  # doctest: +SKIP
    """
    device = resolve_device(device)
    expected_sha256 = check_sha256(expected_sha256)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a run folder, a TorchScript file or a state dict file.")
    own_run = path.is_dir() or (factory is None and path.name == WEIGHTS_NAME and (path.parent / CARD_NAME).is_file())
    if own_run and feature_layer is not None:
        raise ValueError(f"feature_layer={feature_layer!r} applies to foreign models only: a netinvert run folder's "
                         "classifier exposes its penultimate features itself; drop the option.")
    if path.is_dir():
        if factory is not None:
            raise ValueError(f"{path} is a folder; with a factory, pass the state dict file itself.")
        return _load_run(path, input_shape, n_classes, device, expected_sha256)
    if own_run:
        return _load_run(path.parent, input_shape, n_classes, device, expected_sha256)

    sha = file_sha256(path)
    check_expected(path, sha, expected_sha256)
    fmt = _sniff(path)
    card = _card_beside(path)
    shape = input_shape if input_shape is not None else _card_value(card, "input_shape")
    classes = n_classes if n_classes is not None else _card_value(card, "n_classes")
    layer = feature_layer if feature_layer is not None else card.get("feature_layer")

    if fmt == "torchscript":
        if factory is not None:
            raise ValueError(f"{path} is a TorchScript file; it carries its own architecture, so drop the factory.")
        module = _load_torchscript(path, device)
        check_finite(module.state_dict(), path)
        factory_name = None
    else:
        state = load_weights(path) if fmt == "safetensors" else _load_torch_state(path)
        check_finite(state, path)
        if factory is None:
            raise ValueError(
                f"{path} holds a state dict (weights only); pass factory='package.module:function' "
                "(CLI: --factory) that builds the matching nn.Module."
            )
        module, factory_name = _build_from_factory(factory, card)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise RunFormatError(f"{path} does not match the module built by {factory_name}: {exc}") from None
        module.to(device)
        fmt = "state_dict"

    if shape is None or classes is None:
        missing = [n for n, v in (("input_shape", shape), ("n_classes", classes)) if v is None]
        raise ValueError(
            f"{path} is a foreign model, so its {' and '.join(missing)} must be given (CLI: --input-shape C,H,W and "
            f"--n-classes, or --dataset) or written in a JSON card beside it ({path.with_suffix('.json').name} or {CARD_NAME})."
        )
    clf = HookedClassifier(module, input_shape=shape, n_classes=classes, feature_layer=layer).eval()
    info = {
        "format": fmt,
        "source": str(path),
        "input_shape": list(clf.input_shape),
        "n_classes": clf.n_classes,
        "feature_layer": layer,
        "factory": factory_name,
        "dataset": card.get("dataset"),
        "card": card,
        "weights_sha256": sha,
    }
    return clf, info


def _load_run(run_dir: Path, input_shape: Sequence[int] | None, n_classes: int | None, device: str | torch.device,
              expected_sha256: str | None) -> tuple[Classifier, dict[str, Any]]:
    model, card = load_classifier_run(run_dir, device=device, expected_sha256=expected_sha256)
    if input_shape is not None and tuple(int(s) for s in input_shape) != model.input_shape:
        raise ValueError(f"{run_dir} holds a model for inputs {model.input_shape}, not {tuple(input_shape)}.")
    if n_classes is not None and int(n_classes) != model.n_classes:
        raise ValueError(f"{run_dir} holds a model with {model.n_classes} classes, not {n_classes}.")
    info = {
        "format": "run",
        "source": str(run_dir),
        "input_shape": list(model.input_shape),
        "n_classes": model.n_classes,
        "feature_layer": None,
        "factory": None,
        "dataset": card.get("dataset"),
        "card": card,
        "weights_sha256": card["weights_sha256"] if "weights_sha256" in card else file_sha256(run_dir / WEIGHTS_NAME),
    }
    return model, info


def _sniff(path: Path) -> str:
    """``safetensors``, ``torchscript``, ``torch`` (a torch.save zip) or ``pickle``, from the bytes."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        raise UnsafeCheckpointError(f"{path} is empty or truncated ({path.stat().st_size} bytes); it is no checkpoint.")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise UnsafeCheckpointError(f"{path} is a corrupt or truncated zip archive ({exc}).") from None
        # torch.jit.save archives carry the compiled code; torch.save archives only data.pkl.
        return "torchscript" if any("/code/" in n for n in names) else "torch"
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] == b"{" and header_len < path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2, as legacy torch.save writes
        return "pickle"
    raise UnsafeCheckpointError(
        f"{path} is not a safetensors, TorchScript or torch state-dict file; netinvert reads only those."
    )


def _load_torchscript(path: Path, device: str | torch.device) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise UnsafeCheckpointError(f"{path} is not a readable TorchScript file ({_torch_reason(exc)}).") from None


def _load_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a torch.save state dict with the weights-only unpickler (never runs pickled code)."""
    try:
        with warnings.catch_warnings():
            # torch warns that a protocol-4 pickle may be unsupported; the refusal below says more.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message advises weights_only=False, i.e. running the file's code: never relayed.
        raise UnsafeCheckpointError(_pickle_refusal(path, exc)) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{path} is a corrupt or truncated torch file ({_torch_reason(exc)}).") from None
    # Training checkpoints often nest the weights under "state_dict" next to optimiser state.
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RunFormatError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return dict(obj)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
#: Globals torch's own state-dict pickles use; anything else is what the refusal names.
_TORCH_DATA_GLOBAL = re.compile(r"torch\._utils\._rebuild_\w+|torch\.\w*Storage|torch\.(device|Size)|collections\.OrderedDict")


def _pickle_refusal(path: Path, exc: Exception) -> str:
    """Our refusal of a pickle that asks for Python objects: what it wanted and how to convert it."""
    found = _GLOBAL.search(str(exc))
    name = found.group(1) if found else _first_foreign_global(path)
    what = f"it asks for the Python object {name}" if name else "it holds instructions that are not plain tensors"
    return (
        f"{path} was refused: it is a pickle that netinvert will not execute ({what}, and unpickling can run any "
        "code). Convert it where it was made, with code you trust: save the weights with "
        "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') and load them with a factory, "
        "or export TorchScript with torch.jit.script(model).save('model.pt')."
    )


def _first_foreign_global(path: Path) -> str | None:
    """The first non-tensor global a pickle names, read with pickletools (which executes nothing)."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member else b""
        else:
            data = path.read_bytes()
        stream, strings = io.BytesIO(data), []
        while stream.tell() < len(data):  # legacy torch.save files are several pickles in a row
            for op, arg, _ in pickletools.genops(stream):
                if isinstance(arg, str):
                    strings.append(arg)
                name = None
                if op.name in ("GLOBAL", "INST"):
                    name = str(arg).replace(" ", ".")
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                if name and not _TORCH_DATA_GLOBAL.fullmatch(name):
                    return name
    except (ValueError, OSError, EOFError, KeyError, struct.error, zipfile.BadZipFile):  # the refusal stands anyway
        return None
    return None


def _torch_reason(exc: Exception) -> str:
    """The first line of a torch loading error, minus any advice to load with weights_only=False."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "weights_only" not in ln]
    return lines[0] if lines else type(exc).__name__


def _build_from_factory(factory: str | Callable[..., nn.Module], card: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """Call the user's factory (``package.module:function``) with the card's ``factory_kwargs``."""
    if callable(factory):
        fn, name = factory, getattr(factory, "__qualname__", repr(factory))
    else:
        module_name, sep, attr = str(factory).partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"The 'factory' parameter must look like 'package.module:function'. Got {factory!r} instead.")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"Cannot import module {module_name!r} of factory {factory!r} ({exc}); is it on PYTHONPATH?") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"Module {module_name!r} has no attribute {attr!r} (factory {factory!r}).")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ValueError(f"Factory {factory!r} is not callable.")
        fn, name = obj, str(factory)
    kwargs = card.get("factory_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise RunFormatError(f"The card's 'factory_kwargs' must be a JSON object. Got {type(kwargs).__name__} instead.")
    module = fn(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"Factory {name} returned {type(module).__name__}, not an nn.Module.")
    return module, name


def _card_beside(path: Path) -> dict[str, Any]:
    """The JSON card next to a foreign model file (``<stem>.json``, else ``card.json``), or ``{}``."""
    for candidate in (path.with_suffix(".json"), path.parent / CARD_NAME):
        if candidate.is_file() and candidate != path:
            card = read_json(candidate)
            if not isinstance(card, dict):
                raise RunFormatError(f"{candidate} must hold a JSON object.")
            return card
    return {}


def _card_value(card: Mapping[str, Any], key: str) -> Any:
    """``key`` from a card's top level, or from the ``model_params`` our own cards use."""
    if key in card:
        return card[key]
    params = card.get("model_params")
    return params.get(key) if isinstance(params, Mapping) else None

