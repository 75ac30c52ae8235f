"""``netinvert bnn train | encode | infer | invert | enumerate | count | sample | robustness``.

Each command reads a BNN run folder (written by ``bnn train``), prints JSON, and writes the same
JSON into the run folder (``<command>.json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_dataset
from ..runs import write_json
from ._common import add_common, emit_json


def _bnn():  # lazy: keep `netinvert --help` fast
    from .. import bnn

    return bnn


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("bnn", help="binarised neural nets: train, encode to CNF, invert exactly")
    bsub = top.add_subparsers(dest="bnn_command", metavar="BNN_COMMAND")

    p = bsub.add_parser("train", help="train a BNN and export its integer network")
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
    p.add_argument("--out", required=True, type=Path)
    add_common(p, device=False)
    p.set_defaults(func=cmd_train)

    def query(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        q = bsub.add_parser(name, help=help_)
        q.add_argument("run", type=Path)
        q.add_argument("--encoding", default="totalizer", help="cardinality encoding (seqcounter, sortnet, totalizer, native)")
        q.add_argument("--solver", default=None, help="SAT solver (default: minicard for native, else glucose4)")
        q.add_argument("--time-s", type=float, default=10.0, help="time budget per query, seconds")
        q.add_argument("--search-s", type=float, default=1.0,
                       help="seconds of local search for a phase hint per preimage query (0: plain SAT)")
        q.add_argument("--data-root", default=None)
        add_common(q, device=False)
        q.set_defaults(func=func)
        return q

    q = query("encode", "write the CNF (DIMACS, 'c ind' line) and its variable map", cmd_encode)
    q.add_argument("--label", type=int, default=None, help="add the unit clause 'label is L'")
    q = query("infer", "label test inputs by SAT and compare with PyTorch", cmd_infer)
    q.add_argument("--n", type=int, default=None, help="number of test inputs (default: all)")
    q = query("invert", "find an input the network labels L", cmd_invert)
    q.add_argument("--label", type=int, required=True)
    q.add_argument("--fixed", default="", help="fixed input bits, e.g. '0=1,5=0'")
    q.add_argument("--near-index", type=int, default=None, help="test image index to stay near")
    q.add_argument("--max-flips", type=int, default=None, help="Hamming radius around --near-index")
    q.add_argument("--hidden-values", default="", help="required hidden values, e.g. '0:3=1' (layer:neuron=bit)")
    q.add_argument("--hint", choices=("train", "none"), default="train",
                   help="phase hint: the training input with label L closest to the constraints (default), or none")
    q = query("enumerate", "list up to N distinct preimages of L", cmd_enumerate)
    q.add_argument("--label", type=int, required=True)
    q.add_argument("--limit", type=int, default=10)
    q = query("count", "count preimages of L (projected on the inputs)", cmd_count)
    q.add_argument("--label", type=int, required=True)
    g = q.add_mutually_exclusive_group()
    g.add_argument("--exact", dest="method", action="store_const", const="exact", help="Ganak (default)")
    g.add_argument("--approx", dest="method", action="store_const", const="approx", help="ApproxMC")
    g.add_argument("--sampled", dest="method", action="store_const", const="sampled",
                   help="estimate from uniform random inputs (no solver; any net size): share of inputs with a 99%% interval")
    g.add_argument("--dp", dest="method", action="store_const", const="dp",
                   help="exact, every label at once, by dynamic programming over the inputs (no SAT; nets with a small fan-in)")
    q.add_argument("--max-states", type=int, default=40_000_000, help="state limit for --dp (~10 GB at the limit)")
    q.add_argument("--no-progress", action="store_true", help="hide the progress bar of --dp")
    q.add_argument("--samples", type=int, default=1_000_000, help="draws for --sampled")
    q.add_argument("--epsilon", type=float, default=0.8)
    q.add_argument("--delta", type=float, default=0.2)
    q.set_defaults(method="exact", time_s=None)  # 60 s a label for the counters, 900 s for --dp (all labels at once)
    q = query("sample", "near-uniform preimages (CMSGen) and a per-pixel marginal heatmap per label", cmd_sample)
    q.add_argument("--label", type=int, default=None, help="one label (default: every label)")
    q.add_argument("--n", type=int, default=50)
    q.set_defaults(time_s=60.0)
    q = query("robustness", "least number of flipped input bits that changes a test image's label", cmd_robustness)
    q.add_argument("--index", type=int, default=0, help="test image index")
    q.add_argument("--max-k", type=int, default=None)
    q.add_argument("--enumerate-up-to", type=int, default=100_000,
                   help="list all k-flip neighbours exactly when C(n, k) is at most this (0: SAT only)")


def cmd_train(args: argparse.Namespace) -> int:
    bnn = _bnn()
    data = load_dataset(args.dataset, args.data_root)
    binarizer = bnn.InputBinarizer(pool=args.pool, threshold=args.threshold)
    x_train, x_test = binarizer(data.x_train), binarizer(data.x_test)
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    torch.manual_seed(args.seed)
    model = bnn.BNN(x_train.shape[1], hidden, data.n_classes, ternary_delta=args.ternary_delta, fan_in=args.fan_in)
    config = bnn.BNNTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                sparsity_weight=args.sparsity_weight, prune_at=args.prune_at)
    t0 = time.perf_counter()
    history = bnn.train_bnn(model, x_train, data.y_train, config)
    seconds = time.perf_counter() - t0
    net = bnn.export_bnn(model)
    torch_pred = model.predict(x_test).numpy()
    agree = int((net.predict(x_test.numpy()) == torch_pred).sum())
    if agree != len(x_test):
        raise RuntimeError(f"Exported network disagrees with PyTorch on {len(x_test) - agree} test inputs.")
    metrics = {"test_accuracy": float((torch_pred == data.y_test.numpy()).mean()),
               "export_agreement": f"{agree}/{len(x_test)}", "sparsity": model.sparsity()}
    card = {"dataset": data.name, "data_root": args.data_root, "input_image_shape": list(data.input_shape),
            "train_config": config.to_dict(), "seed": args.seed, "train_seconds": seconds, **metrics,
            "history": history}
    bnn.save_bnn_run(args.out, model, binarizer, net, card)
    emit_json({"run": str(args.out), "dataset": data.name, "n_inputs": int(x_train.shape[1]), "hidden": list(hidden),
               **metrics, "train_seconds": round(seconds, 2)})
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any], Any]:
    bnn = _bnn()
    model, binarizer, net, card = bnn.load_bnn_run(args.run)
    t0 = time.perf_counter()
    enc = bnn.encode(net, args.encoding)
    enc.stats["encode_seconds"] = time.perf_counter() - t0
    return model, binarizer, net, card, enc


def _solver(args: argparse.Namespace) -> str:
    return args.solver or ("minicard" if args.encoding == "native" else "glucose4")


def _test_bits(args: argparse.Namespace, card: dict[str, Any], binarizer: Any, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset(card["dataset"], args.data_root or card.get("data_root"))
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return binarizer(x).numpy().astype(np.int8), y.numpy()


def _finish(args: argparse.Namespace, name: str, result: dict[str, Any]) -> int:
    write_json(Path(args.run) / f"{name}.json", result)
    emit_json(result)
    return 0


def _pairs(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep or val not in ("0", "1"):
            raise ValueError(f"Expected 'index=0' or 'index=1' items separated by commas. Got {item!r} instead.")
        out[key] = int(val)
    return out


def cmd_encode(args: argparse.Namespace) -> int:
    *_, enc = _load(args)
    stem = f"encoding-{args.encoding}" + (f"-label{args.label}" if args.label is not None else "")
    cnf, vmap = enc.save(args.run, stem, args.label)
    return _finish(args, "encode", {"encoding": args.encoding, "cnf": str(cnf), "variable_map": str(vmap), **enc.stats})


def cmd_infer(args: argparse.Namespace) -> int:
    bnn = _bnn()
    model, binarizer, net, card, enc = _load(args)
    bits, _ = _test_bits(args, card, binarizer)
    bits = bits[: args.n] if args.n else bits
    torch_pred = model.predict(torch.as_tensor(bits)).numpy()
    agree, by_prop, times = 0, 0, []
    with bnn.SatInverter(enc, model=model, solver=_solver(args), time_s=args.time_s, search_s=args.search_s) as inv:
        for x, want in zip(bits, torch_pred):
            r = inv.infer(x)
            agree += int(r.label == want)
            by_prop += int(r.by_propagation)
            times.append(r.seconds)
    return _finish(args, "infer", {"encoding": args.encoding, "solver": _solver(args), "n": len(bits),
                                   "agreement": agree / max(len(bits), 1), "by_propagation": by_prop,
                                   "median_seconds": float(np.median(times)) if times else None,
                                   "max_seconds": float(np.max(times)) if times else None, **enc.stats})


def cmd_invert(args: argparse.Namespace) -> int:
    bnn = _bnn()
    model, binarizer, net, card, enc = _load(args)
    fixed = {int(k): v for k, v in _pairs(args.fixed).items()}
    hidden = {tuple(int(p) for p in k.split(":")): v for k, v in _pairs(args.hidden_values).items()}
    near = None
    if args.near_index is not None:
        near = _test_bits(args, card, binarizer)[0][args.near_index]
    phases = None
    if args.hint == "train":
        phases = bnn.candidate_hint(net, _test_bits(args, card, binarizer, "train")[0], args.label, fixed=fixed, near=near)
    with bnn.SatInverter(enc, model=model, solver=_solver(args), time_s=args.time_s, search_s=args.search_s) as inv:
        r = inv.preimage(args.label, fixed=fixed, hidden=hidden, near=near, max_flips=args.max_flips, phases=phases)
    return _finish(args, "invert", {"encoding": args.encoding, "solver": _solver(args), "hint": args.hint, **r.to_dict()})


def cmd_enumerate(args: argparse.Namespace) -> int:
    bnn = _bnn()
    model, _, _, _, enc = _load(args)
    with bnn.SatInverter(enc, model=model, solver=_solver(args), time_s=args.time_s, search_s=args.search_s) as inv:
        found, status, seconds = inv.preimages(args.label, limit=args.limit)
    return _finish(args, "enumerate", {"label": args.label, "n_found": len(found), "status": status.value,
                                       "complete": status is bnn.SatResult.UNSAT, "seconds": seconds,
                                       "preimages": found})


def cmd_count(args: argparse.Namespace) -> int:
    bnn = _bnn()
    if args.method in ("sampled", "dp"):  # both read the integer net, no encoding
        _, _, net, _ = bnn.load_bnn_run(args.run)
        if not 0 <= args.label < net.n_classes:
            raise ValueError(f"--label must be in [0, {net.n_classes - 1}]. Got {args.label} instead.")
    if args.method == "sampled":
        t0 = time.perf_counter()
        share = bnn.estimate_label_shares(net, args.samples, confidence=0.99, seed=args.seed)[args.label]
        return _finish(args, "count", {"label": args.label, "count": share.count_estimate, "exact": False,
                                       "status": "estimate", "seconds": time.perf_counter() - t0, "method": "sampled",
                                       "n_inputs": net.n_inputs, **{k: v for k, v in share.to_dict().items() if k != "label"}})
    if args.method == "dp":
        rows = bnn.count_all_labels(net, max_states=args.max_states, time_s=900.0 if args.time_s is None else args.time_s,
                                    progress=not args.no_progress)
        return _finish(args, "count", {**rows[args.label].to_dict(), "n_inputs": net.n_inputs,
                                       "all_labels": [r.count for r in rows]})
    *_, enc = _load(args)
    r = bnn.count_preimages(enc, args.label, method=args.method, time_s=60.0 if args.time_s is None else args.time_s, epsilon=args.epsilon,
                            delta=args.delta, seed=args.seed + 1)
    return _finish(args, "count", {**r.to_dict(), "n_inputs": len(enc.inputs), "encoding": args.encoding})


def cmd_sample(args: argparse.Namespace) -> int:
    bnn = _bnn()
    model, binarizer, net, card, enc = _load(args)
    c, h, w = card.get("input_image_shape", [1, 0, 0])
    shape = (h // binarizer.pool, w // binarizer.pool) if h * w else (1, net.n_inputs)
    if shape[0] * shape[1] != net.n_inputs:
        shape = (1, net.n_inputs)
    labels = [args.label] if args.label is not None else list(range(net.n_classes))
    out = []
    for label in labels:
        r = bnn.sample_preimages(enc, label, args.n, time_s=args.time_s, seed=args.seed, model=model)
        png = None
        if len(r.samples):
            png = bnn.save_marginal_heatmap(r.marginals, shape, Path(args.run) / f"marginals_label{label}.png",
                                            title=f"label {label}: {len(r.samples)} samples")
        out.append({"label": label, "status": r.status.value, "n_samples": len(r.samples), "seconds": r.seconds,
                    "heatmap": None if png is None else str(png), "marginals": r.marginals.tolist()})
    return _finish(args, "sample", {"encoding": args.encoding, "results": out})


def cmd_robustness(args: argparse.Namespace) -> int:
    bnn = _bnn()
    model, binarizer, net, card, enc = _load(args)
    x = _test_bits(args, card, binarizer)[0][args.index]
    with bnn.SatInverter(enc, model=model, solver=_solver(args), time_s=args.time_s, search_s=args.search_s) as inv:
        r = inv.min_flips(x, max_k=args.max_k, enumerate_up_to=args.enumerate_up_to)
    return _finish(args, "robustness", {"index": args.index, "encoding": args.encoding, **r.to_dict()})
