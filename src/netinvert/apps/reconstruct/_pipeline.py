"""``netinvert reconstruct``: recover training-like images from a classifier and score them against members.

:func:`run_reconstruction` inverts a classifier run with the TLDR recipe (the ``tldr`` preset: one-hot
conditioning and nine weighted terms, arXiv 2410.16884) or any other preset/losses, draws
class-balanced reconstructions and, when the classifier recorded its members (``netinvert train
--subset N``), scores them with :func:`membership_report`. :func:`run_reconstruction_evaluation`
scores a reconstruction run again, e.g. against member and non-member folders for a model that
recorded none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..._checks import bad_param
from ..._checkpoint import CHECKPOINT_NAME, check_resume, discard_checkpoint, resume_point
from ..._device import resolve_device, seed_everything
from ..._distributed import World, current_world, env_world_size, on_rank0, process_group, rank0_first
from ..._threads import restores_threads, set_threads
from ...data import load_dataset
from ...exceptions import RunFormatError
from ...runs import (check_out, file_sha256, load_weights, read_card, save_weights, staged_run, weights_sha256, write_card,
                     write_json)
from ._evaluate import membership_report
from ._kkt import kkt_reconstruct
from ._per_sample import optimise_inputs

__all__ = ["ReconstructConfig", "ReconstructionResult", "run_reconstruction", "run_reconstruction_evaluation"]

log = logging.getLogger(__name__)
RECONSTRUCTIONS_NAME = "reconstructions.safetensors"
#: How reconstructions are made (see :class:`ReconstructConfig`).
METHODS = ("generator", "per-sample", "kkt")


@dataclass(frozen=True)
class ReconstructConfig:
    """What :func:`run_reconstruction` does.

    Parameters
    ----------
    classifier : path
        A classifier run (``netinvert train``); with ``--subset`` it recorded members and non-members.
    preset : str, default="tldr"
        Inverter settings (:func:`netinvert.inversion.list_presets`); ``default`` is plain inversion,
        the baseline without the TLDR terms.
    losses : sequence of "name:weight", optional
        Replace the preset's terms (e.g. to drop one for an ablation).
    steps, seconds : optional
        The generator's budget (whichever ends first); neither: 2,000 steps.
    n : int, optional
        Reconstructions, drawn class-balanced (default: as many as the members, else 100).
    method : {"generator", "per-sample", "kkt"}, default="generator"
        ``generator``: one conditioned generator for all reconstructions (TLDR); ``per-sample``: each
        reconstruction's pixels optimised directly under the same losses
        (:func:`~netinvert.apps.reconstruct.optimise_inputs`, the baseline without a generator); ``kkt``:
        the KKT attack of Haim et al. in its multi-class form (:func:`~netinvert.apps.reconstruct.kkt_reconstruct`;
        the preset and losses are not used), keeping the ``n`` candidates with the largest multipliers.
    kkt_candidates : float, default=2.0
        With ``kkt``: candidates per reconstruction kept (the papers optimise about twice the training set).
    image_prior : path, optional
        With ``generator``: a folder written by ``netinvert prior`` (:func:`netinvert.inversion.run_image_prior`);
        the generator then picks codes of that decoder instead of pixels, so every reconstruction is an image the
        prior can draw. Train the prior on images that are neither members nor non-members (``netinvert prior
        --exclude-members RUN``), or it could favour one set.
    seed, device, threads
    """

    classifier: str | Path
    preset: str = "tldr"
    method: str = "generator"
    losses: tuple[str, ...] | None = None
    steps: int | None = None
    seconds: float | None = None
    n: int | None = None
    kkt_candidates: float = 2.0
    image_prior: str | Path | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.losses is not None:
            object.__setattr__(self, "losses", tuple(self.losses))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["classifier"] = str(self.classifier)
        d["losses"] = None if self.losses is None else list(self.losses)
        d["image_prior"] = None if self.image_prior is None else str(self.image_prior)
        return d

    def validate(self) -> ReconstructConfig:
        from ...inversion import list_presets

        if self.preset not in list_presets():
            raise bad_param("ReconstructConfig", "preset", f"one of {list_presets()}", self.preset)
        if self.method not in METHODS:
            raise bad_param("ReconstructConfig", "method", f"one of {list(METHODS)}", self.method)
        if self.image_prior is not None and self.method != "generator":
            raise ValueError(f"image_prior (--image-prior) shapes the generator's output; --method {self.method} has no "
                             "generator. Use --method generator or leave the prior out.")
        for name in ("steps", "n", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise bad_param("ReconstructConfig", name, "None or an int in [1, inf)", v)
        if self.seconds is not None and (isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float))
                                         or not self.seconds > 0):
            raise bad_param("ReconstructConfig", "seconds", "None or a float > 0", self.seconds)
        if isinstance(self.kkt_candidates, bool) or not isinstance(self.kkt_candidates, (int, float)) \
                or not self.kkt_candidates >= 1:
            raise bad_param("ReconstructConfig", "kkt_candidates", "a float >= 1", self.kkt_candidates)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad_param("ReconstructConfig", "seed", "an int in [0, inf)", self.seed)
        if self.device not in ("cpu", "cuda", "auto"):
            raise bad_param("ReconstructConfig", "device", "one of ['cpu', 'cuda', 'auto']", self.device)
        return self


@dataclass(frozen=True)
class ReconstructionResult:
    """What a reconstruction (or its evaluation) wrote; ``report`` is ``None`` without members."""

    run_dir: Path | None
    n: int
    steps: int
    report: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return d


def _save_gallery(recon: torch.Tensor, details: dict[str, Any], members: torch.Tensor, non_members: torch.Tensor,
                  path: Path, best: int = 12) -> None:
    """The ``best`` reconstructions by matched member SSIM, each beside its matched member and its matched non-member."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mm, mn = details["member_match"], details["non_member_match"]
    order = mm.ssim.argsort(descending=True)[:best].tolist()
    fig, axes = plt.subplots(3, len(order), figsize=(1.0 * len(order) + 1, 3.6), squeeze=False)
    for col, i in enumerate(order):
        r = int(mm.rows[i])
        trio = [(recon[r], "reconstruction"), (members[int(mm.cols[i])], f"member {float(mm.ssim[i]):.2f}"),
                (non_members[int(mn.cols[i])], f"non-member {float(mn.ssim[i]):.2f}")]
        for row, (img, text) in enumerate(trio):
            ax = axes[row][col]
            arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
            ax.imshow(arr, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(text, fontsize=6)
    fig.suptitle("best reconstructions (top) with their matched member (middle) and matched non-member (bottom), SSIM",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_report(tmp: Path, recon: torch.Tensor, members: torch.Tensor, non_members: torch.Tensor, seed: int,
                  device: torch.device | None = None) -> dict[str, Any]:
    report, details = membership_report(recon, members, non_members, seed=seed, device=device)
    _save_gallery(recon, details, members, non_members, tmp / "matches.png")
    write_json(tmp / "matching.json", {"member": {"rows": details["member_match"].rows.tolist(),
                                                  "cols": details["member_match"].cols.tolist(),
                                                  "ssim": details["member_match"].ssim.tolist()},
                                       "non_member": {"rows": details["non_member_match"].rows.tolist(),
                                                      "cols": details["non_member_match"].cols.tolist(),
                                                      "ssim": details["non_member_match"].ssim.tolist()}})
    return report.to_dict()


def _recorded_members(classifier: Path, card: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The member and non-member images a classifier run recorded, or ``None``."""
    from ...models import load_members

    if not isinstance(card.get("members"), dict):
        return None
    m, nm = load_members(classifier)
    data = load_dataset(card["dataset"], card.get("data_root"))
    return data.x_train[m], data.x_train[nm]


@restores_threads
def run_reconstruction(config: ReconstructConfig, out: str | Path, *, force: bool = False, resume: bool = False,
                       progress: bool = True, checkpoint_seconds: float | None = 60.0,
                       checkpoint_steps: int | None = None) -> ReconstructionResult:
    """Invert ``config.classifier`` with the reconstruction recipe and write the run folder ``out``.

    ``out`` holds the generator (``weights.safetensors`` and the inversion card fields), the
    reconstructions (``reconstructions.safetensors``: ``x``, ``labels``), ``samples.png`` and, when the
    classifier recorded members, ``metrics.json`` with :func:`membership_report`'s numbers,
    ``matching.json`` and ``matches.png`` (the best reconstructions beside their matched member and
    non-member).

    The generator's training writes a checkpoint into the staging folder ``.OUT.partial`` every
    ``checkpoint_seconds`` and/or ``checkpoint_steps`` and on Ctrl-C or SIGTERM; ``resume=True``
    continues it (to the reconstructions an uninterrupted run makes, on the CPU). Per-sample
    optimisation and the KKT attack keep no checkpoint: rerun them.

    Under ``torchrun`` the generator method is data parallel (:meth:`Inverter.fit
    <netinvert.inversion.Inverter.fit>`): every process trains the generator on its share of each
    global batch and rank 0 alone writes. Per-sample optimisation and the KKT attack couple all their
    candidates in one objective (batch terms; the KKT sum over every candidate), so they run in one process
    and are refused under torchrun.

    Raises
    ------
    ValueError, UnknownNameError
        On a bad config or ``out`` (before any work).
    """
    if not isinstance(config, ReconstructConfig):
        raise ValueError(f"run_reconstruction takes a ReconstructConfig. Got {type(config).__name__} instead.")
    config.validate()
    device = resolve_device(config.device)
    if config.method != "generator" and (env_world_size() > 1 or current_world().distributed):  # before any rank waits
        raise ValueError(f"--method {config.method} couples all its candidates in one objective and runs in one "
                         "process; start it without torchrun (only --method generator is data parallel).")
    with process_group(device) as (world, device):
        return _reconstruction_run(config, out, world, device, force=force, resume=resume, progress=progress,
                                   checkpoint_seconds=checkpoint_seconds, checkpoint_steps=checkpoint_steps)


def _reconstruction_run(config: ReconstructConfig, out: str | Path, world: World, device: torch.device, *, force: bool,
                        resume: bool, progress: bool, checkpoint_seconds: float | None,
                        checkpoint_steps: int | None) -> ReconstructionResult:
    """:func:`run_reconstruction` once the world is known: rank 0 checks and writes, every rank trains."""
    from ...inversion import Inverter, make_objective, preset
    from ...models import load_classifier_run

    classifier = Path(config.classifier)

    inputs = [classifier, config.image_prior]

    def refuse_early() -> Path:
        check_resume(out, force=force, resume=resume)
        return check_out(out, force=force, inputs=inputs)

    out = rank0_first(refuse_early, world)
    threads = set_threads(config.threads)
    clf, card = load_classifier_run(classifier, device)
    settings = preset(config.preset)
    if config.losses is not None:
        settings["losses"] = config.losses
    if settings.get("losses") is not None:
        make_objective(settings["losses"])  # an unknown loss name or weight fails here, before any training
    prior_sha = None
    if config.image_prior is not None:  # a wrong folder or shape is refused here, before any training
        from ...inversion import load_image_prior

        prior = load_image_prior(config.image_prior)
        if tuple(prior.input_shape) != tuple(clf.input_shape):
            raise ValueError(f"The image prior {config.image_prior} draws {tuple(prior.input_shape)} images; the classifier "
                             f"reads {tuple(clf.input_shape)}.")
        settings["image_prior"], prior_sha = prior, weights_sha256(config.image_prior)
    recorded = _recorded_members(classifier, card)
    n = config.n or (len(recorded[0]) if recorded is not None else 100)
    # the prior's decoder is part of the generator's checkpoint: a resume must use the same one the card names
    resume_info = {"config": config.to_dict(), "classifier_sha256": weights_sha256(classifier), "image_prior_sha256": prior_sha}
    resume_from = rank0_first(lambda: resume_point(out, resume_info, resume=resume, force=force), world)
    seed_everything(config.seed)
    steps = config.steps if config.steps is not None or config.seconds is not None else 2000
    if config.method == "generator":
        inverter = Inverter(clf, **settings, seed=config.seed, device=device)
        inverter._check_world(world)  # on every rank, before any collective call: all refuse together
    else:
        inverter = None

    def fit_alongside() -> None:
        """A rank other than 0: the generator's training, without checkpoint or folder."""
        assert inverter is not None  # only the generator method runs under torchrun
        inverter.fit(steps=steps, seconds=config.seconds, progress=False, resume_from=resume_from)

    return on_rank0(lambda: _fit_and_write(config, out, clf, card, inverter, recorded, n, steps, resume_info,
                                           resume_from, device, threads, force=force, resume=resume,
                                           progress=progress, checkpoint_seconds=checkpoint_seconds,
                                           checkpoint_steps=checkpoint_steps),
                    fit_alongside, world)


def _fit_and_write(config: ReconstructConfig, out: Path, clf: torch.nn.Module, card: dict[str, Any], inverter: Any,
                   recorded: tuple[torch.Tensor, torch.Tensor] | None, n: int, steps: int | None,
                   resume_info: dict[str, Any], resume_from: Path | None, device: torch.device, threads: int, *,
                   force: bool, resume: bool, progress: bool, checkpoint_seconds: float | None,
                   checkpoint_steps: int | None) -> ReconstructionResult:
    """Make the reconstructions in the staged run folder, score them and write the run (rank 0's part)."""
    from ...inversion import default_losses, preset
    from ...report import save_class_grid

    classifier = Path(config.classifier)
    k = int(clf.n_classes)
    kkt_fields: dict[str, Any] = {}
    with staged_run(out, force=force, resume=resume, keep_on_interrupt=True, inputs=[classifier, config.image_prior]) as tmp:
        t0 = time.perf_counter()
        if inverter is not None:
            inverter.fit(steps=steps, seconds=config.seconds, progress=progress, checkpoint=tmp / CHECKPOINT_NAME,
                         checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds,
                         checkpoint_info=resume_info, resume_from=resume_from)
            x, y = inverter.sample_classes(-(-n // k), seed=config.seed)
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed))[:n].sort().values
            x, y = x[keep], y[keep]
            done = len(inverter.history_["step"])
        elif config.method == "kkt":
            kkt = kkt_reconstruct(clf, max(n, round(config.kkt_candidates * n)), steps=steps, seconds=config.seconds,
                                  seed=config.seed, progress=progress)
            x, y = kkt.top(n)
            done = kkt.steps
            kkt_fields = {"kkt_residual": kkt.residual, "kkt_candidates": len(kkt.x), "kkt_residual_history": kkt.history}
        else:
            settings = preset(config.preset)
            losses = config.losses or settings.get("losses") or default_losses(clf)  # what the generator would use
            x, y, done = optimise_inputs(clf, losses, n, steps=steps, seconds=config.seconds, seed=config.seed)
        fit_seconds = time.perf_counter() - t0
        fields_ = {"config": config.to_dict(), "classifier_run": str(classifier.absolute()),
                   "classifier_sha256": weights_sha256(classifier),
                   "image_prior_sha256": resume_info["image_prior_sha256"]}
        if inverter is not None:
            inverter.save(tmp, fields_)
        elif config.method == "kkt":
            write_card(tmp, {"kind": "reconstruction", **fields_})
            save_weights(tmp / "candidates.safetensors", {"x": kkt.x.contiguous(), "labels": kkt.labels.contiguous(),
                                                          "lambdas": kkt.lambdas.contiguous()})
        else:
            write_card(tmp, {"kind": "reconstruction", **fields_})
        save_weights(tmp / RECONSTRUCTIONS_NAME, {"x": x.contiguous(), "labels": y.contiguous()})
        save_class_grid(x, y, tmp / "samples.png", class_names=card.get("class_names"), title="reconstructions per class")
        report = None if recorded is None else _write_report(tmp, x, recorded[0], recorded[1], config.seed, device)
        metrics = {"n": len(x), "steps": done, "fit_seconds": fit_seconds, **kkt_fields, "membership": report}
        write_json(tmp / "metrics.json", metrics)
        extra = read_card(tmp)
        extra.update({"kind": "reconstruction", "seed": config.seed, "device": str(device), "threads": threads,
                      "reconstructions_sha256": file_sha256(tmp / RECONSTRUCTIONS_NAME), "membership": report})
        write_card(tmp, extra)
        discard_checkpoint(tmp)
    log.info("wrote %s (%d reconstructions%s)", out, len(x),
             "" if report is None else f", advantage {report['advantage']:+.4f}")
    return ReconstructionResult(run_dir=out, n=len(x), steps=metrics["steps"], report=report)


def _image_set(folder: str | Path, shape: Sequence[int], what: str) -> torch.Tensor:
    """Every image of a folder (``FOLDER/<any name>/*.png``) converted to ``shape``."""
    from ..ood import load_ood_set

    try:
        x = load_ood_set("image-folder", tuple(shape), None, root=folder, split="all")
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"The {what} folder {folder}: {exc}") from None
    if len(x) == 0:
        raise ValueError(f"The {what} folder {folder} holds no images.")
    return x


@restores_threads
def run_reconstruction_evaluation(run: str | Path, out: str | Path | None = None, *,
                                  members: str | Path | torch.Tensor | None = None,
                                  non_members: str | Path | torch.Tensor | None = None, seed: int = 0,
                                  device: str | torch.device | None = "auto", threads: int | None = None,
                                  force: bool = False) -> ReconstructionResult:
    """Score a reconstruction run against members and non-members (recorded by its classifier, or given).

    ``members`` / ``non_members``: folders of images (``FOLDER/<any name>/*.png``, converted to the
    reconstructions' shape) or image tensors ``(N, C, H, W)`` in [0, 1]; neither: the classifier's record.
    ``device`` (``cpu``, ``cuda`` or ``auto``) is where the SSIM matrices are computed.

    Raises
    ------
    RunFormatError
        If ``run`` is not a reconstruction run.
    ValueError
        If no members are known (the classifier recorded none and no folders were given), only one folder
        is given, or a folder is empty or cannot be converted to the reconstructions' shape.
    """
    run = Path(run)
    card = read_card(run, required=("kind",))
    if card["kind"] != "reconstruction":
        raise RunFormatError(f"{run} holds a {card['kind']!r} run, not one of 'netinvert reconstruct'.")
    if (members is None) != (non_members is None):
        raise ValueError("Give both --members and --non-members (the advantage is their difference), or neither to use the "
                         "classifier's recorded members.")
    if out is not None:
        out = check_out(out, force=force, inputs=[run])
    dev = resolve_device(device)
    set_threads(threads)
    recon = load_weights(run / RECONSTRUCTIONS_NAME)["x"]
    if members is not None:
        m = members if isinstance(members, torch.Tensor) else _image_set(members, recon.shape[1:], "members")
        nm = non_members if isinstance(non_members, torch.Tensor) else _image_set(non_members, recon.shape[1:], "non-members")
    else:
        from ...models import load_classifier_run

        classifier = Path(card.get("classifier_run", ""))
        _, clf_card = load_classifier_run(classifier, expected_sha256=card.get("classifier_sha256"))
        recorded = _recorded_members(classifier, clf_card)
        if recorded is None:
            raise ValueError(f"{classifier} recorded no members (it was trained on its whole split): pass --members FOLDER "
                             "and --non-members FOLDER.")
        m, nm = recorded
    if out is None:
        report, _ = membership_report(recon, m, nm, seed=seed, device=dev)
        return ReconstructionResult(run_dir=None, n=len(recon), steps=0, report=report.to_dict())
    with staged_run(out, force=force, inputs=[run]) as tmp:
        report = _write_report(tmp, recon, m, nm, seed, dev)
        write_json(tmp / "metrics.json", {"membership": report})
        def named(x: Any) -> str | None:
            return None if x is None else f"{len(x)} images given in memory" if isinstance(x, torch.Tensor) else str(x)

        write_card(tmp, {"kind": "reconstruction-evaluation", "run": str(run.absolute()), "seed": seed, "device": str(dev),
                         "members": named(members), "non_members": named(non_members), "membership": report})
    return ReconstructionResult(run_dir=Path(out), n=len(recon), steps=0, report=report)
