import math

import numpy as np
import torch
from scipy import integrate
from scipy.stats import norm

from gsm.analysis import compactness, empirical_stats, gaussian_kl, learned_stats, ratio, separability


def _log_normal(x, m, s):
    """log N(x; m, s²), written out (scipy.stats' per-call overhead made the integrals below take seconds)."""
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def _kl_numeric(m1, s1, m2, s2):
    """KL(N(m1, s1²) || N(m2, s2²)) by numerical integration of its definition."""
    f = lambda x: math.exp(_log_normal(x, m1, s1)) * (_log_normal(x, m1, s1) - _log_normal(x, m2, s2))
    return integrate.quad(f, -40, 40, limit=200)[0]


def test_log_normal_is_scipys_logpdf():
    xs = np.linspace(-5, 5, 11)
    np.testing.assert_allclose([_log_normal(x, 0.3, 1.7) for x in xs], norm.logpdf(xs, 0.3, 1.7), rtol=1e-13)


def test_gaussian_kl_matches_numeric_integral():
    for m1, s1, m2, s2 in [(0, 1, 0, 1), (0.3, 0.5, -1, 2), (2, 3, 1, 0.7)]:
        got = gaussian_kl(torch.tensor(m1, dtype=torch.float64), torch.tensor(s1, dtype=torch.float64),
                          torch.tensor(m2, dtype=torch.float64), torch.tensor(s2, dtype=torch.float64)).item()
        assert abs(got - _kl_numeric(m1, s1, m2, s2)) < 1e-7


def test_separability_and_ratio_eq19_eq20():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=6), rng.uniform(0.3, 2, size=6)
    d = separability(torch.tensor(mu), torch.tensor(sigma)).numpy()
    for i in range(6):
        ref = sum(_kl_numeric(mu[i], sigma[i], mu[j], sigma[j]) + _kl_numeric(mu[j], sigma[j], mu[i], sigma[i])
                  for j in range(6) if j != i) / (2 * 5)
        assert abs(d[i] - ref) < 1e-6
    np.testing.assert_allclose(ratio(torch.tensor(mu), torch.tensor(sigma)).numpy(), d / sigma)
    np.testing.assert_allclose(compactness(torch.tensor(sigma)).numpy(), 1 / sigma)
    stats = learned_stats(torch.tensor(np.stack([mu, mu + 1], 1)), torch.tensor(np.stack([sigma, sigma], 1)))
    np.testing.assert_allclose(stats.separability, d)


def test_empirical_stats_single_label_by_loop():
    rng = np.random.default_rng(1)
    n, m = 200, 4
    x = rng.normal(size=(n, m))
    y = rng.integers(0, m, size=n)
    got = empirical_stats(torch.tensor(x), torch.tensor(y), multilabel=False)
    for c in range(m):
        pos = x[y == c, c]
        neg = np.delete(x[y == c], c, axis=1).ravel()
        mp, sp, mn, sn = pos.mean(), pos.std(), neg.mean(), neg.std()
        sep = 0.5 * (_kl_numeric(mp, sp, mn, sn) + _kl_numeric(mn, sn, mp, sp))
        assert abs(got.mu_pos[c] - mp) < 1e-12 and abs(got.sigma_neg[c] - sn) < 1e-10
        assert abs(got.separability[c] - sep) < 1e-6
        assert abs(got.compactness[c] - 1 / sp) < 1e-9 and abs(got.ratio[c] - sep / sp) < 1e-6


def test_empirical_stats_multilabel_uses_x_plus_and_label_split():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3, 2))
    y = rng.integers(0, 2, size=(50, 3))
    y[:, 2] = 0  # a class with no positive -> NaN, not an error
    got = empirical_stats(torch.tensor(x), torch.tensor(y), multilabel=True)
    for c in range(2):
        pos, neg = x[y[:, c] == 1, c, 0], x[y[:, c] == 0, c, 0]
        assert abs(got.mu_pos[c] - pos.mean()) < 1e-12 and abs(got.sigma_neg[c] - neg.std()) < 1e-10
    assert np.isnan(got.compactness[2])


def test_empirical_stats_single_label_class_with_one_image_is_nan():
    """A class with one test image has no σ_pos: NaN statistics (null in results.json), not an error."""
    x = torch.tensor([[3.0, 0.0, 1.0], [2.5, 0.5, 0.0], [0.0, 4.0, 0.2], [0.1, 0.0, 5.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 2])
    got = empirical_stats(x, y, multilabel=False)
    assert abs(got.mu_pos[0] - 2.75) < 1e-12 and abs(got.sigma_pos[0] - 0.25) < 1e-12
    assert got.count_pos == [2.0, 1.0, 1.0]
    assert np.isnan(got.compactness[1]) and np.isnan(got.ratio[2])
    assert np.isfinite(got.separability[0])


def test_head_hook_gives_learned_stats_of_the_positive_column():
    """GSoftmaxHead.learned_stats() (what the trainer writes to results.json) = eqs. 18–20 on μ⁺, σ⁺."""
    from gsm.heads import GSoftmaxHead, SoftmaxHead

    head = GSoftmaxHead(4, 3, multilabel=True)
    with torch.no_grad():
        head.mu_param.copy_(torch.tensor([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0]]))
        head.sigma_param.copy_(torch.tensor([[1.0, 9.0], [0.5, 9.0], [2.0, 9.0]]))
    stats = head.learned_stats()
    mu, sigma = np.array([0.0, 1.0, 3.0]), np.array([1.0, 0.5, 2.0])
    for i in range(3):
        ref = sum(_kl_numeric(mu[i], sigma[i], mu[j], sigma[j]) + _kl_numeric(mu[j], sigma[j], mu[i], sigma[i])
                  for j in range(3) if j != i) / 4
        assert abs(stats.separability[i] - ref) < 1e-6
        assert abs(stats.ratio[i] - ref / sigma[i]) < 1e-6
    assert stats.mu == mu.tolist() and stats.compactness == (1 / sigma).tolist()
    assert SoftmaxHead(4, 3).learned_stats() is None
