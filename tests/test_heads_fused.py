"""GSoftmaxHead(fused=True): FusedGSoftmaxLogits gives the values and gradients of the autograd path (eqs. 3–10).

The fused head is a speed setting (issue #19): every test builds an unfused and a fused head with the same
state and asserts that what a trainer sees — z, the gradients of x, μ, σ and fc, the σ floor (D1),
learn_dist, dist_update="release" (E2), init="empirical" (§IV), the state dict, one optimiser step — is the
same. The derivative itself is checked against a closed form written here with ``math.erf``/``math.exp`` and
against finite differences (gradcheck), not against the code under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import gsm.heads
from gsm.errors import ConfigError
from gsm.heads import SIGMA_FLOOR, FusedGSoftmaxLogits, GSoftmaxHead, build_head, gsoftmax_logits, head_loss, param_groups

M, D, B = 4, 6, 5  # classes, feature width, batch
LAM = 0.7


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def head_pair(multilabel: bool, **cfg) -> tuple[GSoftmaxHead, GSoftmaxHead]:
    """An unfused and a fused head with the same state: μ, σ differ per class, some σ below the floor
    (one raw σ negative, one between 0 and SIGMA_FLOOR)."""
    torch.manual_seed(0)
    plain = build_head("gsoftmax", D, M, multilabel, lam=LAM, **cfg)
    with torch.no_grad():
        plain.fc.weight.mul_(4.0)  # x spread over both tails of Φ
        plain.mu_param.copy_(torch.linspace(-1.0, 1.0, plain.mu_param.numel()).view_as(plain.mu_param))
        plain.sigma_param.copy_(torch.linspace(0.2, 2.0, plain.sigma_param.numel()).view_as(plain.sigma_param))
        plain.sigma_param.view(-1)[0] = -0.3
        plain.sigma_param.view(-1)[1] = 0.2 * SIGMA_FLOOR
        # the floored classes' μ within a few σ̂ of one image's x, so φ(t) and their gradients are not 0
        x0 = plain.fc_outputs(batch(multilabel)[0])[0].reshape(-1)
        plain.mu_param.view(-1)[:2] = x0[:2] + torch.tensor([0.5, -1.5]) * SIGMA_FLOOR
    fused = build_head("gsoftmax", D, M, multilabel, lam=LAM, fused=True, **cfg)
    fused.load_state_dict(plain.state_dict())
    assert fused.fused and not plain.fused
    return plain, fused


def batch(multilabel: bool, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, D, generator=g)
    y = torch.randint(0, 2, (B, M), generator=g).double() if multilabel else torch.randint(0, M, (B,), generator=g)
    return f, y


def grads(head: GSoftmaxHead, f: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂loss/∂(features, every trainable parameter) of one training step."""
    f = f.clone().requires_grad_()
    names = [n for n, p in head.named_parameters() if p.requires_grad]
    out = torch.autograd.grad(head_loss(head, head(f), y), [f, *(p for p in head.parameters() if p.requires_grad)])
    return dict(zip(["features", *names], out))


# ----------------------------------------------------------------------------- the same values and gradients


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_forward_equals_the_autograd_path(multilabel):
    plain, fused = head_pair(multilabel)
    f, _ = batch(multilabel)
    x = plain.fc_outputs(f)
    assert (x - plain.mu).abs().div(plain.sigma).max() > 5  # deep in a tail of Φ for some entries
    torch.testing.assert_close(fused(f), plain(f), rtol=0, atol=1e-12)
    torch.testing.assert_close(gsoftmax_logits(x, plain.mu, plain.sigma, LAM, fused=True),
                               gsoftmax_logits(x, plain.mu, plain.sigma, LAM), rtol=0, atol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_gradients_equal_the_autograd_path_including_the_sigma_floor(multilabel):
    plain, fused = head_pair(multilabel)
    f, y = batch(multilabel)
    expected, got = grads(plain, f, y), grads(fused, f, y)
    assert set(got) == {"features", "fc.weight", "fc.bias", "mu_param", "sigma_param"} == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-10, msg=name)
    floored = fused.sigma_param.detach() < SIGMA_FLOOR
    assert floored.sum() == 2 and (got["sigma_param"][floored] != 0).all()  # straight-through at the floor (D1)


def _phi(t: float) -> float:
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_derivatives_match_the_closed_form_by_hand(multilabel):
    """z = x + λ·½(1 + erf(t/√2)), t = (x − μ)/σ̂, σ̂ = max(σ, floor); for ∂L/∂z = g:
    ∂L/∂x = g(1 + λφ(t)/σ̂), ∂L/∂μ = −Σ_b gλφ(t)/σ̂, ∂L/∂σ = −Σ_b gλφ(t)t/σ̂ (E1; the floor passes the
    gradient straight through, D1) — element by element in Python floats."""
    _, head = head_pair(multilabel)
    shape = tuple(head.mu_param.shape)
    x = (3.0 * torch.randn(B, *shape, generator=torch.Generator().manual_seed(2))).requires_grad_()
    g = torch.randn(B, *shape, generator=torch.Generator().manual_seed(3))
    z = gsoftmax_logits(x, head.mu, head.sigma, LAM, fused=True)
    dx, dmu, dsigma = torch.autograd.grad(z, [x, head.mu_param, head.sigma_param], g)
    xs, gs = x.detach().reshape(B, -1).tolist(), g.reshape(B, -1).tolist()
    mus, sigmas = head.mu_param.detach().reshape(-1).tolist(), head.sigma_param.detach().reshape(-1).tolist()
    want_z, want_dx = [[0.0] * len(mus) for _ in range(B)], [[0.0] * len(mus) for _ in range(B)]
    want_dmu, want_dsigma = [0.0] * len(mus), [0.0] * len(mus)
    for b in range(B):
        for j, (mu, sigma) in enumerate(zip(mus, sigmas)):
            s = max(sigma, SIGMA_FLOOR)
            t = (xs[b][j] - mu) / s
            want_z[b][j] = xs[b][j] + LAM * 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))
            d = gs[b][j] * LAM * _phi(t) / s
            want_dx[b][j] = gs[b][j] + d
            want_dmu[j] -= d
            want_dsigma[j] -= d * t
    for got, want in ((z, want_z), (dx, want_dx), (dmu, want_dmu), (dsigma, want_dsigma)):
        torch.testing.assert_close(got.detach().reshape(-1), torch.tensor(want).reshape(-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_gradcheck_of_the_function(multilabel):
    """Finite differences of the Function itself; μ, σ broadcast over the batch as in the head."""
    torch.manual_seed(4)
    shape = (3, 2) if multilabel else (3,)
    x = torch.randn(4, *shape, requires_grad=True)
    mu = (0.3 * torch.randn(shape)).requires_grad_()
    sigma = (0.4 + torch.rand(shape)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, mu, sigma: FusedGSoftmaxLogits.apply(x, mu, sigma, LAM), (x, mu, sigma),
                                    eps=1e-6, atol=1e-8)
    # μ, σ of x's own shape (nothing to sum over): each gradient is its own tensor
    full = [t.detach().expand(4, *shape).clone().requires_grad_() for t in (mu, sigma)]
    assert torch.autograd.gradcheck(lambda x, mu, sigma: FusedGSoftmaxLogits.apply(x, mu, sigma, LAM), (x, *full),
                                    eps=1e-6, atol=1e-8)
    # only the inputs that need a gradient get one
    x_only = torch.autograd.grad(FusedGSoftmaxLogits.apply(x, mu.detach(), sigma.detach(), LAM).sum(), [x])
    assert x_only[0].shape == x.shape


def test_a_second_derivative_is_refused_not_wrong():
    x = torch.randn(3, 2, requires_grad=True)
    mu, sigma = torch.zeros(2, requires_grad=True), torch.ones(2, requires_grad=True)
    z = FusedGSoftmaxLogits.apply(x, mu, sigma, 1.0)
    (dx,) = torch.autograd.grad(z.square().sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dx.sum().backward()


# ----------------------------------------------------------------------------- every setting behaves the same


def _sgd_step(head: GSoftmaxHead, f: torch.Tensor, y: torch.Tensor) -> float:
    """One trainer step (gsm.train.loop): loss, backward, the head's gradient hook, SGD with momentum and weight
    decay over param_groups (μ, σ in their own group); returns the loss at the new parameters."""
    opt = torch.optim.SGD(param_groups(head, lr=0.5, weight_decay=1e-3), lr=0.5, momentum=0.9)
    head_loss(head, head(f), y).backward()
    head.finish_distribution_gradients(f.shape[0])
    opt.step()
    with torch.no_grad():
        return head_loss(head, head(f), y)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("cfg", [{}, {"dist_update": "release", "dist_lr_mult": 10.0}, {"learn_dist": False},
                                 {"loss_reduction": "sum", "dist_update": "release"}],
                         ids=["autograd", "release", "frozen", "release-sum"])
def test_one_sgd_step_is_the_same_fused_or_not(multilabel, cfg):
    plain, fused = head_pair(multilabel, **cfg)
    f, y = batch(multilabel)
    before = {k: v.clone() for k, v in plain.state_dict().items() if isinstance(v, torch.Tensor)}
    loss_plain, loss_fused = _sgd_step(plain, f, y), _sgd_step(fused, f, y)
    torch.testing.assert_close(loss_fused, loss_plain, rtol=0, atol=1e-12)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-12, msg=name)
    moved = {k for k, v in plain.state_dict().items() if isinstance(v, torch.Tensor) and not torch.equal(v, before[k])}
    dist_learned = cfg.get("learn_dist", True) and (multilabel or cfg.get("dist_update") != "release")
    assert moved == {"fc.weight", "fc.bias"} | ({"mu_param", "sigma_param"} if dist_learned else set())
    if not dist_learned:
        assert fused.mu_param.grad is None and fused.sigma_param.grad is None


def test_release_multilabel_mu_step_is_the_ascent_step_fused_too():
    """E2: with dist_update="release" the μ gradient the optimiser sees is −B·… of the summed loss's, fused or not."""
    plain, fused = head_pair(True, dist_update="release", loss_reduction="sum")
    f, y = batch(True)
    for head in (plain, fused):
        head_loss(head, head(f), y).backward()
        head.finish_distribution_gradients(B)
    torch.testing.assert_close(fused.mu_param.grad, plain.mu_param.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.sigma_param.grad, plain.sigma_param.grad, rtol=0, atol=1e-12)
    _, raw = head_pair(True, loss_reduction="sum")
    head_loss(raw, raw(f), y).backward()
    torch.testing.assert_close(fused.mu_param.grad, -raw.mu_param.grad / B, rtol=0, atol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_empirical_init_and_state_dict_round_trip(multilabel):
    plain, fused = head_pair(multilabel, init="empirical", init_batches=2)
    loader = [batch(multilabel, seed)[0] for seed in (5, 6, 7)]
    for head in (plain, fused):
        assert gsm.heads.init_from_data(torch.nn.Sequential(torch.nn.Identity(), head), loader) == 2 * B
    assert torch.equal(fused.mu_param, plain.mu_param) and torch.equal(fused.sigma_param, plain.sigma_param)
    f, _ = batch(multilabel)
    torch.testing.assert_close(fused(f), plain(f), rtol=0, atol=1e-12)
    # the state dict does not record the setting: a fused head's checkpoint loads into an unfused one and back
    state = fused.state_dict()
    assert state.keys() == plain.state_dict().keys()
    again = build_head("gsoftmax", D, M, multilabel, lam=LAM, init="empirical")
    again.load_state_dict(copy.deepcopy(state))
    assert not again.needs_data_init and not again.fused
    torch.testing.assert_close(again(f), fused(f), rtol=0, atol=1e-12)
    back = build_head("gsoftmax", D, M, multilabel, lam=LAM, init="empirical", fused=True)
    back.load_state_dict(again.state_dict())
    torch.testing.assert_close(back(f), plain(f), rtol=0, atol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_bf16_autocast_gives_the_dtypes_of_the_autograd_path(multilabel):
    """Used under CPU autocast (not as gsm.models.Classifier runs it): fc gives x in bfloat16, μ, σ are float32,
    so z is float32 and the features' gradient bfloat16, fused or not; values agree to bfloat16 rounding."""
    plain, fused = head_pair(multilabel)
    plain.float(), fused.float()
    f, y = batch(multilabel)
    f, y = f.float(), (y.float() if multilabel else y)
    out = {}
    for head in (plain, fused):
        feats = f.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = head.fc_outputs(feats)
            z = head(feats)
            loss = head_loss(head, z, y)
        loss.backward()
        out[head.fused] = (x.dtype, z, feats.grad, head.mu_param.grad, head.sigma_param.grad)
    (x0, *ref), (x1, *got) = out[False], out[True]
    assert x0 == x1 == torch.bfloat16
    for name, a, b in zip(("z", "features", "mu", "sigma"), ref, got):
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2, msg=name)
    assert ref[0].dtype == torch.float32 and ref[1].dtype == torch.float32


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_a_fused_training_step_reads_nothing_to_the_host(multilabel):
    """As tests/test_heads.py checks every head: a read of a device value (float(), .item()) fails on `meta`."""
    with torch.device("meta"):
        head = build_head("gsoftmax", 16, 5, multilabel, fused=True).float()
        f = torch.randn(8, 16, dtype=torch.float32, requires_grad=True)
        y = torch.randint(0, 2, (8, 5)).float() if multilabel else torch.randint(0, 5, (8,))
    for _ in range(2):
        head_loss(head, head(f), y).backward()
    assert f.grad.device.type == "meta" and all(p.grad.device.type == "meta" for p in head.parameters())


def test_fused_is_validated_and_lam_must_be_a_number():
    with pytest.raises(ConfigError, match="head.fused must be true or false"):
        build_head("gsoftmax", D, M, fused="yes")
    with pytest.raises(ConfigError, match="head.fused"):
        GSoftmaxHead(D, M, fused=1)
    with pytest.raises(ConfigError, match="fused=True"):
        gsoftmax_logits(torch.zeros(2, M), torch.zeros(M), torch.ones(M), torch.tensor(1.0), fused=True)
    assert "fused=True" in repr(GSoftmaxHead(D, M, fused=True)) and "fused" not in repr(GSoftmaxHead(D, M))
