"""Compactness, separability and ratio (paper §III-D, eqs. 18–20; docs/paper-notes.md D13).

``learned_stats`` reads them from a G-softmax head's μ, σ; ``empirical_stats``
fits Gaussians to the evaluated features x of each class (Figures 3–8) and
works for every head. Standard deviations are population (ddof = 0) fits.
Both give the run record's typed statistics (gsm.results.LearnedStats,
gsm.results.EmpiricalStats), NaN where a value is undefined.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsm.results import EmpiricalStats, LearnedStats


def gaussian_kl(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> Tensor:
    """Eq. 18: KL(N(mu1, s1²) ‖ N(mu2, s2²)), broadcasting."""
    return torch.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5


def separability(mu: Tensor, sigma: Tensor) -> Tensor:
    """Eq. 19: d_i = 1/(2(m−1)) Σ_{j≠i} [KL(N_i‖N_j) + KL(N_j‖N_i)] for 1-D μ, σ of length m ≥ 2."""
    mu, sigma = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    m = mu.shape[0]
    if m < 2:
        raise ValueError("separability needs at least two distributions")
    kl = gaussian_kl(mu[:, None], sigma[:, None], mu[None, :], sigma[None, :])  # kl[i, j] = KL(N_i‖N_j)
    sym = kl + kl.T
    return (sym.sum(1) - sym.diagonal()) / (2 * (m - 1))


def compactness(sigma: Tensor) -> Tensor:
    """Compactness 1/σ."""
    return 1.0 / torch.as_tensor(sigma, dtype=torch.float64)


def ratio(mu: Tensor, sigma: Tensor) -> Tensor:
    """Eq. 20: r_i = d_i / σ_i."""
    return separability(mu, sigma) / torch.as_tensor(sigma, dtype=torch.float64)


def learned_stats(mu: Tensor, sigma: Tensor) -> LearnedStats:
    """From a G-softmax head: μ, σ of shape (m,) or (m, 2) (the positive column [:, 0] is used); compactness 1/σ,
    separability eq. 19 and ratio eq. 20 across the m classes."""
    mu, sigma = mu.detach().double().cpu(), sigma.detach().double().cpu()
    if mu.dim() == 2:
        mu, sigma = mu[:, 0], sigma[:, 0]
    return LearnedStats(
        mu=mu.tolist(), sigma=sigma.tolist(),
        compactness=compactness(sigma).tolist(),
        separability=separability(mu, sigma).tolist(),
        ratio=ratio(mu, sigma).tolist(),
    )


def _pos_neg_moments(x: Tensor, targets: Tensor, multilabel: bool) -> tuple[Tensor, ...]:
    """Per class c: (n, sum, sum of squares) of the positive and negative feature sets."""
    x = x.double()
    m = x.shape[1]
    if multilabel:
        pos = targets.double()
        neg = 1.0 - pos
        return pos.sum(0), (pos * x).sum(0), (pos * x**2).sum(0), neg.sum(0), (neg * x).sum(0), (neg * x**2).sum(0)
    onehot = torch.nn.functional.one_hot(targets.long(), m).double()  # (N, m)
    s1, s2 = onehot.T @ x, onehot.T @ x**2  # [c, j] = Σ over images of class c of x_j (x_j²)
    n = onehot.sum(0)
    d1, d2 = s1.diagonal(), s2.diagonal()
    return n, d1, d2, n * (m - 1), s1.sum(1) - d1, s2.sum(1) - d2


def empirical_stats(x: Tensor, targets: Tensor, multilabel: bool) -> EmpiricalStats:
    """Empirical Gaussians per class c (the feature analysis of §V, Figures 3–8).

    Single-label: over test images of class c, N_pos fits x_c and N_neg fits
    x_j (j ≠ c). Multi-label: N_pos fits x_c over images with label c, N_neg
    over images without it. ``x`` is (N, m), or (N, m, 2) whose x⁺ = [..., 0]
    is used. Compactness 1/σ_pos, separability = eq. 19 with m = 2
    (the symmetrised KL / 2), ratio = separability/σ_pos. NaN where a class
    has fewer than two samples on either side.
    """
    if x.dim() == 3:
        x = x[..., 0]
    n_p, s_p, q_p, n_n, s_n, q_n = _pos_neg_moments(x, targets, multilabel)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    mu_p = torch.where(n_p > 0, s_p / n_p.clamp_min(1), nan)
    mu_n = torch.where(n_n > 0, s_n / n_n.clamp_min(1), nan)
    sd_p = torch.where(n_p > 1, (q_p / n_p.clamp_min(1) - mu_p**2).clamp_min(0).sqrt(), nan)
    sd_n = torch.where(n_n > 1, (q_n / n_n.clamp_min(1) - mu_n**2).clamp_min(0).sqrt(), nan)
    sep = 0.5 * (gaussian_kl(mu_p, sd_p, mu_n, sd_n) + gaussian_kl(mu_n, sd_n, mu_p, sd_p))
    return EmpiricalStats(
        mu_pos=mu_p.tolist(), sigma_pos=sd_p.tolist(), mu_neg=mu_n.tolist(), sigma_neg=sd_n.tolist(),
        count_pos=n_p.tolist(),
        compactness=(1.0 / sd_p).tolist(), separability=sep.tolist(), ratio=(sep / sd_p).tolist(),
    )
