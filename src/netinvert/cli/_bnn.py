"""``netinvert bnn train | encode | infer | invert | enumerate | count | sample | robustness``.

``bnn train --out RUN`` writes a BNN run (:func:`netinvert.bnn.run_bnn_training`). Every query reads
one as ``--classifier RUN``, prints its result as JSON and writes a new run folder only with
``--out`` (:func:`netinvert.bnn.run_bnn_query`); it never writes into the run it reads. Old
spellings (a positional RUN, ``--time-s``, ``--n``, ``--samples``, ``--limit``) are hidden aliases
for one release.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import add_alias, add_common, add_out, emit_json

#: The counting methods of bnn.count_preimages, named here so that --help need not import the SAT side
#: (tests/bnn/test_bnn_cli.py checks they are the registry's).
COUNT_METHODS = ("approx", "dp", "exact", "factored", "sampled")
#: netinvert.bnn.list_block_layouts() (a test keeps them equal)
BLOCK_LAYOUT_NAMES = ("halves", "quadrants")

#: The queries made of independent tasks (inputs, labels, test images), which take --jobs and --scheduler
#: (tests/bnn/test_parallel_queries.py checks they are the registry's parallel ones).
PARALLEL_QUERIES = ("infer", "sample", "robustness")

#: query -> one-line help (the queries themselves live in netinvert.bnn.QUERIES)
_QUERIES = {
    "encode": "write the CNF (DIMACS, 'c ind' line) and its variable map into --out",
    "infer": "label test inputs by SAT and compare with PyTorch",
    "invert": "find an input the network labels L",
    "enumerate": "list up to N distinct preimages of L",
    "count": "count preimages of L (projected on the inputs)",
    "sample": "near-uniform preimages (CMSGen) and a per-pixel marginal heat map per label",
    "robustness": "least number of flipped input bits that changes a test image's label",
}


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("bnn", help="binarised neural nets: train, encode to CNF, invert exactly")
    bsub = top.add_subparsers(dest="bnn_command", metavar="BNN_COMMAND")

    p = bsub.add_parser("train", help="train a BNN, export its integer network and verify the export")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None)
    p.add_argument("--hidden", default="32", help="comma-separated hidden widths (default: 32)")
    p.add_argument("--pool", type=int, default=1, help="average-pool images by this factor before binarising")
    p.add_argument("--threshold", type=float, default=0.5, help="input bit = pooled pixel > threshold")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--ternary-delta", type=float, default=None, help="ternary weights: |w| < delta -> 0")
    p.add_argument("--sparsity-weight", type=float, default=0.0, help="L1 penalty on latent weights")
    p.add_argument("--fan-in", type=int, default=None,
                   help="each hidden neuron keeps its FAN_IN largest weights after a dense warm-up (makes exact counting by --dp feasible)")
    p.add_argument("--prune-at", type=float, default=1 / 3, help="with --fan-in: share of the epochs trained densely")
    p.add_argument("--blocks", default=None, choices=BLOCK_LAYOUT_NAMES,
                   help="first-layer block layout: each hidden neuron reads one region of the (square, single-channel) "
                        "image only, so that 'bnn count --method factored' counts the blocks one by one (one hidden layer)")
    p.add_argument("--garbage-rounds", type=int, default=0,
                   help="add a 'garbage' class (label n) fed for this many rounds with inputs the net gives a real label "
                        "that the data does not support (default 0: no garbage class)")
    p.add_argument("--garbage-source", default="sat",
                   help="sat: SAT preimages of each real label under random hints (default); noise: uniform inputs (ablation)")
    p.add_argument("--garbage-samples", type=int, default=2000, help="uniform inputs drawn for the seed and per round")
    p.add_argument("--garbage-preimages", type=int, default=20, help="source candidates per real label and round")
    p.add_argument("--garbage-epochs", type=int, default=2, help="training epochs per garbage round")
    p.add_argument("--garbage-seconds", type=float, default=1.0, help="budget of one SAT query for garbage candidates")
    p.add_argument("--resume", action="store_true",
                   help="with --garbage-rounds: continue an interrupted run of the same options into the same --out from its "
                        "last finished round (a checkpoint is kept in the hidden folder .OUT.partial after each round); "
                        "without a checkpoint, start afresh")
    add_out(p)
    add_common(p, device=False)
    p.set_defaults(func=cmd_train)

    q: dict[str, argparse.ArgumentParser] = {}
    for name, help_ in _QUERIES.items():
        a = q[name] = bsub.add_parser(name, help=help_)
        a.add_argument("--classifier", type=Path, default=None, help="the BNN run to read (written by 'bnn train')")
        a.add_argument("run", nargs="?", type=Path, default=None, help=argparse.SUPPRESS)
        a.add_argument("--encoding", default="totalizer", help="cardinality encoding (seqcounter, sortnet, totalizer, native)")
        a.add_argument("--solver", default="auto", help="SAT solver, or auto: minicard for native, else glucose4 (default)")
        a.add_argument("--seconds", type=float, default=None,
                       help="time budget (per input for infer, per label for count and sample; default: the query's)")
        add_alias(a, "--time-s", dest="seconds", type=float)
        a.add_argument("--search-s", type=float, default=1.0,
                       help="seconds of local search for a phase hint per preimage query (0: plain SAT)")
        a.add_argument("--data-root", default=None)
        a.add_argument("--memory-gb", type=float, default=None,
                       help="address space a solver/counter/sampler subprocess may add (default: 8 GiB; inf: no limit)")
        a.add_argument("--cpu-seconds", type=float, default=None,
                       help="CPU-time limit of a solver/counter/sampler subprocess (default: budget + max(10, budget/10))")
        add_out(a, required=False, what="run folder to write (card.json and the query's files)")
        add_common(a, device=False)
        a.set_defaults(func=cmd_query, query=name)
        if name in PARALLEL_QUERIES:
            a.add_argument("--jobs", type=int, default=1, metavar="N",
                           help="worker processes for the independent tasks (inputs, labels or images), each within "
                                "its own budget; the answer is the serial one (default 1: this process)")
            a.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="run those tasks on the Dask cluster at ADDRESS (tcp://host:8786; needs "
                                "pip install 'netinvert[scale]')")

    q["encode"].add_argument("--label", type=int, default=None, help="add the unit clause 'label is L'")
    q["infer"].add_argument("-n", type=int, default=None, dest="n", help="number of test inputs (default: all)")
    add_alias(q["infer"], "--n", dest="n", type=int)
    a = q["invert"]
    a.add_argument("--label", type=int, required=True)
    a.add_argument("--fixed", default="", help="fixed input bits, e.g. '0=1,5=0'")
    a.add_argument("--near-index", type=int, default=None, help="test image index to stay near")
    a.add_argument("--max-flips", type=int, default=None, help="Hamming radius around --near-index")
    a.add_argument("--hidden-values", default="", help="required hidden values, e.g. '0:3=1' (layer:neuron=bit)")
    a.add_argument("--hint", choices=("search", "train", "none"), default="search",
                   help="phase hint: data-free local search (default), the training input with label L closest "
                        "to the constraints, or none")
    a = q["enumerate"]
    a.add_argument("--label", type=int, required=True)
    a.add_argument("-n", type=int, default=10, dest="n", help="most preimages to list (default: 10)")
    add_alias(a, "--n", "--limit", dest="n", type=int)
    a = q["count"]
    a.add_argument("--label", type=int, required=True)
    g = a.add_mutually_exclusive_group()
    g.add_argument("--method", dest="method", default="exact", choices=COUNT_METHODS,
                   help="exact (Ganak, default), approx, dp or sampled")
    g.add_argument("--exact", dest="method", action="store_const", const="exact", help="Ganak (default)")
    g.add_argument("--approx", dest="method", action="store_const", const="approx", help="ApproxMC")
    g.add_argument("--sampled", dest="method", action="store_const", const="sampled",
                   help="estimate from uniform random inputs (no solver; any net size): share of inputs with a 99%% interval")
    g.add_argument("--dp", dest="method", action="store_const", const="dp",
                   help="exact, every label at once, by dynamic programming over the inputs (no SAT; nets with a small fan-in)")
    a.add_argument("--max-states", type=int, default=40_000_000, help="state limit for --dp and --method factored (~10 GB at the limit)")
    a.add_argument("--no-progress", action="store_true", help="hide the progress bar of --dp and --method factored")
    a.add_argument("-n", type=int, default=None, dest="n", help="draws for --sampled (default: 1,000,000)")
    add_alias(a, "--n", "--samples", dest="n", type=int)
    a.add_argument("--epsilon", type=float, default=0.8)
    a.add_argument("--delta", type=float, default=0.2)
    a = q["sample"]
    a.add_argument("--label", type=int, default=None, help="one label (default: every label)")
    a.add_argument("-n", type=int, default=50, dest="n", help="samples per label (default: 50)")
    add_alias(a, "--n", dest="n", type=int)
    a = q["robustness"]
    a.add_argument("--index", type=int, default=0, help="test image index")
    a.add_argument("--indices", type=_index_list, default=None, metavar="LIST",
                   help="several test images, e.g. '0-19' or '3,5,8' (one row each; with --jobs, in parallel)")
    a.add_argument("--max-k", type=int, default=None)
    a.add_argument("--enumerate-up-to", type=int, default=100_000,
                   help="list all k-flip neighbours exactly when C(n, k) is at most this (0: SAT only)")


def cmd_train(args: argparse.Namespace) -> int:
    from ..bnn import BNNRunConfig, run_bnn_training

    config = BNNRunConfig(dataset=args.dataset, data_root=args.data_root, hidden=_widths(args.hidden), pool=args.pool,
                          threshold=args.threshold, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          ternary_delta=args.ternary_delta, sparsity_weight=args.sparsity_weight, fan_in=args.fan_in,
                          blocks=args.blocks, prune_at=args.prune_at, seed=args.seed, threads=args.threads,
                          garbage_rounds=args.garbage_rounds, garbage_source=args.garbage_source,
                          garbage_samples=args.garbage_samples, garbage_preimages=args.garbage_preimages,
                          garbage_epochs=args.garbage_epochs, garbage_seconds=args.garbage_seconds)
    emit_json(run_bnn_training(config, args.out, force=args.force, resume=args.resume))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from ..bnn import run_bnn_query

    if (args.classifier is None) == (args.run is None):
        raise ValueError("Name the BNN run once, as --classifier RUN (the positional RUN is an old spelling)."
                         if args.run is not None else "Name the BNN run to read: --classifier RUN.")
    params: dict[str, Any] = {"encoding": args.encoding, "solver": args.solver, "seconds": args.seconds,
                              "search_seconds": args.search_s, "data_root": args.data_root, "seed": args.seed,
                              "threads": args.threads, "memory_gb": args.memory_gb, "cpu_seconds": args.cpu_seconds}
    for key in ("label", "n", "near_index", "max_flips", "hint", "method", "max_states", "epsilon", "delta",
                "index", "indices", "max_k", "enumerate_up_to"):
        if hasattr(args, key):
            params[key] = getattr(args, key)
    if hasattr(args, "fixed"):
        params["fixed"] = _pairs(args.fixed, "--fixed", _index)
        params["hidden_values"] = _pairs(args.hidden_values, "--hidden-values", _layer_neuron)
    if hasattr(args, "no_progress"):
        params["progress"] = not args.no_progress
    emit_json(run_bnn_query(args.query, args.classifier or args.run, params, args.out, force=args.force,
                            jobs=getattr(args, "jobs", 1), scheduler=getattr(args, "scheduler", None)))
    return 0


def _index_list(text: str) -> tuple[int, ...]:
    """``'0-3,7'`` as ``(0, 1, 2, 3, 7)`` (ranges inclusive, order kept, a repeat refused)."""
    out: list[int] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        lo, sep, hi = item.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()) or (sep and int(hi) < int(lo)):
            raise argparse.ArgumentTypeError(f"expected non-negative ints and ranges such as '0-19' or '3,5,8'. "
                                             f"Got {item!r} in {text!r} instead.")
        out += range(int(lo), int(hi) + 1) if sep else [int(lo)]
    if not out or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"expected at least one test image, each once. Got {text!r} instead.")
    return tuple(out)


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated ints, e.g. '32' or '100,100'. Got {text!r} instead.") from None


def _index(key: str) -> int | None:
    return int(key) if key.strip().isdigit() else None


def _layer_neuron(key: str) -> tuple[int, int] | None:
    parts = key.split(":")
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(x.strip().isdigit() for x in parts) else None


def _pairs(text: str, flag: str, parse_key: Any) -> dict[Any, int]:
    """``'KEY=BIT,...'`` as a dict; a malformed item or a repeated key is refused (no silent last-wins)."""
    spell = "index=bit" if parse_key is _index else "layer:neuron=bit"
    out: dict[Any, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = item.partition("=")
        k = parse_key(key)
        if not sep or val.strip() not in ("0", "1") or k is None:
            raise ValueError(f"The {flag} option must be '{spell}' items (bit 0 or 1, non-negative ints) separated "
                             f"by commas. Got {item!r} instead.")
        if k in out:
            raise ValueError(f"The {flag} option names {key.strip()!r} twice; give each once. Got {text!r} instead.")
        out[k] = int(val)
    return out
