"""Reconstruction scoring on cases with known answers: identical sets, permuted copies, noisy copies vs strangers."""

from __future__ import annotations

import pytest
import torch

from netinvert.apps.reconstruct import haim_dssim, match, membership_report, ncc_matrix
from netinvert.metrics import ssim_matrix


def _split(digits, n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    x = digits.x_train
    return x[:n], x[n:2 * n]


def test_identical_sets_match_at_one(digits) -> None:
    members, non_members = _split(digits)
    report, details = membership_report(members.clone(), members, non_members, n_bootstrap=200)
    assert report.member_mean_ssim == pytest.approx(1.0, abs=1e-5)
    assert report.member_counts == {">=0.4": 30, ">=0.5": 30, ">=0.6": 30, ">=0.7": 30}
    assert torch.equal(details["member_match"].cols, torch.arange(30))
    assert report.haim_member_dssim == pytest.approx(0.0, abs=1e-5)
    assert report.advantage > 0 and report.advantage_ci95[0] > 0


def test_a_permuted_copy_is_recovered(digits) -> None:
    members, _ = _split(digits)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    result = match(ssim_matrix(members[perm], members))
    assert torch.equal(result.rows, torch.arange(30)) and torch.equal(result.cols, perm)


def test_noisy_copies_favour_members_and_strangers_do_not(digits) -> None:
    members, non_members = _split(digits, 40)
    g = torch.Generator().manual_seed(0)
    noisy = (members + 0.15 * torch.randn(members.shape, generator=g)).clamp(0, 1)
    report, _ = membership_report(noisy, members, non_members, n_bootstrap=500)
    assert report.advantage_ci95[0] > 0.1 and report.member_counts[">=0.5"] > report.non_member_counts[">=0.5"]
    # Reconstructions that are other digits of the same data: no membership signal (the interval covers 0).
    strangers = digits.x_train[200:240]
    null, _ = membership_report(strangers, members, non_members, n_bootstrap=500)
    assert null.advantage_ci95[0] < 0 < null.advantage_ci95[1]


def test_ncc_ignores_brightness_and_contrast(digits) -> None:
    x = digits.x_train[:5]
    ncc = ncc_matrix(0.5 * x + 0.2, x)
    assert torch.allclose(ncc.diagonal(), torch.ones(5), atol=1e-5)
    assert haim_dssim(x, x, best=3)["mean_dssim_best"] == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs(digits) -> None:
    members, non_members = _split(digits, 10)
    with pytest.raises(ValueError, match="only 5 members"):
        membership_report(digits.x_train[:8], members[:5], non_members)
    with pytest.raises(ValueError, match="'members' parameter of membership_report has images of shape"):
        membership_report(members, torch.rand(10, 1, 7, 7), non_members)
    with pytest.raises(ValueError, match="'non_members' parameter of membership_report must be a non-empty"):
        membership_report(members, members, torch.empty(0, 1, 8, 8))
