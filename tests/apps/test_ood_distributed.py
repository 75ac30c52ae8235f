"""``run_ood`` under torchrun: every training of the garbage-class loop is data parallel, and the ranks
must agree on every round (one garbage set, one final model) or their collective calls would part ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from netinvert.apps.ood import OODRunConfig, run_ood
    dist.init_process_group("gloo")
    config = OODRunConfig(dataset="digits", model="mlp", model_params={"hidden": [16]}, base_epochs=2, rounds=2,
                          steps=3, samples_per_round=20, noise_uniform=16, noise_gaussian=16, epochs_per_round=1,
                          inverter_batch_size=22, verifier_epochs=1, device="cpu", threads=1)
    result = run_ood(config, sys.argv[1], progress=False)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, (result.weights_sha256, result.garbage_size, result.val_accuracy, result.garbage_bias))
    if dist.get_rank() == 0:
        print(json.dumps(every))
    dist.barrier()
    dist.destroy_process_group()
""")


@pytest.mark.slow  # three interpreters start torch: ~15 s on 2 shared cores
def test_two_processes_agree_on_every_round_and_rank0_writes(tmp_path):
    script, scratch = tmp_path / "ood.py", tmp_path / "scratch"
    script.write_text(SCRIPT)
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", NETINVERT_THREADS="1", TMPDIR=str(scratch))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (sha0, size0, val0, bias0), (sha1, size1, val1, bias1) = json.loads(done.stdout)
    # the same final weights (batch-norm statistics included), garbage set and operating point on both ranks
    assert (sha0, size0, val0, bias0) == (sha1, size1, val1, bias1)
    assert 32 < size0 <= 32 + 2 * 20  # the noise seed and at most 20 selected per round
    run = tmp_path / "run"
    for name in ("card.json", "metrics.json", "history.json", "garbage.safetensors", "classifier", "plain", "base"):
        assert (run / name).exists(), name
    assert json.loads((run / "card.json").read_text())["classifier_sha256"] == sha0
    assert len(json.loads((run / "history.json").read_text())) == 3  # round 0 (noise) and two inversion rounds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ood.py", "run", "scratch"]  # no partial folder left
    assert not [p for p in scratch.iterdir() if p.name.startswith("netinvert-ood-rank")]  # rank 1's scratch removed
