"""One self-contained HTML page over run folders: ``netinvert report RUN [RUN ...] --out FILE.html``.

Why one file with everything inlined: a report is mailed, attached to an issue or opened on a phone
far from the run folders, and an offline reader must see the same page as its author. So every picture
is a base64 ``data:`` URI, the CSS sits in a ``<style>`` element, and the page loads nothing and runs no
script (no CDN, no server). Several runs go into the same page: an index table at the top (kind and
headline numbers of each run) links to one section per run; a run that holds other runs (the demo's
classifier, inversion and BNN, an OOD run's base and plain classifiers) shows them as sub-sections.

What a section shows is read, never recomputed: the card's configuration, the run's ``metrics.json``
(or the metrics its card holds) as tables, every PNG the run wrote, and what its kind adds (BNN preimage
grids drawn from the bits a query found, preimage counts with their intervals). Only numbers that have no
picture get one drawn here: a training history without ``losses.png`` becomes loss curves. The kind comes
from ``card.json`` and is looked up in :data:`_KINDS`; an unknown kind still gets the generic section.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..exceptions import RunExistsError, RunFormatError
from ..runs import CARD_NAME, atomic_write_bytes, paths_overlap, read_card, read_json

__all__ = ["ReportResult", "render_html_report", "write_html_report"]

#: Metrics that describe how a measurement was made rather than what it found (the verifiers' own training):
#: shown folded, under the main tables.
_MINOR_METRICS = ("verifiers",)
#: Card keys never shown: they are big and say nothing to a reader (the exported integer net is MBs of literals).
_HIDDEN_CARD_KEYS = ("integer_net",)
#: History keys that are bookkeeping, not curves worth a panel.
_NOT_CURVES = {"step", "epoch", "round", "seconds", "lr", "class_weights"}
#: Longest list of numbers written out in a table cell; a longer one is summarised.
_MAX_INLINE_LIST = 8
#: Most loose pictures shown per folder (``netinvert sample -n 1000`` writes one PNG per sample).
_MAX_PICTURES = 48
#: Longest history (rounds, epochs) also shown as a table; a longer one is only drawn.
_MAX_HISTORY_ROWS = 12
#: Most rows of one table; the rest is counted, not shown.
_MAX_ROWS = 60
#: Pictures at most this many pixels on their longest side are tiny samples, shown enlarged without blur.
_TINY = 64
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- what a page is made of


@dataclass(frozen=True)
class _Figure:
    caption: str
    uri: str
    alt: str
    width: int
    height: int
    source: str = ""  # the file in the run folder; empty for a picture drawn for the page

    @property
    def tiny(self) -> bool:
        return max(self.width, self.height) <= _TINY


def _figure(png: bytes, caption: str, alt: str, source: str = "") -> _Figure:
    """A PNG as a figure: inlined, with its pixel size (the page lays figures out at their own width)."""
    return _Figure(caption=caption, uri=_data_uri(png), alt=alt, width=int.from_bytes(png[16:20], "big"),
                   height=int.from_bytes(png[20:24], "big"), source=source)


@dataclass(frozen=True)
class _Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass
class _Section:
    """One run, ready for the template."""

    anchor: str
    path: str
    kind: str
    title: str
    summary: str
    headline: list[tuple[str, str]]
    config: _Table | None
    card: _Table
    tables: list[_Table] = field(default_factory=list)
    minor_tables: list[_Table] = field(default_factory=list)
    figures: list[_Figure] = field(default_factory=list)
    gallery: list[_Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    children: list[_Section] = field(default_factory=list)
    open: bool = True


# --------------------------------------------------------------------------- the kinds of run


@dataclass(frozen=True)
class _Kind:
    """How one ``kind`` of run is shown: its title, what it is, its headline numbers and picture captions.

    ``headline`` holds ``(label, dotted key)`` pairs looked up in the metrics, then in the card;
    ``captions`` holds ``(glob, caption)`` pairs in display order (pictures no glob names follow, captioned
    by file name); ``tables`` holds ``(JSON file, dotted key, title)`` of other tables to show; ``extra``
    adds tables and figures that need the kind's own reading of its files.
    """

    title: str
    summary: str
    headline: tuple[tuple[str, str], ...] = ()
    captions: tuple[tuple[str, str], ...] = ()
    tables: tuple[tuple[str, str, str], ...] = ()
    extra: Callable[[Path, dict[str, Any]], tuple[list[_Table], list[_Figure]]] | None = None


def _bnn_query_extra(run: Path, card: dict[str, Any]) -> tuple[list[_Table], list[_Figure]]:
    """Pictures of the inputs a BNN query found (bits drawn as images) and the counts with their intervals."""
    result = card.get("result") or {}
    shape = _bnn_image_shape(card, result)
    tables: list[_Table] = []
    figures: list[_Figure] = []
    bits: list[tuple[str, list[Sequence[int]]]] = []
    if result.get("preimages"):
        bits.append((f"label {result.get('label')}", result["preimages"]))
    if result.get("preimage"):
        bits.append((f"label {result.get('label')}", [result["preimage"]]))
    for row in result.get("results") or ():
        if isinstance(row, Mapping) and row.get("samples"):
            bits.append((f"label {row.get('label')}", row["samples"]))
    if bits:
        figures.append(_bits_figure(bits, shape, "Preimages the solver found, one row per label (white = bit 1). Each "
                                                 "is exact: the network gives it that label, whatever it looks like."))
    if result.get("flipped"):
        figures.append(_bits_figure([(f"now label {result.get('new_label')}", [result["flipped"]])], shape,
                                    f"Test image {result.get('index')} after the least number of flips found "
                                    f"(k = {result.get('k')}, certified minimal: {_fmt(result.get('certified'))})."))
    if "count" in result:
        tables.append(_count_table(result))
    elif result:
        tables.extend(_tables(result, "Result"))
    return tables, figures


def _bnn_image_shape(card: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[int, int]:
    """``(H, W)`` of the binarised input: from the BNN run the query read, else a square, else one row."""
    n = result.get("n_inputs")
    bnn_run = Path(str(card.get("input_run") or ""))
    if card.get("input_run") and (bnn_run / CARD_NAME).is_file():  # a moved or deleted BNN run: the fallbacks below
        bnn = read_card(bnn_run)
        _, h, w = bnn.get("input_image_shape", [1, 0, 0])
        pool = int((bnn.get("binarizer") or {}).get("pool", 1))
        n = n or (bnn.get("model_params") or {}).get("n_inputs")
        if h and w and n == (h // pool) * (w // pool):
            return h // pool, w // pool
    if n is None:
        for key in ("preimage", "flipped"):
            if result.get(key):
                n = len(result[key])
        if result.get("preimages"):
            n = len(result["preimages"][0])
        for row in result.get("results") or ():
            if isinstance(row, Mapping) and row.get("samples"):
                n = len(row["samples"][0])
    if not n:
        return 1, 1
    side = math.isqrt(int(n))
    return (side, side) if side * side == n else (1, int(n))


def _count_table(result: Mapping[str, Any]) -> _Table:
    """A count of preimages with the interval its method gives (exact, PAC bound, or Wilson interval of a share)."""
    count, n_inputs = result.get("count"), result.get("n_inputs")
    method = result.get("method", "")
    rows = [("label", _fmt(result.get("label"))), ("method", _fmt(method)), ("status", _fmt(result.get("status"))),
            ("count", _fmt_count(count)), ("exact", _fmt(result.get("exact")))]
    if result.get("exact") and isinstance(count, int) and count >= 10**6:
        rows[3] = ("count", f"{count} ({_fmt_count(count)})")  # an exact count is worth every digit
    if count is not None and result.get("epsilon") is not None:
        eps, delta = float(result["epsilon"]), float(result.get("delta") or 0)
        rows.append((f"interval (probability >= {1 - delta:.2f})",
                     f"[{_fmt_count(count / (1 + eps))}, {_fmt_count(count * (1 + eps))}]"))
    if result.get("low") is not None and n_inputs:
        level = result.get("confidence")
        rows.append((f"share of all inputs ({_fmt(level)} Wilson interval)" if level else "share of all inputs",
                     f"{_fmt(result.get('share'))} [{_fmt(result['low'])}, {_fmt(result['high'])}]"))
        rows.append(("count interval", f"[{_fmt_count(result['low'] * 2.0 ** n_inputs)}, "
                                       f"{_fmt_count(result['high'] * 2.0 ** n_inputs)}]"))
    if n_inputs:
        rows.append(("inputs (2^n)", f"2^{n_inputs} = {_fmt_count(2 ** int(n_inputs))}"))
    rows.append(("seconds", _fmt(result.get("seconds"))))
    all_labels = result.get("all_labels")
    note = ""
    if all_labels:
        note = "every label, one pass: " + ", ".join(f"{i}: {_fmt_count(c)}" for i, c in enumerate(all_labels))
    return _Table("Preimage count", ("", "value"), tuple(rows), note)


_KINDS: dict[str, _Kind] = {
    "classifier": _Kind(
        "Classifier", "A classifier trained by netinvert train.",
        headline=(("test accuracy", "test_accuracy"), ("train images", "n_train"))),
    "evaluation": _Kind(
        "Classifier evaluation", "A classifier (run, TorchScript or state dict) tested by netinvert evaluate.",
        headline=(("test accuracy", "test_accuracy"), ("test images", "n_test"))),
    "inverter": _Kind(
        "Generator inversion", "A generator trained to produce inputs the classifier gives each label (netinvert invert).",
        headline=(("validity", "validity"), ("robust verifier accuracy", "verifier_accuracy.robust"),
                  ("Frechet distance", "frechet.generated")),
        captions=(("samples.png", "Per-class gallery: one row per label. Validity is the share the classifier gives "
                                  "the row's label; the robust verifier, trained apart, says whether they look like it."),
                  ("losses.png", "Loss curves: the total loss, each term unweighted, and the batch validity over steps."))),
    "samples": _Kind(
        "Samples of an inversion", "Draws from a trained generator for one label (netinvert sample).",
        headline=(("validity", "validity"), ("label", "label"), ("samples", "n"))),
    "image-prior": _Kind(
        "Image prior", "A small VAE of the data whose decoder an inversion can generate through (netinvert prior).",
        headline=(("test MSE", "train.test_mse"), ("epochs", "train.epochs")),
        captions=(("samples.png", "Images decoded from random codes of the prior."),)),
    "bnn": _Kind(
        "Binarised network", "A BNN trained and exported to an integer network for SAT queries (netinvert bnn train).",
        headline=(("test accuracy", "test_accuracy"), ("export agreement", "export_agreement"))),
    "bnn-query": _Kind(
        "BNN query", "A SAT query on a binarised network (netinvert bnn QUERY).",
        headline=(("status", "result.status"), ("label", "result.label"), ("preimages found", "result.n_found"),
                  ("count", "result.count"), ("least flips", "result.k"), ("agreement with PyTorch", "result.agreement"),
                  ("seconds", "seconds")),
        captions=(("marginals_label*.png", "Marginal heat map: how often each input bit is 1 among near-uniform "
                                           "preimages of the label."),),
        extra=_bnn_query_extra),
    "explanation": _Kind(
        "Explanation", "What the classifier learnt, read from inverted samples, with randomisation sanity checks "
                       "(netinvert explain).",
        headline=(("our maps pass the sanity check", "sanity.ours_passes"),
                  ("mean SSIM after randomising the last layer", "sanity.ours_last_layer_mean_ssim")),
        captions=(("gallery.png", "Inverted samples per class."),
                  ("mean_maps.png", "Mean map per class: the pixels the class's samples share."),
                  ("variance_maps.png", "Variance map per class: where the samples differ."),
                  ("attribution_maps.png", "Attribution maps per class (Captum), averaged over test images."),
                  ("boundary_*.png", "A path between two labels: samples and class probabilities along it."),
                  ("sanity_ours.png", "Sanity check of our maps: a meaningful map must change when the model is "
                                      "randomised (low SSIM)."),
                  ("sanity_attribution.png", "The same check for the attribution maps."),
                  ("marginals.png", "BNN: per-pixel marginals of near-uniform SAT preimages of each label."))),
    "adversarial-generator": _Kind(
        "Adversarial generator", "An amortised attack: a network that perturbs any input in one pass "
                                 "(netinvert adversarial train).",
        headline=(("test success", "test_success"), ("targeted success", "test_targeted_success"),
                  ("clean accuracy", "test_clean_accuracy")),
        captions=(("examples.png", "Adversarial grid: clean images and their perturbed versions."),)),
    "adversarial-attack": _Kind(
        "Adversarial attack", "The generator against PGD baselines on held-out images (netinvert adversarial attack).",
        headline=(("generator success", "attacks.generator.success"), ("speed-up over PGD", "speedup"),
                  ("clean accuracy", "clean_accuracy")),
        captions=(("examples.png", "Adversarial grid: clean images, the generator's one-pass perturbations and PGD's."),)),
    "reconstruction": _Kind(
        "Reconstruction", "Training-like images recovered from a classifier, scored against its members "
                          "(netinvert reconstruct).",
        headline=(("membership advantage", "membership.advantage"), ("95% interval", "membership.advantage_ci95"),
                  ("reconstructions", "membership.n_reconstructions")),
        captions=(("samples.png", "Reconstructions, one row per label."),
                  ("matches.png", "Reconstruction pairs: each reconstruction above its best-matching member and "
                                  "non-member (SSIM)."))),
    "reconstruction-evaluation": _Kind(
        "Reconstruction evaluation", "A reconstruction run rescored against members and non-members "
                                     "(netinvert reconstruct evaluate).",
        headline=(("membership advantage", "membership.advantage"), ("95% interval", "membership.advantage_ci95")),
        captions=(("matches.png", "Reconstruction pairs: each reconstruction above its best-matching member and "
                                  "non-member (SSIM)."),)),
    "ood": _Kind(
        "OOD detection (garbage class)", "A classifier with an extra garbage class fed with inverted samples "
                                         "(netinvert ood train).",
        headline=(("test accuracy", "test_accuracy"), ("plain test accuracy", "plain_test_accuracy"),
                  ("garbage set size", "garbage_size")),
        captions=(("garbage.png", "The garbage class: inverted samples and noise the model learns to reject."),
                  ("rounds/round_*.png", "Inverted samples of one round, per label."))),
    "ood-evaluation": _Kind(
        "OOD evaluation", "Detectors scored on in-distribution test data against OOD sets (netinvert ood evaluate).",
        headline=(("in-distribution accuracy", "in_accuracy"), ("in-distribution flagged", "in_flagged_share")),
        captions=(("hist_*.png", "OOD histograms: each detector's scores on in-distribution test data and one OOD set."),
                  ("roc_*.png", "ROC curves of the detectors on one OOD set."))),
    "demo": _Kind(
        "netinvert demo", "The main job on the embedded digits data: a classifier, its inversion and an exact SAT "
                          "inversion of a binarised net (netinvert demo).",
        headline=(("classifier accuracy", "metrics.classifier_accuracy"), ("validity", "metrics.validity"),
                  ("robust verifier accuracy", "metrics.robust_verifier_accuracy"),
                  ("BNN accuracy", "metrics.bnn_test_accuracy"), ("BNN preimages", "metrics.bnn_preimages")),
        captions=(("bnn_preimages.png", "BNN preimage grid: SAT preimages of each label, every one checked by PyTorch."),),
        tables=(("bnn_preimages.json", "labels", "BNN preimages found per label"),)),
}


# --------------------------------------------------------------------------- formatting


def _fmt(v: Any) -> str:
    """A value as a reader wants it: 4 significant digits, no float noise, lists and dicts compact."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if v == 0 or 1e-4 <= abs(v) < 1e6 else f"{v:.3e}"
    if isinstance(v, int):
        return _fmt_count(v)
    if isinstance(v, (list, tuple)):
        if len(v) == 2 and all(_is_number(x) for x in v):
            return f"[{_fmt(v[0])}, {_fmt(v[1])}]"
        if len(v) <= _MAX_INLINE_LIST and all(_is_scalar(x) for x in v):
            return ", ".join(_fmt(x) for x in v)
        if v and all(isinstance(x, int) and not isinstance(x, bool) and x in (0, 1) for x in v):
            return f"{len(v)} bits, {sum(v)} set"
        if v and all(isinstance(x, (list, tuple)) for x in v):
            return f"{len(v)} lists (in the JSON file)"
        if v and all(_is_number(x) for x in v):
            arr = np.asarray(v, dtype=float)
            return f"{len(v)} values, mean {_fmt(float(arr.mean()))} (min {_fmt(float(arr.min()))}, max {_fmt(float(arr.max()))})"
        return _shorten(json.dumps(v))
    if isinstance(v, Mapping):
        return _shorten(json.dumps(v))
    return str(v)


def _fmt_count(v: Any) -> str:
    """An integer with thin-space thousands; a huge one (preimage counts reach 2^784) also in powers of ten."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3e}" if abs(v) >= 1e6 else _fmt(v)
    v = int(v)
    if abs(v) < 10**6:
        return f"{v:,}".replace(",", "\u2009")
    return f"{float(v):.3e}"


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_record(v: Any) -> bool:
    """A flat mapping: every value a scalar or a list of scalars (one table row)."""
    return isinstance(v, Mapping) and bool(v) and all(
        _is_scalar(x) or (isinstance(x, list) and all(_is_scalar(y) for y in x)) for x in v.values())


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _label(key: str) -> str:
    return key.replace("_", " ")


# --------------------------------------------------------------------------- tables from JSON


def _tables(obj: Any, title: str) -> list[_Table]:
    """Tables of a JSON value: scalars and flat mappings in one key/value table, records as rows, the rest nested.

    A mapping of records (``{"uniform": {"AUROC": ...}, ...}``) and a list of records (per-class rows,
    history rounds) become one table with a row per record; a mapping of mappings of records (OOD metrics
    per set and detector) becomes one such table per outer key.
    """
    if isinstance(obj, list):
        return [_record_table(title, obj)] if obj and all(isinstance(r, Mapping) for r in obj) else []
    if not isinstance(obj, Mapping):
        return []
    rows: list[tuple[str, str]] = []
    nested: list[_Table] = []
    for key, v in obj.items():
        name = _label(str(key))
        sub = title if title.rsplit(": ", 1)[-1].lower() == name.lower() else f"{title}: {name}"
        if _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v)):
            rows.append((name, _fmt(v)))
        elif _is_record(v) and len(v) <= 8:
            rows.extend((f"{name}: {_label(str(k))}", _fmt(x)) for k, x in v.items())
        elif _is_record(v):
            nested.append(_Table(sub, (name, "value"), tuple((_label(str(k)), _fmt(x)) for k, x in v.items())))
        elif isinstance(v, Mapping) and v and all(_is_record(r) for r in v.values()):
            nested.append(_record_table(sub, v))
        elif isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v):
            nested.append(_record_table(sub, v))
        elif isinstance(v, Mapping):
            nested.extend(_tables(v, sub))
        elif isinstance(v, list) and v and all(isinstance(r, list) for r in v):
            rows.append((name, _fmt(v)))
    tables = [_Table(title, ("", "value"), tuple(rows))] if rows else []
    return tables + nested


def _record_table(title: str, records: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> _Table:
    """One row per record, one column per key any record has (in first-seen order)."""
    if isinstance(records, Mapping):
        items = [(str(k), r) for k, r in records.items()]
        first: tuple[str, ...] = ("",)
    else:
        items = [("", r) for r in records]
        first = ()
    columns: list[str] = []
    for _, r in items:
        columns.extend(k for k in r if k not in columns)
    shown = items[:_MAX_ROWS]
    rows = tuple(((name,) if first else ()) + tuple(_fmt(r.get(c)) if c in r else "" for c in columns) for name, r in shown)
    note = f"{len(items) - len(shown)} more rows in the JSON file." if len(items) > len(shown) else ""
    return _Table(title, first + tuple(_label(c) for c in columns), rows, note)


def _flat_rows(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Every leaf of a card as ``a.b.c -> value`` (long values shortened)."""
    rows: list[tuple[str, str]] = []
    for key, v in obj.items():
        name = f"{prefix}{key}"
        if key in _HIDDEN_CARD_KEYS:
            rows.append((name, "(omitted: see card.json)"))
        elif isinstance(v, Mapping) and v:
            rows.extend(_flat_rows(v, name + "."))
        else:
            rows.append((name, _fmt(v)))
    return rows


# --------------------------------------------------------------------------- pictures


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pictures(run: Path, spec: _Kind) -> tuple[list[_Figure], list[_Figure], list[str]]:
    """The run's PNGs as (captioned figures, a gallery of tiny samples, notes), captioned ones first."""
    files = sorted(p for p in run.rglob("*.png")  # hidden files and folders are a writer's scratch (.NAME.partial)
                   if not any(part.startswith(".") for part in p.relative_to(run).parts) and not _in_child_run(p, run))
    ordered: list[tuple[Path, str]] = []
    for pattern, caption in spec.captions:
        ordered.extend((p, caption) for p in files if p.relative_to(run).match(pattern) and p not in dict(ordered))
    taken = dict(ordered)
    ordered.extend((p, "") for p in files if p not in taken)
    figures, gallery, notes = [], [], []
    for p, caption in ordered[:_MAX_PICTURES]:
        png = p.read_bytes()
        rel = p.relative_to(run).as_posix()
        if not png.startswith(_PNG_MAGIC):
            notes.append(f"{rel} is not a PNG image; it is left out.")
            continue
        fig = _figure(png, caption, rel, rel)
        (gallery if fig.tiny else figures).append(fig)
    if len(ordered) > _MAX_PICTURES:
        notes.append(f"{len(ordered) - _MAX_PICTURES} more pictures are in the run folder.")
    return figures, gallery, notes


def _in_child_run(path: Path, run: Path) -> bool:
    """Whether a file belongs to a run nested in ``run`` (that run gets its own section)."""
    for parent in path.parents:
        if parent == run:
            return False
        if (parent / CARD_NAME).is_file():
            return True
    return False


def _bits_figure(rows: list[tuple[str, list[Sequence[int]]]], shape: tuple[int, int], caption: str) -> _Figure:
    """Bit vectors drawn as tiles (white = 1, black = 0) on a grey ground, one row of tiles per ``(name, vectors)``."""
    from PIL import Image

    h, w = shape
    per = min(max(len(v) for _, v in rows), 16)  # 16 tiles a row: wider would be illegible on a phone
    scale = max(1, 96 // max(h, w)) if h > 1 else 4  # an 8x8 input becomes a 96 px tile
    gap = 6
    tile_h, tile_w = h * scale, w * scale
    canvas = np.full((gap + len(rows) * (tile_h + gap), gap + per * (tile_w + gap), 3), (200, 205, 214), dtype=np.uint8)
    for r, (_, vectors) in enumerate(rows):
        for c, bits in enumerate(vectors[:per]):
            tile = np.kron(np.asarray(bits, dtype=np.uint8).reshape(h, w) * 255, np.ones((scale, scale), dtype=np.uint8))
            top, left = gap + r * (tile_h + gap), gap + c * (tile_w + gap)
            canvas[top:top + tile_h, left:left + tile_w] = tile[..., None]
    buf = io.BytesIO()
    Image.fromarray(canvas, mode="RGB").save(buf, format="PNG")
    shown = ", ".join(f"{name} ({min(len(v), per)} of {len(v)})" for name, v in rows)
    return _figure(buf.getvalue(), f"{caption} Rows: {shown}.", "inputs drawn from their bits")


def _history(run: Path, card: Mapping[str, Any]) -> Any:
    path = run / "history.json"
    return read_json(path) if path.is_file() else card.get("history")


def _curves(history: Any) -> tuple[str, np.ndarray, dict[str, np.ndarray]] | None:
    """``(x name, x, {curve: values})`` of a history kept as a mapping of lists or as a list of records."""
    if isinstance(history, Mapping):
        lists = {k: v for k, v in history.items() if isinstance(v, list) and v and all(_is_number(x) for x in v)}
        if not lists:
            return None
        n = max(len(v) for v in lists.values())
        x_name = next((k for k in ("step", "epoch", "round") if k in lists and len(lists[k]) == n), None)
        x = np.asarray(lists[x_name], dtype=float) if x_name else np.arange(1, n + 1, dtype=float)
        curves = {k: np.asarray(v, dtype=float) for k, v in lists.items() if k not in _NOT_CURVES and len(v) == n}
        return (x_name or "epoch"), x, curves
    if isinstance(history, list) and history and all(isinstance(r, Mapping) for r in history):
        x_name = next((k for k in ("step", "epoch", "round") if all(_is_number(r.get(k)) for r in history)), None)
        x = np.asarray([r[x_name] for r in history], dtype=float) if x_name else np.arange(1, len(history) + 1.0)
        keys = [k for k in history[0] if k not in _NOT_CURVES and all(_is_number(r.get(k)) for r in history)]
        return (x_name or "entry"), x, {k: np.asarray([r[k] for r in history], dtype=float) for k in keys}
    return None


def _loss_curves(history: Any) -> _Figure | None:
    """Loss curves drawn from a history (one panel per quantity, smoothed when there are many points)."""
    parsed = _curves(history)
    if parsed is None or not parsed[2]:
        return None
    x_name, x, curves = parsed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(curves, key=lambda k: (k != "loss", list(curves).index(k)))  # the total loss first
    n_cols = min(3, len(names))
    n_rows = math.ceil(len(names) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.5 * n_rows), squeeze=False)
    window = max(1, len(x) // 50)
    for ax, name in zip(axes.flat, names):
        y = curves[name]
        if window > 1:
            ax.plot(x, y, color="0.8", lw=0.6)
            kernel = np.ones(window) / window
            ax.plot(x[window - 1:], np.convolve(y, kernel, mode="valid"), color="C0", lw=1.3)
        else:
            ax.plot(x, y, color="C0", lw=1.3, marker="o" if len(x) <= 20 else None, ms=3)
        ax.set_title(_label(name), fontsize=9)
        if x_name != "step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and rounds are whole
        ax.set_xlabel(x_name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    smooth = f" (grey: every {x_name}; blue: moving average of {window})" if window > 1 else ""
    return _figure(buf.getvalue(), f"Training curves drawn from the run's history, per {x_name}{smooth}.", "training curves")


# --------------------------------------------------------------------------- one run


def _read_run(run: Path) -> dict[str, Any]:
    """The card of a run folder; a folder that is not a run is refused with a sentence that says so."""
    if not run.exists():
        raise FileNotFoundError(f"{run} does not exist; netinvert report reads run folders written by netinvert commands.")
    if not run.is_dir() or not (run / CARD_NAME).is_file():
        raise RunFormatError(f"{run} is not a run folder: it has no {CARD_NAME}. netinvert report reads the folders "
                             f"that netinvert commands write with --out.")
    return read_card(run)


def _metrics(run: Path, card: Mapping[str, Any]) -> Any:
    path = run / "metrics.json"
    if path.is_file():
        return read_json(path)
    return card.get("metrics")


def _section(run: Path, anchor: str, depth: int = 0) -> _Section:
    card = _read_run(run)
    kind = str(card.get("kind", "classifier"))  # classifier cards written before 'kind' existed lack it
    spec = _KINDS.get(kind, _Kind(kind.replace("-", " ").capitalize(), f"A run of kind '{kind}'."))
    metrics = _metrics(run, card)
    title = spec.title + (f": {card['query']}" if kind == "bnn-query" and card.get("query") else "")
    headline = []
    for name, key in spec.headline:
        value = _lookup(metrics, key) if isinstance(metrics, Mapping) else None
        value = _lookup(card, key) if value is None else value
        if value is not None:
            headline.append((name, _fmt(value)))
    config = card.get("config") if isinstance(card.get("config"), Mapping) else card.get("params")
    config_table = _Table("Configuration", ("option", "value"), tuple(_flat_rows(config))) if isinstance(config, Mapping) else None
    shown = {k: v for k, v in card.items() if k not in ("config", "params", "metrics", "history", "result")}
    card_table = _Table("Everything else in card.json", ("key", "value"), tuple(_flat_rows(shown)))
    section = _Section(anchor=anchor, path=str(run), kind=kind, title=title, summary=spec.summary, headline=headline,
                       config=config_table, card=card_table)
    if isinstance(metrics, Mapping):
        main = {k: v for k, v in metrics.items() if k not in _MINOR_METRICS and k != "history"}  # history: curves
        section.tables.extend(_tables(main, "Metrics"))
        section.minor_tables.extend(_tables({k: metrics[k] for k in _MINOR_METRICS if k in metrics}, "Metrics"))
    elif isinstance(metrics, list):
        section.tables.extend(_tables(metrics, "Metrics"))
    if isinstance(card.get("result"), Mapping) and spec.extra is None:  # a kind with an extra renders its result
        section.tables.extend(_tables(card["result"], "Result"))
    for name, key, caption in spec.tables:
        if (run / name).is_file():
            section.tables.extend(_tables(_lookup(read_json(run / name), key), caption))
    history = _history(run, card)
    if history is not None:
        parsed = _curves(history)
        if isinstance(history, list) and parsed is not None and len(history) <= _MAX_HISTORY_ROWS:
            section.tables.extend(_tables(history, "Training history"))
    figures, gallery, notes = _pictures(run, spec)
    if spec.extra is not None:
        tables, extra_figures = spec.extra(run, card)
        section.tables[:0] = tables
        figures = extra_figures + figures
    if history is not None and not (run / "losses.png").is_file():
        curves = _loss_curves(history)
        if curves is not None:
            figures.append(curves)
    section.figures, section.gallery, section.notes = figures, gallery, notes
    children = [p for p in run.iterdir() if p.is_dir() and (p / CARD_NAME).is_file()]
    children.sort(key=lambda p: ((p / CARD_NAME).stat().st_mtime, p.name))  # the order they were written: data flow
    for i, child in enumerate(children):
        sub = _section(child, f"{anchor}-{i + 1}", depth + 1)
        sub.path = child.name
        sub.open = bool(sub.figures or sub.gallery) and any(child.glob("*.png"))  # a sub-run with pictures starts open
        section.children.append(sub)
    return section


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class ReportResult:
    """Where the report is, which runs it shows (and their kinds), how many pictures and bytes it holds."""

    path: Path
    runs: tuple[str, ...]
    kinds: tuple[str, ...]
    n_images: int
    n_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "runs": list(self.runs), "kinds": list(self.kinds), "n_images": self.n_images,
                "n_bytes": self.n_bytes}


def render_html_report(runs: Iterable[str | Path], *, title: str | None = None,
                       names: Sequence[str] | None = None) -> str:
    """The HTML text of a self-contained report over ``runs`` (see :func:`write_html_report`); writes nothing.

    ``names`` are shown for the runs instead of their paths (a workflow that reports on a run it is still
    staging in a temporary folder names the folder it will become).

    Raises
    ------
    FileNotFoundError
        A run folder does not exist.
    RunFormatError
        A folder is not a run (it has no ``card.json``), or its card or metrics are not valid JSON.
    """
    return _render(_sections(runs, names), title)


def write_html_report(runs: Iterable[str | Path], out: str | Path, *, force: bool = False,
                      title: str | None = None) -> ReportResult:
    """Write one self-contained HTML page over one or more run folders.

    Every picture is inlined as a base64 PNG and the CSS is inline, so the file opens anywhere, offline,
    with nothing beside it (no CDN, no script, no server). With several runs the page starts with an index
    that links to each run's section. The run folders are only read.

    Parameters
    ----------
    runs : iterable of str or Path
        Run folders written by netinvert commands (``card.json`` says their kind).
    out : str or Path
        The HTML file to write; never inside one of ``runs`` (a report never writes into a run it reads).
    force : bool, default=False
        Replace ``out`` if it exists.
    title : str, optional
        The page title (default: the run's kind, or the number of runs).

    Returns
    -------
    ReportResult

    Raises
    ------
    RunExistsError
        ``out`` exists and ``force`` is false, or it is a folder.
    RunFormatError
        A folder is not a run.

    Examples
    --------
    >>> write_html_report(["runs/clf", "runs/inv"], "report.html")  # doctest: +SKIP
    """
    runs = [Path(r) for r in runs]
    out = Path(out)
    for run in runs:
        _read_run(run)  # a folder that is not a run is the first thing to say
        if paths_overlap(out, run):
            raise ValueError(f"The report {out} lies inside the run {run} it reads; a report never writes into a run. "
                             f"Pass an --out outside it.")
    if out.is_dir():
        raise RunExistsError(f"{out} is a folder; pass the HTML file to write as --out (e.g. {out / 'report.html'}).")
    if out.exists() and not force:
        raise RunExistsError(f"{out} already exists; pass --force (force=True) to replace it, or choose another --out.")
    sections = _sections(runs)  # every run is read (and a bad one refused) before anything is written
    data = _render(sections, title).encode("utf-8")
    atomic_write_bytes(out, data)
    return ReportResult(path=out.absolute(), runs=tuple(str(r) for r in runs), kinds=tuple(s.kind for s in sections),
                        n_images=sum(_n_images(s) for s in sections), n_bytes=len(data))


def _sections(runs: Iterable[str | Path], names: Sequence[str] | None = None) -> list[_Section]:
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("The 'runs' parameter of the report must name at least one run folder. Got none instead.")
    if names is not None and len(names) != len(runs):
        raise ValueError(f"The 'names' parameter of the report must name each of the {len(runs)} runs. Got {len(names)} names.")
    sections = [_section(run, f"run-{i + 1}") for i, run in enumerate(runs)]
    for section, name in zip(sections, names or ()):
        section.path = str(name)
    return sections


def _n_images(section: _Section) -> int:
    return len(section.figures) + len(section.gallery) + sum(_n_images(c) for c in section.children)


def _render(sections: list[_Section], title: str | None) -> str:
    page_title = title or (f"netinvert report: {sections[0].title}" if len(sections) == 1 else
                           f"netinvert report: {len(sections)} runs")
    return _environment().get_template("report.html.j2").render(
        title=page_title, sections=sections, version=__version__,
        created=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def _environment() -> Any:
    """The Jinja2 environment: templates shipped in the package, every value HTML-escaped."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("netinvert.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["breakable"] = _breakable
    return env


def _breakable(key: str) -> Any:
    """A dotted or snake_case key that may wrap after ``.`` and ``_`` (a phone has no room for ``train_config.weight_decay``)."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"([._])", r"\1<wbr>", str(escape(key))))
