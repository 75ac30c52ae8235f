"""Bring your own model: hooks, TorchScript, factories, and refusing unsafe or corrupt files."""

from __future__ import annotations

import copy
import json
import os
import pickle
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from netinvert.exceptions import RunFormatError, UnsafeCheckpointError, UnsupportedLayerError
from netinvert.models import HookedClassifier, load_classifier, predict

SHAPE = (1, 8, 8)

pytestmark = [
    # torch 2.13 deprecates TorchScript in favour of torch.export; loading it is still supported.
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
]

#: A user's own package, written into a temp folder and imported by name like any installed one.
USER_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=16):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
            self.fc = nn.Linear(4 * 8 * 8, width)
            self.head = nn.Linear(width, 10)

        def forward(self, x):
            return self.head(torch.relu(self.fc(self.body(x))))

    def make_net(width=16):
        return Net(width)

    def not_a_module():
        return 42
    """
)


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    pkg = tmp_path / "src" / "mynets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import importlib

    module = importlib.import_module("mynets.models")
    yield module
    import sys

    for name in [n for n in sys.modules if n.startswith("mynets")]:
        del sys.modules[name]


@pytest.fixture
def net(user_pkg):
    torch.manual_seed(0)
    model = user_pkg.make_net()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        model.body[1].running_mean.uniform_(-0.5, 0.5)
        model.body[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def manual_features(net, x):
    return torch.relu(net.fc(net.body(x)))


def test_hooked_features_equal_manual_computation(net, digits):
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10).eval()
    x = digits.x_test[:16]
    logits, feats = clf.forward_with_features(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(feats, manual_features(net, x))
        torch.testing.assert_close(clf.features(x), feats)
        torch.testing.assert_close(clf(x), logits)
    assert clf.feature_layer is None and clf.use_layer_input


def test_named_layer_output_and_input(net, digits):
    x = digits.x_test[:4]
    body = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="body")
    torch.testing.assert_close(body.features(x), net.body(x))
    fc_out = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="fc")
    torch.testing.assert_close(fc_out.features(x), net.fc(net.body(x)))
    fc_in = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="fc", use_layer_input=True)
    torch.testing.assert_close(fc_in.features(x), net.body(x))
    conv = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="body.0")
    assert conv.features(x).shape == (4, 4 * 8 * 8)  # spatial maps are flattened to (N, D)


def test_output_hook_is_not_overwritten_by_inplace_ops():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(inplace=True), nn.Linear(16, 10))
    x = torch.rand(4, *SHAPE)
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="1")
    with torch.no_grad():
        torch.testing.assert_close(clf.features(x), net[1](x.flatten(1)))  # pre-ReLU values, negatives kept


def test_gradients_flow_through_hooked_features(net):
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10)
    x = torch.rand(3, *SHAPE, requires_grad=True)
    logits, feats = clf.forward_with_features(x)
    (logits.sum() + feats.sum()).backward()
    assert x.grad.abs().sum() > 0


def test_hooks_are_removed_even_when_forward_fails(net):
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10)
    clf.features(torch.rand(2, *SHAPE))
    assert not net.head._forward_pre_hooks

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            self.fc(x.flatten(1))
            raise RuntimeError("boom")

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        HookedClassifier(boom, input_shape=SHAPE, n_classes=10).features(torch.rand(2, *SHAPE))
    assert not boom.fc._forward_pre_hooks


def test_no_linear_or_unknown_layer_names_the_layers(net):
    convnet = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    with pytest.raises(UnsupportedLayerError, match=r"no nn.Linear.*0 \(Conv2d\), 1 \(Flatten\)"):
        HookedClassifier(convnet, input_shape=SHAPE, n_classes=10)
    with pytest.raises(UnsupportedLayerError, match=r"no layer named 'fc2'.*body \(Sequential\).*head \(Linear\)"):
        HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="fc2")


def test_layer_not_called_is_reported(net):
    net.unused = nn.Linear(3, 3)  # registered last, never called
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10, feature_layer="unused")
    with pytest.raises(UnsupportedLayerError, match="not called"):
        clf.features(torch.rand(2, *SHAPE))


def test_wrong_input_shape_and_wrong_class_count(net):
    clf = HookedClassifier(net, input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 1, 8, 8\). Got \(2, 1, 28, 28\)"):
        clf(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        clf.features(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=r"not logits of shape \(2, 7\)"):
        HookedClassifier(net, input_shape=SHAPE, n_classes=7)(torch.rand(2, *SHAPE))
    with pytest.raises(ValueError, match="input_shape"):
        HookedClassifier(net, input_shape=(8, 8), n_classes=10)


# ----------------------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("export", ["script", "trace"])
def test_torchscript_matches_the_original(net, digits, tmp_path, export):
    path = tmp_path / "net.pt"
    x = digits.x_test
    ts = torch.jit.script(net) if export == "script" else torch.jit.trace(net, x[:2])
    ts.save(str(path))
    clf, info = load_classifier(path, input_shape=SHAPE, n_classes=10)
    assert info["format"] == "torchscript"
    assert torch.equal(predict(clf, x), predict(net, x))
    with torch.no_grad():
        logits, feats = clf.forward_with_features(x)
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(feats, manual_features(net, x))
    xg = x[:3].clone().requires_grad_(True)
    clf.features(xg).sum().backward()
    assert xg.grad.abs().sum() > 0
    twin = copy.deepcopy(clf)  # inversion code copies classifiers; compiled code must survive it
    with torch.no_grad():
        torch.testing.assert_close(twin.forward_with_features(x)[1], feats)


def test_torchscript_shape_from_card_and_layer_refusal(net, tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    with pytest.raises(ValueError, match="input_shape and n_classes must be given"):
        load_classifier(path)
    (tmp_path / "net.json").write_text(json.dumps({"input_shape": list(SHAPE), "n_classes": 10, "dataset": "digits"}))
    clf, info = load_classifier(path)
    assert clf.input_shape == SHAPE and info["dataset"] == "digits"
    with pytest.raises(UnsupportedLayerError, match="TorchScript"):
        load_classifier(path, feature_layer="fc")


# ----------------------------------------------------------------------------- factories


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_factory_and_state_dict_match_the_original(net, digits, tmp_path, fmt):
    path = tmp_path / f"weights.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file(net.state_dict(), str(path))
    else:
        torch.save(net.state_dict(), str(path))
    clf, info = load_classifier(path, factory="mynets.models:make_net", input_shape=SHAPE, n_classes=10)
    assert info["format"] == "state_dict" and info["factory"] == "mynets.models:make_net"
    x = digits.x_test
    assert torch.equal(predict(clf, x), predict(net, x))
    with torch.no_grad():
        torch.testing.assert_close(clf.features(x), manual_features(net, x))


def test_factory_kwargs_and_shape_from_card_beside(user_pkg, tmp_path, digits):
    torch.manual_seed(1)
    wide = user_pkg.make_net(width=24).eval()
    save_file(wide.state_dict(), str(tmp_path / "wide.safetensors"))
    (tmp_path / "wide.json").write_text(json.dumps({"input_shape": [1, 8, 8], "n_classes": 10,
                                                    "factory_kwargs": {"width": 24}, "feature_layer": "fc"}))
    clf, info = load_classifier(tmp_path / "wide.safetensors", factory="mynets.models:make_net")
    assert info["feature_layer"] == "fc" and clf.features(digits.x_test[:2]).shape == (2, 24)
    assert torch.equal(predict(clf, digits.x_test), predict(wide, digits.x_test))


def test_factory_errors(net, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(net.state_dict(), str(path))
    with pytest.raises(ValueError, match="holds a state dict.*factory"):
        load_classifier(path, input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match="package.module:function"):
        load_classifier(path, factory="mynets.models.make_net", input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match="Cannot import module 'nope_pkg'"):
        load_classifier(path, factory="nope_pkg:make", input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match="has no attribute 'make'"):
        load_classifier(path, factory="mynets.models:make", input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match="not an nn.Module"):
        load_classifier(path, factory="mynets.models:not_a_module", input_shape=SHAPE, n_classes=10)
    with pytest.raises(RunFormatError, match="does not match the module"):
        load_classifier(path, factory=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), input_shape=SHAPE, n_classes=10)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_classifier(tmp_path / "missing.pt", factory="mynets.models:make_net")


# ----------------------------------------------------------------------------- unsafe and corrupt files


class Payload:
    """Unpickling this creates a folder: stands in for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Control: plain pickle does run it, so the refusal tests below can fail."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["raw-pickle", "torch-save", "torch-save-legacy"])
@pytest.mark.parametrize("with_factory", [True, False])
def test_unsafe_pickles_are_refused_and_never_run(tmp_path, user_pkg, kind, with_factory):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = {"head.weight": torch.zeros(10, 16), "extra": Payload(marker)}
    if kind == "raw-pickle":
        path.write_bytes(pickle.dumps(state))
    else:
        torch.save(state, str(path), _use_new_zipfile_serialization=(kind == "torch-save"))
    kwargs = {"factory": "mynets.models:make_net"} if with_factory else {}
    with pytest.raises(UnsafeCheckpointError, match="refused: it is a pickle that netinvert will not execute") as err:
        load_classifier(path, input_shape=SHAPE, n_classes=10, **kwargs)
    assert "weights_only=False" not in str(err.value) and "weights_only` set to `False" not in str(err.value)
    assert not marker.exists()


def test_pickled_whole_module_is_refused(net, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(net, str(path))  # the common "torch.save(model)" habit: needs unpickling code
    with pytest.raises(UnsafeCheckpointError, match="asks for the Python object .*Net.*safetensors"):
        load_classifier(path, factory="mynets.models:make_net", input_shape=SHAPE, n_classes=10)


@pytest.mark.parametrize("fmt", ["torchscript", "safetensors", "torch"])
def test_truncated_files_are_refused(net, tmp_path, fmt):
    path = tmp_path / "net.bin"
    if fmt == "torchscript":
        torch.jit.script(net).save(str(path))
    elif fmt == "safetensors":
        save_file(net.state_dict(), str(path))
    else:
        torch.save(net.state_dict(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeCheckpointError, match="net.bin"):
        load_classifier(path, factory=None if fmt == "torchscript" else "mynets.models:make_net",
                        input_shape=SHAPE, n_classes=10)


@pytest.mark.parametrize("content", [b"", b"hello", b"GIF89a" + bytes(100)])
def test_empty_or_unknown_files_are_refused(tmp_path, content):
    path = tmp_path / "thing.pt"
    path.write_bytes(content)
    with pytest.raises(UnsafeCheckpointError, match="thing.pt"):
        load_classifier(path, input_shape=SHAPE, n_classes=10)


def test_feature_layer_is_refused_for_our_own_run_folders(digits_cnn_run):
    # our classifiers expose their penultimate features; silently ignoring the option would mislead
    with pytest.raises(ValueError, match="feature_layer='fc' applies to foreign models only"):
        load_classifier(digits_cnn_run, feature_layer="fc")
    with pytest.raises(ValueError, match="applies to foreign models only"):
        load_classifier(digits_cnn_run / "weights.safetensors", feature_layer="fc")
    clf, info = load_classifier(digits_cnn_run)
    assert clf.n_classes == 10
