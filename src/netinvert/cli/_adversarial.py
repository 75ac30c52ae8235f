"""``netinvert adversarial train`` and ``netinvert adversarial attack``: thin layers over :mod:`netinvert.apps.adversarial`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..apps.adversarial import (GENERATOR_CONDITIONINGS, SPLITS, AdversarialRunConfig, AttackConfig, list_generator_draws,
                                list_generator_losses, list_generator_outputs, list_norms, run_adversarial_training, run_attack)
from ._common import add_common, add_out, emit_json, int_list
from ._invert import add_resume

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    adv = sub.add_parser("adversarial", help="adversarial examples: an amortised attack generator, PGD, counterfeits")
    cmds = adv.add_subparsers(dest="adversarial_command", metavar="ADVERSARIAL_COMMAND")

    p = cmds.add_parser("train", help="train a perturbation generator against a classifier run",
                        description="Train a generator G(x, target, z) whose perturbations stay inside an --eps ball of "
                                    "--norm, against the frozen classifier run --classifier; write the run folder --out.")
    p.add_argument("--classifier", type=Path, required=True, help="classifier run folder (netinvert train)")
    p.add_argument("--eps", type=float, default=AdversarialRunConfig.eps,
                   help="budget radius in [0, 1] pixel units (default 0.1)")
    p.add_argument("--norm", default=AdversarialRunConfig.norm, help=f"budget norm: {', '.join(list_norms())} (default linf)")
    budget = p.add_argument_group("training budget (whichever ends first; neither: 2000 steps)")
    budget.add_argument("--steps", type=int, default=None)
    budget.add_argument("--seconds", type=float, default=None)
    p.add_argument("--targeted-fraction", type=float, default=AdversarialRunConfig.targeted_fraction,
                   help="share of each batch trained towards a random target (0: untargeted only; default 0.5)")
    p.add_argument("--conditioning", default=AdversarialRunConfig.conditioning, choices=GENERATOR_CONDITIONINGS,
                   help="how the target is shown to the generator (default vector: hidden in a softmax vector)")
    p.add_argument("--hidden", type=int_list, default=AdversarialRunConfig.hidden, metavar="H,H,...",
                   help="hidden widths of the generator (default 256,256)")
    p.add_argument("--dropout", type=float, default=AdversarialRunConfig.dropout)
    p.add_argument("--output", default=AdversarialRunConfig.output,
                   help=f"how the raw output enters the ball, one of {', '.join(list_generator_outputs())}: squash (the "
                        "norm's smooth squash; default) or corner (L-inf: every pixel moved by exactly eps, trained "
                        "straight through the squash)")
    p.add_argument("--loss", default=AdversarialRunConfig.loss,
                   help=f"per-sample objective of the classifier's margin, one of {', '.join(list_generator_losses())}: "
                        "margin (clamped at -kappa; default) or boundary (sigmoid(margin / kappa): focused on the examples near the decision boundary)")
    p.add_argument("--kappa", type=float, default=AdversarialRunConfig.kappa,
                   help="margin scale in logits: where 'margin' stops pulling, the width of 'boundary' (default 2)")
    p.add_argument("--diversity", type=float, default=AdversarialRunConfig.diversity,
                   help="weight of the mode-seeking term between two draws (default 0.1)")
    p.add_argument("--true-label", action="store_true",
                   help="also show the generator each image's true label, as PGD's loss reads it (stronger against robust models)")
    p.add_argument("--lr", type=float, default=AdversarialRunConfig.lr)
    p.add_argument("--batch-size", type=int, default=AdversarialRunConfig.batch_size)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_out(p)
    add_resume(p)
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = cmds.add_parser("attack", help="attack images with a generator run and PGD; print (and write) the measurements",
                        description="Measure a generator run beside PGD (ours and torchattacks', when installed) at its "
                                    "eps and norm: success, per-target success, perturbation norms, ms/example, transfer "
                                    "to independent verifiers; and counterfeits of the classifier (no budget).")
    p.add_argument("run", type=Path, metavar="RUN", help="run folder of 'netinvert adversarial train'")
    p.add_argument("--dataset", default=None, help="images to attack (default: the classifier's dataset)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default=AttackConfig.split, choices=sorted(SPLITS))
    p.add_argument("-n", type=int, default=None, help="attack the first N images of the split (default all)")
    p.add_argument("--pgd-steps", type=int_list, default=AttackConfig.pgd_steps, metavar="K,K,...",
                   help="PGD baselines' step counts; must hold 20 (default 10,20,40)")
    p.add_argument("--target", type=int, default=None,
                   help="targeted attacks towards this label (default: a random other label per image)")
    p.add_argument("--batch-size", type=int, default=AttackConfig.batch_size, help="images per attack call (default 250)")
    p.add_argument("--draw", default=AttackConfig.draw,
                   help=f"the generator's noise in its rows, one of {', '.join(list_generator_draws())}: random (z ~ N(0, I), "
                        "dropout on; default) or mean (z = 0, dropout off); one forward pass either way")
    p.add_argument("--counterfeit-steps", type=int, default=AttackConfig.counterfeit_steps,
                   help="inversion steps for the counterfeits; 0 skips them (default 300)")
    p.add_argument("--counterfeit-per-label", type=int, default=AttackConfig.counterfeit_per_label)
    p.add_argument("--verifier-epochs", type=int, default=None, help="override the verifiers' epochs (quick checks only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_out(p, required=False, what="new folder to write card.json, metrics.json and the PNG grids into")
    add_common(p)
    p.set_defaults(func=cmd_attack)


def cmd_train(args: argparse.Namespace) -> int:
    config = AdversarialRunConfig(
        classifier=args.classifier, eps=args.eps, norm=args.norm, steps=args.steps, seconds=args.seconds,
        targeted_fraction=args.targeted_fraction, conditioning=args.conditioning, hidden=tuple(args.hidden),
        dropout=args.dropout, output=args.output, loss=args.loss, kappa=args.kappa, diversity=args.diversity, true_label=args.true_label, lr=args.lr, batch_size=args.batch_size,
        seed=args.seed, device=args.device, threads=args.threads,
    )
    emit_json(run_adversarial_training(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress,
                                       checkpoint_steps=args.checkpoint_steps, checkpoint_seconds=args.checkpoint_seconds))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    config = AttackConfig(
        generator_run=args.run, dataset=args.dataset, data_root=args.data_root, split=args.split, n=args.n,
        pgd_steps=tuple(args.pgd_steps), target=args.target, batch_size=args.batch_size, draw=args.draw,
        counterfeit_steps=args.counterfeit_steps, counterfeit_per_label=args.counterfeit_per_label,
        verifier_epochs=args.verifier_epochs, seed=args.seed, device=args.device, threads=args.threads,
    )
    emit_json(run_attack(config, args.out, force=args.force, progress=not args.no_progress))
    return 0
