"""``--jobs N`` and ``--scheduler ADDRESS``: BNN queries over many inputs, labels or images give the serial answer.

The net is a random 16-input BNN on digits pooled 2x2 (so the queries that read test images work),
small enough that every task finishes far inside its budget: then the only fields that may differ
between a serial and a parallel run are the measured seconds, which are dropped before comparing.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from bnn_helpers import random_bnn
from netinvert._parallel import map_tasks, split
from netinvert.bnn import QUERIES, InputBinarizer, export_bnn, list_bnn_queries, run_bnn_query, save_bnn_run
from netinvert.cli import main
from netinvert.cli._bnn import PARALLEL_QUERIES
from netinvert.runs import drop_seconds

#: query -> CLI arguments of a query made of several tasks (30 inputs, 3 labels, 5 images)
QUERY_ARGS = {
    "infer": ["-n", "30"],
    "sample": ["-n", "3"],
    "robustness": ["--indices", "0-3,9"],
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 16-6-3 BNN run on digits pooled 2x2 (label 2 can never win: its head row equals label 0's)."""
    model = random_bnn(16, (6,), 3, seed=11)
    with torch.no_grad():
        model.head.weight[2] = model.head.weight[0]
    run = tmp_path_factory.mktemp("parallel") / "run"
    run.mkdir()
    save_bnn_run(run, model, InputBinarizer(pool=2, threshold=0.5), export_bnn(model),
                 {"dataset": "digits", "data_root": None, "input_image_shape": [1, 8, 8]})
    return run


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and out.strip() else None), err


def test_split_keeps_order_and_sizes():
    assert split(range(7), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1, 2], 5) == [[1], [2]] and split([], 3) == [[]] and split("ab", 1) == [["a", "b"]]


def test_parallel_queries_offered_are_the_registry_s():
    assert sorted(PARALLEL_QUERIES) == sorted(n for n in list_bnn_queries() if QUERIES.get(n).parallel)


def test_jobs_give_the_serial_answer(small_run, capsys, tmp_path):
    """Serial and ``--jobs 2`` print the same JSON (seconds aside) for each query made of many tasks,
    and a parallel ``sample`` writes the same heat maps the serial one writes."""
    for query, args in QUERY_ARGS.items():
        rc, serial, err = _cli(capsys, "bnn", query, "--classifier", small_run, *args, "--out", tmp_path / f"{query}-1")
        assert rc == 0, err
        rc, parallel, err = _cli(capsys, "bnn", query, "--classifier", small_run, *args, "--jobs", 2,
                                 "--out", tmp_path / f"{query}-2")
        assert rc == 0, err
        assert drop_seconds(parallel["result"]) == drop_seconds(serial["result"]), query
        assert parallel["params"] == serial["params"]
        card = json.loads((tmp_path / f"{query}-2" / "card.json").read_text())
        assert card["execution"] == {"jobs": 2, "scheduler": None}
    rows = serial["result"]["results"]  # robustness over five images, each a real answer
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 9] and all(r["certified"] for r in rows)
    for png in ("marginals_label0.png", "marginals_label1.png"):
        assert (tmp_path / "sample-1" / png).read_bytes() == (tmp_path / "sample-2" / png).read_bytes()
    assert not (tmp_path / "sample-2" / "marginals_label2.png").exists()  # label 2 has no preimage


def test_many_images_agree_with_one_image_at_a_time(small_run):
    """A row of ``indices`` is the single-image answer for that index."""
    many = run_bnn_query("robustness", small_run, {"indices": [3, 1]}).result
    for row, index in zip(many["results"], (3, 1)):
        one = run_bnn_query("robustness", small_run, {"index": index}).result
        assert one.pop("encoding") == many["encoding"] and one.pop("solver") == many["solver"]
        assert drop_seconds(row) == drop_seconds(one)


def test_jobs_on_a_single_query_and_bad_values_are_refused(small_run, capsys):
    with pytest.raises(ValueError, match="bnn invert is a single query: jobs and scheduler apply to .*infer"):
        run_bnn_query("invert", small_run, {"label": 0}, jobs=2)
    with pytest.raises(ValueError, match="The 'jobs' parameter of run_bnn_query must be an int in \\[1, inf\\). Got 0"):
        run_bnn_query("infer", small_run, {"n": 2}, jobs=0)
    with pytest.raises(ValueError, match="The 'indices' parameter of bnn robustness must be a sequence of ints in \\[0, 359\\]"):
        run_bnn_query("robustness", small_run, {"indices": [0, 360]})
    for indices, message in (("3-1", "ranges such as '0-19' or '3,5,8'"), ("1,1", "each once")):
        with pytest.raises(SystemExit, match="2"):
            main(["bnn", "robustness", "--classifier", str(small_run), "--indices", indices])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # not offered where there is nothing to share out
        main(["bnn", "invert", "--classifier", str(small_run), "--label", "0", "--jobs", "2"])
    assert "unrecognized arguments: --jobs" in capsys.readouterr().err


def test_scheduler_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'netinvert\[scale\]'"):
        map_tasks(len, None, [[1]], scheduler="tcp://127.0.0.1:8786")


def test_tasks_with_subprocesses_refuse_a_daemonic_dask_worker(monkeypatch):
    """Dask's default workers are daemonic and may not start CMSGen's child: the task says how to fix that."""
    import multiprocessing
    from types import SimpleNamespace

    from netinvert._parallel import _dask_task

    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    with pytest.raises(RuntimeError, match="DASK_DISTRIBUTED__WORKER__DAEMON=False"):
        _dask_task(len, True, None, [1])
    assert _dask_task(lambda shared, chunk: len(chunk), False, None, [1, 2]) == 2


@pytest.mark.slow  # a scheduler and two worker processes start: 15-30 s on 2 shared cores
def test_dask_cluster_gives_the_serial_answer(small_run):
    """The same tasks on a local Dask cluster of two worker processes give the serial answers."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'netinvert[scale]')")
    import dask

    # sample's CMSGen runs in a child process, which Dask's default daemonic workers may not start
    with dask.config.set({"distributed.worker.daemon": False}), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        for query, params in {"sample": {"n": 3}, "robustness": {"indices": [0, 1, 2, 3, 9]}, "infer": {"n": 30}}.items():
            serial = run_bnn_query(query, small_run, params).result
            on_dask = run_bnn_query(query, small_run, params, scheduler=cluster.scheduler_address).result
            assert drop_seconds(on_dask) == drop_seconds(serial), query
