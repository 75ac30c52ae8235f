"""BNN training and export: the integer network must equal PyTorch's argmax exactly."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from netinvert.bnn import BNN, InputBinarizer, IntegerBNN, export_bnn, load_bnn_run, save_bnn_run
from netinvert.exceptions import RunFormatError



def all_inputs(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)


def _hand_neurons() -> BNN:
    """Four inputs, five hand-set neurons: z = gamma * y + beta with y = sum_j A_j x_j."""
    model = BNN(4, (5,), 2)
    with torch.no_grad():
        model.linears[0].weight.copy_(torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, 1], [-1, -1, 1, 1], [1, 1, 1, -1]]))
        bn = model.norms[0]
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.eps = 0.0
        # tie (z = 0 exactly at y = 2 -> +1), negative scale, zero scale with beta >= 0 / < 0, negative tie
        bn.weight.copy_(torch.tensor([1.0, -1.0, 0.0, 0.0, -0.5]))
        bn.bias.copy_(torch.tensor([-2.0, 0.0, 0.0, -0.5, 1.0]))
        model.head.weight.copy_(torch.tensor([[1.0, -1, 1, -1, 1], [-1, 1, -1, 1, -1]]))
    return model.eval()


def test_folding_handmade_neurons_matches_torch_on_every_input():
    model = _hand_neurons()
    net = export_bnn(model)
    x = all_inputs(4)
    want = (model.hidden_activations(torch.as_tensor(x))[0] > 0).numpy().astype(int)
    got = net.hidden(x)[0]
    np.testing.assert_array_equal(got, want)
    lits, bounds = net.layers[0]
    # neuron 0: y = 2S - 4 >= 2 <=> S >= 3 (the tie fires: sign(0) = +1)
    assert bounds[0] == 3 and list(lits[0]) == [1, 1, 1, 1]
    # neuron 1: negative scale -> y <= 0 -> literals negated
    assert list(lits[1]) == [-1, 1, -1, 1] and bounds[1] == 2
    # zero scale: constant +1 (beta = 0, sign(0) = +1) and constant -1 (beta < 0)
    assert want[:, 2].all() and bounds[2] == 0
    assert not want[:, 3].any() and bounds[3] == 5
    # neuron 4: -0.5 y + 1 >= 0 <=> y <= 2 (tie at y = 2 fires)
    assert list(lits[4]) == [-1, -1, -1, 1] and bounds[4] == 1
    y4 = (2 * x - 1) @ np.array([1, 1, 1, -1])
    np.testing.assert_array_equal(want[:, 4], (y4 <= 2).astype(int))
    np.testing.assert_array_equal(net.predict(x), model.predict(torch.as_tensor(x)).numpy())


def test_argmax_ties_take_lowest_index():
    model = _hand_neurons()
    with torch.no_grad():
        model.head.weight.copy_(torch.ones(2, 5))  # identical rows: every input ties
    net = export_bnn(model)
    x = all_inputs(4)
    assert (model.predict(torch.as_tensor(x)) == 0).all()
    assert (net.predict(x) == 0).all()


@pytest.mark.parametrize("fixture", ["tiny", "tiny_ternary"])
def test_export_equals_torch_on_all_inputs(fixture, request):
    model, x, labels = request.getfixturevalue(fixture)
    np.testing.assert_array_equal(export_bnn(model).predict(x), labels)


def test_ternary_weights_have_zeros(tiny_ternary):
    model = tiny_ternary[0]
    assert 0 < model.sparsity() < 1
    assert (export_bnn(model).layers[0][0] == 0).any()


def test_trained_digits_bnn_exports_exactly(digits_bnn, digits_net):
    model, bits, labels = digits_bnn
    torch_pred = model.predict(torch.as_tensor(bits)).numpy()
    np.testing.assert_array_equal(digits_net.predict(bits), torch_pred)
    assert (torch_pred == labels).mean() > 0.7  # it learned something
    assert set(np.unique(digits_net.layers[0][0])) <= {-1, 1}


def test_run_folder_round_trip(tmp_path, tiny):
    model, x, labels = tiny
    net = export_bnn(model)
    save_bnn_run(tmp_path, model, InputBinarizer(pool=2, threshold=0.25), net, {"dataset": "none"})
    r = load_bnn_run(tmp_path)
    model2, binarizer, net2, card = r.model, r.binarizer, r.net, r.card
    assert binarizer == InputBinarizer(pool=2, threshold=0.25)
    assert "pixel > 0.25" in card["binarizer"]["rule"]
    np.testing.assert_array_equal(model2.predict(torch.as_tensor(x)).numpy(), labels)
    np.testing.assert_array_equal(net2.predict(x), labels)


def test_malformed_card_raises(tmp_path):
    with pytest.raises(RunFormatError, match="malformed"):
        IntegerBNN.from_dict({"layers": [{"lits": [[1]]}], "head": [[1]]})
    with pytest.raises(FileNotFoundError):
        load_bnn_run(tmp_path / "missing")


def test_input_binarizer_rule():
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, :2, :2] = 0.9
    assert InputBinarizer()(img).sum() == 4
    pooled = InputBinarizer(pool=2, threshold=0.5)(img)
    assert pooled.shape == (1, 4) and pooled.tolist() == [[True, False, False, False]]


def test_a_card_whose_integer_net_disagrees_with_the_weights_is_refused(tmp_path):
    """The CNF is built from the card: an edited or stale card must not encode another network."""
    import json

    import pytest
    import torch

    from netinvert.bnn import BNN, InputBinarizer, export_bnn, load_bnn_run, save_bnn_run
    from netinvert.exceptions import RunFormatError

    torch.manual_seed(0)
    model = BNN(6, (4,), 3).eval()
    save_bnn_run(tmp_path, model, InputBinarizer(), export_bnn(model), {})
    load_bnn_run(tmp_path)  # consistent: loads
    card = json.loads((tmp_path / "card.json").read_text())
    card["integer_net"]["head"][0][0] *= -1
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(RunFormatError, match="does not match its weights"):
        load_bnn_run(tmp_path)


def test_fan_in_training_prunes_each_neuron_and_survives_a_run_folder(tmp_path, digits):
    """With fan_in, every hidden neuron reads at most that many inputs after training (the head stays
    dense), the export and a reloaded run agree with PyTorch, and the net still learned digits."""
    from netinvert.bnn import BNNTrainConfig, train_bnn

    binarizer = InputBinarizer(threshold=0.5)
    x, xt = binarizer(digits.x_train), binarizer(digits.x_test)
    torch.manual_seed(0)
    model = BNN(64, (16,), 10, fan_in=6)
    train_bnn(model, x, digits.y_train, BNNTrainConfig(epochs=6, seed=0))
    q = model.linears[0].quantized_weight().detach()
    assert ((q != 0).sum(1) <= 6).all() and ((q != 0).sum(1) >= 1).all()
    assert (model.head.quantized_weight() != 0).all()
    net = export_bnn(model)
    assert ((net.layers[0][0] != 0).sum(1) <= 6).all()
    pred = model.predict(xt).numpy()
    np.testing.assert_array_equal(net.predict(xt.numpy()), pred)
    assert (pred == digits.y_test.numpy()).mean() > 0.5
    save_bnn_run(tmp_path, model, binarizer, net, {"dataset": "digits"})
    r = load_bnn_run(tmp_path)
    model2, net2, card = r.model, r.net, r.card
    assert card["model_params"]["fan_in"] == 6
    np.testing.assert_array_equal(model2.predict(xt).numpy(), pred)
    np.testing.assert_array_equal(net2.predict(xt.numpy()), pred)


def test_fan_in_and_prune_at_are_validated(caplog):
    from netinvert.bnn import BNNTrainConfig, train_bnn

    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="fan_in"):
            BNN(8, (4,), 2, fan_in=bad)
    x, y = torch.randint(0, 2, (16, 8)).bool(), torch.randint(0, 2, (16,))
    with pytest.raises(ValueError, match="prune_at"):
        train_bnn(BNN(8, (4,), 2, fan_in=3), x, y, BNNTrainConfig(epochs=2, prune_at=1.0))
    with caplog.at_level("WARNING", logger="netinvert"):
        train_bnn(BNN(8, (4,), 2, fan_in=3), x, y, BNNTrainConfig(epochs=1))
    assert "initial random weights" in caplog.text


def test_run_bnn_query_without_out_writes_nothing_and_checks_params(tmp_path):
    from bnn_helpers import random_bnn

    from netinvert.bnn import BNNRun, run_bnn_query

    model = random_bnn(9, (5,), 3, seed=5)
    save_bnn_run(tmp_path, model, InputBinarizer(), export_bnn(model), {"dataset": "digits"})
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run_bnn_query("count", tmp_path, {"label": 1, "method": "dp"})
    brute = int((export_bnn(model).predict(all_inputs(9)) == 1).sum())
    assert r.result["count"] == brute == r.value.count and r.run_dir is None
    assert isinstance(load_bnn_run(tmp_path), BNNRun) and sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(ValueError, match="Unknown BNN query parameter"):
        run_bnn_query("count", tmp_path, {"labl": 1})
    with pytest.raises(KeyError, match="Valid names"):
        run_bnn_query("bogus", tmp_path, {})


def test_block_masks_keep_each_neuron_in_its_region_through_training(digits):
    """A quadrant layout on the 8x8 digits: neurons 0-2 read only the top-left 4x4 quadrant, ... before and
    after training (train_bnn prunes only with fan_in); the mask reaches the export. An odd side gives the
    top and left blocks the middle row and column; a non-square input count and a width the regions do not
    divide are refused."""
    from netinvert.bnn import BNNTrainConfig, block_mask, list_block_layouts, train_bnn

    assert list_block_layouts() == ["halves", "quadrants"]
    m = block_mask("quadrants", 64, 12)
    assert m.shape == (12, 64) and (m.sum(1) == 16).all() and (m.sum(0) == 3).all()
    quads = [m[i].reshape(8, 8) for i in (0, 3, 6, 9)]  # one neuron of each block, in the documented order
    assert quads[0][:4, :4].all() and quads[1][:4, 4:].all() and quads[2][4:, :4].all() and quads[3][4:, 4:].all()
    np.testing.assert_array_equal(block_mask("halves", 16, 4).numpy(), np.repeat(np.eye(2), [2, 2], 0).repeat(8, 1))
    with pytest.raises(ValueError, match="square image of at least 2 x 2"):
        block_mask("halves", 48, 4)
    odd = block_mask("quadrants", 49, 4).reshape(4, 7, 7)  # a 7x7 image: the middle row and column go top and left
    assert odd[0, :4, :4].all() and odd[0].sum() == 16 and odd[3, 4:, 4:].all() and odd[3].sum() == 9
    assert (block_mask("halves", 49, 2).sum(1) == torch.tensor([28.0, 21.0])).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        BNN(64, (10,), 10, blocks="quadrants")
    with pytest.raises(ValueError, match="no 'fan_in'"):
        BNN(64, (12,), 10, blocks="quadrants", fan_in=4)
    x = InputBinarizer(threshold=0.3)(digits.x_train)
    torch.manual_seed(0)
    model = BNN(64, (12,), 10, blocks="quadrants")
    train_bnn(model, x, digits.y_train, BNNTrainConfig(epochs=2, seed=0))
    reads = (export_bnn(model).layers[0][0] != 0).astype(float)
    assert (reads <= m.numpy()).all() and reads.sum() > 0.9 * m.sum().item()


def test_a_card_with_an_impossible_block_layout_is_a_run_format_error(tmp_path):
    """An edited card (blocks together with fan_in) cannot be loaded: RunFormatError, not a bare ValueError."""
    torch.manual_seed(0)
    model = BNN(16, (4,), 3, blocks="halves")
    save_bnn_run(tmp_path, model, InputBinarizer(pool=2), export_bnn(model), {"dataset": "digits"})
    card = json.loads((tmp_path / "card.json").read_text())
    card["model_params"]["fan_in"] = 4
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(RunFormatError, match="consistent BNN run"):
        load_bnn_run(tmp_path)
