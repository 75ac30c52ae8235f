"""Issue 13: every bad input is refused before the work starts, clearly, and nothing on disk changes.

One row per bad input, written in its real on-disk format into a temporary folder. Each row
checks, as a user would: the exception type, the exact message (a regex), that it is not a bare
``TypeError``/``KeyError``/``RuntimeError`` from deep inside, that nothing under the folder was
written, changed or removed, and, for malicious pickles, that their payload never ran.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from netinvert.data import load_dataset
from netinvert.exceptions import DatasetError, NetinvertError, RunFormatError, UnsafeCheckpointError
from netinvert.models import (
    ClassifierRunConfig,
    TrainConfig,
    build_model,
    load_classifier,
    load_classifier_run,
    run_training,
    save_classifier,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
]

SHAPE = (1, 8, 8)
#: Set by each malicious pickle's payload if it ever runs (the row writes it; the test reads it).
MARKER = "PAYLOAD-RAN"


# ----------------------------------------------------------------------------- writers


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", input_shape=SHAPE, n_classes=10, channels=[4], hidden=8).eval()


def foreign_net() -> nn.Module:
    """A user's own module (what a factory returns)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def write_run(folder: Path, model: nn.Module | None = None) -> Path:
    return save_classifier(model if model is not None else tiny_cnn(), folder, {"dataset": "digits"})


def edit_card(run: Path, **changes) -> None:
    card = json.loads((run / "card.json").read_text())
    for key, value in changes.items():
        if value is ...:
            card.pop(key, None)
        else:
            card[key] = value
    (run / "card.json").write_text(json.dumps(card))


def overwrite_tail_with_ff(path: Path, n_bytes: int = 64) -> None:
    """Corrupt a file in place as a failing disk would: the last bytes (tensor data) become 0xFF (NaN)."""
    data = bytearray(path.read_bytes())
    data[-n_bytes:] = b"\xff" * n_bytes
    path.write_bytes(bytes(data))


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: 00 00 08 <ndim>, big-endian uint32 dims, then the uint8 values."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 3, n_test: int = 2, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                 f"{prefix}-labels-idx1-ubyte": rng.integers(0, 10, (n,), dtype=np.uint8)}
        for name, array in files.items():
            data = idx_bytes(array)
            (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return folder


def write_images(folder: Path, n: int, size: tuple[int, int] = (5, 4)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full(size[::-1], 10 * i, np.uint8), mode="L").save(folder / f"img_{i}.png")


# ----------------------------------------------------------------------------- malicious pickles


class SystemCall:
    """Unpickling calls os.system: the classic payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class MakeDir:
    """Unpickling calls os.mkdir (no shell needed)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class Gadget:
    """An arbitrary class whose __setstate__ runs code when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).touch()


class EvilNet(nn.Module):
    """A whole nn.Module (the torch.save(model) habit) whose unpickling runs code."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        super().__setstate__(state)


def pickle_os_system(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"fc.bias": [0.0] * 10, "x": SystemCall(marker)}))


def pickle_whole_module(path: Path, marker: Path) -> None:
    torch.save(EvilNet(marker), str(path))


def pickle_arbitrary_class(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Gadget(marker), protocol=2))


def zip_checkpoint_with_global(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 64)}, "x": MakeDir(marker)}, str(path))


#: kind -> (writer, the global the refusal names, whether torch.load or plain pickle reads it).
PICKLES = {
    "os-system-pickle": (pickle_os_system, r"(posix|os|nt)\.system", "pickle"),
    "torch-save-whole-module": (pickle_whole_module, r"\S*EvilNet", "torch"),
    "arbitrary-class-pickle": (pickle_arbitrary_class, r"\S*Gadget", "pickle"),
    "zip-torch-checkpoint-with-global": (zip_checkpoint_with_global, r"(posix|os|nt)\.mkdir", "torch"),
}


@pytest.mark.parametrize("kind", PICKLES)
def test_the_payloads_really_run_when_unpickled(tmp_path, kind):
    """Control: an ordinary unpickler runs every payload, so the refusals below can fail."""
    write, _, reader = PICKLES[kind]
    marker, path = tmp_path / MARKER, tmp_path / "evil.pt"
    write(path, marker)
    if reader == "torch":
        torch.load(str(path), weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Bad:
    """One bad input: ``setup(folder)`` writes it and returns the call a user would make."""

    id: str
    setup: Callable[[Path], Callable[[], object]]
    error: type[BaseException]
    match: str


def _run_ff(tmp: Path):
    run = write_run(tmp / "run")
    overwrite_tail_with_ff(run / "weights.safetensors")
    return lambda: load_classifier_run(run)


def _run_ff_via_load_classifier(tmp: Path):
    run = write_run(tmp / "run")
    overwrite_tail_with_ff(run / "weights.safetensors")
    return lambda: load_classifier(run)


def _run_ff_card_without_sha(tmp: Path):
    run = write_run(tmp / "run")
    edit_card(run, weights_sha256=...)  # an older card: only the NaN check can notice
    overwrite_tail_with_ff(run / "weights.safetensors")
    return lambda: load_classifier(run)


def _nan_state_dict(tmp: Path, fmt: str):
    net = foreign_net()
    with torch.no_grad():
        net[3].weight[0, 0] = float("nan") if fmt == "safetensors" else float("inf")
    path = tmp / f"net.{fmt}"
    if fmt == "safetensors":
        save_file(net.state_dict(), str(path))
    else:
        torch.save(net.state_dict(), str(path))
    return lambda: load_classifier(path, factory=foreign_net, input_shape=SHAPE, n_classes=10)


def _nan_torchscript(tmp: Path):
    net = foreign_net()
    with torch.no_grad():
        net[1].bias[3] = float("nan")
    path = tmp / "net.pt"
    torch.jit.script(net).save(str(path))
    return lambda: load_classifier(path, input_shape=SHAPE, n_classes=10)


def _expected_sha_run(tmp: Path):
    run = write_run(tmp / "run")
    return lambda: load_classifier(run, expected_sha256="0" * 64)


def _expected_sha_torchscript(tmp: Path):
    path = tmp / "net.pt"
    torch.jit.script(foreign_net()).save(str(path))
    return lambda: load_classifier(path, input_shape=SHAPE, n_classes=10, expected_sha256="ab" * 32)


def _expected_sha_malformed(tmp: Path):
    run = write_run(tmp / "run")
    return lambda: load_classifier(run, expected_sha256="not-a-hash")


def _card(tmp: Path, **changes):
    run = write_run(tmp / "run")
    edit_card(run, **changes)
    return lambda: load_classifier_run(run)


def _swapped_weights(tmp: Path, keep_sha: bool):
    run = write_run(tmp / "run")
    other = write_run(tmp / "other", build_model("mlp", input_shape=SHAPE, n_classes=10, hidden=[8]))
    (run / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    if not keep_sha:
        edit_card(run, weights_sha256=...)
    return lambda: load_classifier_run(run)


def _train_with_zero_channels(tmp: Path):
    config = ClassifierRunConfig(dataset="digits", model="cnn", model_params={"channels": [0, 8]},
                                 train=TrainConfig(epochs=1), device="cpu", threads=1)
    return lambda: run_training(config, tmp / "out", progress=False)


def _pickle(kind: str):
    def setup(tmp: Path):
        write = PICKLES[kind][0]
        path = tmp / "evil.pt"
        write(path, tmp / MARKER)
        return lambda: load_classifier(path, input_shape=SHAPE, n_classes=10)
    return setup


def _idx_zero(tmp: Path, split: str):
    folder = write_mnist(tmp / "mnist", **({"n_train": 0} if split == "train" else {"n_test": 0}))
    return lambda: load_dataset("mnist", folder)


def _idx_truncated_gz(tmp: Path):
    folder = write_mnist(tmp / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    return lambda: load_dataset("mnist", folder)


def _idx_corrupt_gz(tmp: Path):
    folder = write_mnist(tmp / "mnist")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[12:20] = b"\x00" * 8  # inside the deflate stream: the CRC or the stream breaks
    path.write_bytes(bytes(data))
    return lambda: load_dataset("mnist", folder)


def _idx_truncated_raw(tmp: Path):
    folder = write_mnist(tmp / "mnist", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    return lambda: load_dataset("mnist", folder)


def _folder_tiny(tmp: Path):
    write_images(tmp / "imgs" / "a", 2)
    write_images(tmp / "imgs" / "b", 1)
    return lambda: load_dataset("image-folder", tmp / "imgs")


def _folder_empty_test(tmp: Path):
    write_images(tmp / "imgs" / "train" / "a", 3)
    (tmp / "imgs" / "test").mkdir()
    return lambda: load_dataset("image-folder", tmp / "imgs")


def _folder_sizes(tmp: Path):
    write_images(tmp / "imgs" / "a", 3)
    write_images(tmp / "imgs" / "b", 3, size=(6, 4))
    return lambda: load_dataset("image-folder", tmp / "imgs")


def _folder_not_an_image(tmp: Path):
    write_images(tmp / "imgs" / "a", 3)
    (tmp / "imgs" / "a" / "img_1.png").write_bytes(b"not an image")
    return lambda: load_dataset("image-folder", tmp / "imgs")


def _run_missing_weights(tmp: Path):
    run = write_run(tmp / "run")
    (run / "weights.safetensors").unlink()
    return lambda: load_classifier(run)


def _run_card_not_json(tmp: Path):
    run = write_run(tmp / "run")
    (run / "card.json").write_text("{not json")
    return lambda: load_classifier(run)


def _run_truncated_weights(tmp: Path):
    run = write_run(tmp / "run")
    path = run / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return lambda: load_classifier_run(run)


def _empty_checkpoint(tmp: Path):
    (tmp / "net.pt").write_bytes(b"")
    return lambda: load_classifier(tmp / "net.pt", input_shape=SHAPE, n_classes=10)


CHANGED = r"weights\.safetensors changed since card\.json was written: its sha256 is [0-9a-f]{64}, the card records [0-9a-f]{64}\."
NAN = r"tensor '{}' holds \d+ NaN or infinite value\(s\) of \d+; the weights are corrupt"
CHANNELS = r"The 'channels' parameter of cnn must be a list of ints in \[1, inf\)\. Got \[0, 8\] instead\."
PICKLE = r"evil\.pt was refused: it is a pickle that netinvert will not execute \(it asks for the Python object {}.*safetensors"

ROWS = [
    # 13.5 weights corrupted in place (0xFF -> NaN), and NaN/inf in every format
    Bad("run-weights-overwritten-with-ff", _run_ff, UnsafeCheckpointError, CHANGED),
    Bad("run-weights-overwritten-with-ff-load-classifier", _run_ff_via_load_classifier, UnsafeCheckpointError, CHANGED),
    Bad("run-weights-overwritten-card-without-sha", _run_ff_card_without_sha, UnsafeCheckpointError, NAN.format(r"[\w.]+")),
    Bad("safetensors-state-dict-with-nan", lambda t: _nan_state_dict(t, "safetensors"), UnsafeCheckpointError,
        r"net\.safetensors: " + NAN.format(r"3\.weight")),
    Bad("torch-state-dict-with-inf", lambda t: _nan_state_dict(t, "pt"), UnsafeCheckpointError, r"net\.pt: " + NAN.format(r"3\.weight")),
    Bad("torchscript-with-nan", _nan_torchscript, UnsafeCheckpointError, r"net\.pt: " + NAN.format(r"1\.bias")),
    # 13.4 a classifier other than the one a run recorded
    Bad("run-not-the-expected-sha256", _expected_sha_run, UnsafeCheckpointError,
        r"weights\.safetensors is not the classifier expected: its sha256 is [0-9a-f]{64}, the run that used it recorded 0{64}\."),
    Bad("torchscript-not-the-expected-sha256", _expected_sha_torchscript, UnsafeCheckpointError,
        r"net\.pt is not the classifier expected: .* recorded (ab){32}\."),
    Bad("expected-sha256-malformed", _expected_sha_malformed, ValueError,
        r"The 'expected_sha256' parameter must be None or 64 hex digits\. Got 'not-a-hash' instead\."),
    # 13.7 architecture parameters and malformed cards
    Bad("build-model-zero-channels", lambda t: lambda: build_model("cnn", input_shape=SHAPE, n_classes=10, channels=[0, 8]),
        ValueError, CHANNELS),
    Bad("train-zero-channels", _train_with_zero_channels, ValueError, CHANNELS),
    Bad("card-zero-channels", lambda t: _card(t, model_params={**tiny_cnn().get_params(), "channels": [0, 8]}),
        RunFormatError, r"card\.json: 'model_params' do not fit model 'cnn' \(" + CHANNELS),
    Bad("card-negative-n-classes", lambda t: _card(t, model_params={**tiny_cnn().get_params(), "n_classes": -3}),
        RunFormatError, r"The 'n_classes' parameter of cnn must be an int in \[2, inf\)\. Got -3 instead\."),
    Bad("card-model-params-not-an-object", lambda t: _card(t, model_params=[4, 8]),
        RunFormatError, r"card\.json: 'model_params' must be a JSON object\. Got list instead\."),
    Bad("card-unknown-model", lambda t: _card(t, model="vgg"), RunFormatError,
        r"card\.json names model 'vgg', which is not registered here\. Valid names: .*cnn"),
    Bad("card-model-not-a-string", lambda t: _card(t, model=["cnn"]), RunFormatError, r"names model \['cnn'\]"),
    Bad("card-bad-weights-sha256", lambda t: _card(t, weights_sha256=12), RunFormatError,
        r"'weights_sha256' must be 64 hex digits\. Got 12 instead\."),
    Bad("swapped-weights-of-another-architecture", lambda t: _swapped_weights(t, keep_sha=True), UnsafeCheckpointError, CHANGED),
    Bad("swapped-weights-card-without-sha", lambda t: _swapped_weights(t, keep_sha=False), RunFormatError,
        r"weights\.safetensors does not match the architecture in card\.json \('cnn'"),
    # 13.10 pickles: refused, never run, and no advice to load them with weights_only=False
    *(Bad(f"pickle-{kind}", _pickle(kind), UnsafeCheckpointError, PICKLE.format(PICKLES[kind][1])) for kind in PICKLES),
    # 13.6 empty datasets
    Bad("idx-zero-train-images", lambda t: _idx_zero(t, "train"), DatasetError,
        r"train-images-idx3-ubyte\.gz holds no images: its header declares shape \(0, 28, 28\)"),
    Bad("idx-zero-test-images", lambda t: _idx_zero(t, "test"), DatasetError,
        r"t10k-images-idx3-ubyte\.gz holds no images"),
    Bad("image-folder-split-leaves-no-test-images", _folder_tiny, DatasetError,
        r"image-folder: .*imgs is too small to split off a test set"),
    Bad("image-folder-empty-test-folder", _folder_empty_test, DatasetError,
        r"image-folder: .*imgs/test has no class sub-folders"),
    # already refused before issue 13; kept here so they stay so
    Bad("idx-truncated-gz", _idx_truncated_gz, DatasetError, r"train-images-idx3-ubyte\.gz is not a complete gzip file"),
    Bad("idx-corrupt-gz", _idx_corrupt_gz, DatasetError, r"t10k-labels-idx1-ubyte\.gz is not a complete gzip file"),
    Bad("idx-truncated-raw", _idx_truncated_raw, DatasetError, r"train-images-idx3-ubyte is truncated: its header declares"),
    Bad("image-folder-mixed-sizes", _folder_sizes, DatasetError, r"image-folder: all images must have one size"),
    Bad("image-folder-not-an-image", _folder_not_an_image, DatasetError, r"image-folder: cannot read .*img_1\.png as an image"),
    Bad("run-missing-weights", _run_missing_weights, FileNotFoundError, r"weights\.safetensors does not exist"),
    Bad("run-card-not-json", _run_card_not_json, RunFormatError, r"card\.json is not valid JSON"),
    Bad("run-truncated-weights", _run_truncated_weights, UnsafeCheckpointError, r"weights\.safetensors is not a readable safetensors file"),
    Bad("empty-checkpoint", _empty_checkpoint, UnsafeCheckpointError, r"net\.pt is empty or truncated \(0 bytes\)"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under ``root`` with its content hash and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel + "/"] = ""
        else:
            out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
    return out


@pytest.mark.parametrize("bad", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_clearly_and_nothing_changes(bad, tmp_path):
    call = bad.setup(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(bad.error, match=bad.match) as err:
        call()
    # A user-caused error, not a crash from deep inside torch or the standard library.
    if not isinstance(err.value, NetinvertError):
        assert type(err.value) in (ValueError, FileNotFoundError), repr(err.value)
    # torch's advice to load with weights_only=False (i.e. to run the file's code) is never relayed.
    assert "weights_only" not in str(err.value)
    assert not (tmp_path / MARKER).exists(), "a malicious payload ran"
    assert snapshot(tmp_path) == before, "the refused call wrote, changed or removed files"


def test_rows_cover_the_items_of_issue_13():
    ids = {r.id for r in ROWS}
    assert len(ids) == len(ROWS), "row ids must be unique"
    assert {f"pickle-{k}" for k in PICKLES} <= ids
