"""Heads against an independent float64 NumPy/SciPy implementation of eqs. 3, 13, docs/paper-notes.md E3 and L-softmax."""

from __future__ import annotations

import copy
import inspect
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.special import log_softmax as np_log_softmax
from scipy.special import ndtr
from scipy.stats import norm

import gsm.heads
from gsm.analysis import learned_stats
from gsm.errors import CheckpointError, ConfigError, TrainingError
from gsm.heads import (
    HEAD_NAMES,
    HEADS,
    SIGMA_FLOOR,
    GSoftmaxHead,
    Head,
    LSoftmaxHead,
    MSMLHead,
    SoftmaxHead,
    build_head,
    gsoftmax_logits,
    head_loss,
    param_groups,
)

@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------- independent reference


def ref_gsoftmax_single(x, y, mu, sigma, lam):
    """Eqs. 3, 13 in NumPy: loss (mean CE) and its gradients w.r.t. x, μ, σ by hand (correct chain rule, E1)."""
    t = (x - mu) / sigma
    z = x + lam * ndtr(t)
    logp = np_log_softmax(z, axis=1)
    n = x.shape[0]
    loss = -logp[np.arange(n), y].mean()
    dz = np.exp(logp)
    dz[np.arange(n), y] -= 1.0
    dz /= n  # dℓ/dz = (p − y)/B
    dens = norm.pdf(t) / sigma  # dΦ/dx
    return loss, z, dz * (1 + lam * dens), -(dz * lam * dens).sum(0), -(dz * lam * dens * t).sum(0)


def ref_gsoftmax_multi(xpair, y, mu, sigma, lam):
    """docs/paper-notes.md E3: z± = x± + λΦ(x±; μ±, σ±), s = z⁺ − z⁻, loss = mean BCE(sigmoid(s), y); grads by hand."""
    t = (xpair - mu) / sigma
    z = xpair + lam * ndtr(t)
    s = z[..., 0] - z[..., 1]
    loss = np.mean(np.logaddexp(0, s) - y * s)  # BCE with logits
    ds = (1 / (1 + np.exp(-s)) - y) / s.size
    dz = np.stack([ds, -ds], axis=-1)
    dens = norm.pdf(t) / sigma
    return loss, s, dz * (1 + lam * dens), -(dz * lam * dens).sum(0), -(dz * lam * dens * t).sum(0)


def ref_psi(cos, m):
    theta = np.arccos(np.clip(cos, -1, 1))
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


def ref_lsoftmax_logits(W, f, y, m, beta):
    wf = f @ W.T
    out = wf.copy()
    for i, c in enumerate(y):  # a plain loop: independent of the vectorised head
        nw, nf = np.linalg.norm(W[c]), np.linalg.norm(f[i])
        cos = wf[i, c] / (nw * nf)
        out[i, c] = (beta * wf[i, c] + nw * nf * ref_psi(cos, m)) / (1 + beta)
    return out


# ----------------------------------------------------------------------------- G-softmax


@pytest.mark.parametrize("lam", [1.0, 0.5, 3.0])
def test_gsoftmax_single_matches_reference_with_gradients(lam):
    rng = np.random.default_rng(0)
    b, m = 7, 5
    x = rng.normal(size=(b, m)) * 2
    y = rng.integers(0, m, size=b)
    mu, sigma = rng.normal(size=m) * 0.3, rng.uniform(0.5, 2.0, size=m)
    xt = torch.tensor(x, requires_grad=True)
    mut, st = torch.tensor(mu, requires_grad=True), torch.tensor(sigma, requires_grad=True)
    z = gsoftmax_logits(xt, mut, st, lam)
    loss = torch.nn.functional.cross_entropy(z, torch.tensor(y))
    loss.backward()
    ref_loss, ref_z, gx, gmu, gs = ref_gsoftmax_single(x, y, mu, sigma, lam)
    np.testing.assert_allclose(z.detach().numpy(), ref_z, rtol=0, atol=1e-12)
    assert abs(loss.item() - ref_loss) < 1e-12
    for got, want in ((xt.grad, gx), (mut.grad, gmu), (st.grad, gs)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)


def test_gsoftmax_head_single_matches_reference():
    rng = np.random.default_rng(1)
    head = build_head("gsoftmax", 6, 4, False, lam=1.0, mu=0.1, sigma=0.7)
    with torch.no_grad():
        head.mu_param.copy_(torch.tensor(rng.normal(size=4)))
        head.sigma_param.copy_(torch.tensor(rng.uniform(0.5, 2, size=4)))
    f = torch.tensor(rng.normal(size=(5, 6)))
    y = torch.tensor(rng.integers(0, 4, size=5))
    x = head.fc(f)
    loss = head_loss(head, head(f, y), y)
    gx = torch.autograd.grad(loss, [head.mu_param, head.sigma_param])
    ref = ref_gsoftmax_single(x.detach().numpy(), y.numpy(), head.mu_param.detach().numpy(), head.sigma_param.detach().numpy(), 1.0)
    assert abs(loss.item() - ref[0]) < 1e-12
    np.testing.assert_allclose(gx[0].numpy(), ref[3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gx[1].numpy(), ref[4], rtol=1e-9, atol=1e-12)


def test_gsoftmax_head_multilabel_layout_and_reference():
    rng = np.random.default_rng(2)
    b, d, m = 6, 5, 3
    head = build_head("gsoftmax", d, m, True, lam=0.8)
    assert head.fc.out_features == 2 * m
    assert head.mu.shape == (m, 2) and head.sigma.shape == (m, 2)
    with torch.no_grad():
        head.mu_param.copy_(torch.tensor(rng.normal(size=(m, 2)) * 0.2))
        head.sigma_param.copy_(torch.tensor(rng.uniform(0.5, 2, size=(m, 2))))
    f = torch.tensor(rng.normal(size=(b, d)))
    y = torch.tensor(rng.integers(0, 2, size=(b, m)), dtype=torch.float64)
    flat = head.fc(f)  # (B, 2m): x⁺ of class i at column 2i, x⁻ at 2i + 1
    xpair = head.fc_outputs(f)
    assert torch.equal(xpair[..., 0], flat[:, 0::2]) and torch.equal(xpair[..., 1], flat[:, 1::2])
    s = head(f)
    assert s.shape == (b, m)
    loss = head_loss(head, s, y)
    grads = torch.autograd.grad(loss, [head.mu_param, head.sigma_param])
    ref_loss, ref_s, _, gmu, gs = ref_gsoftmax_multi(
        xpair.detach().numpy(), y.numpy(), head.mu_param.detach().numpy(), head.sigma_param.detach().numpy(), 0.8
    )
    np.testing.assert_allclose(s.detach().numpy(), ref_s, atol=1e-12)
    assert abs(loss.item() - ref_loss) < 1e-12
    np.testing.assert_allclose(grads[0].numpy(), gmu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads[1].numpy(), gs, rtol=1e-9, atol=1e-12)


def test_multilabel_reference_input_gradient():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, 2))
    y = rng.integers(0, 2, size=(4, 3)).astype(float)
    mu, sigma = rng.normal(size=(3, 2)) * 0.1, rng.uniform(0.5, 1.5, size=(3, 2))
    xt = torch.tensor(x, requires_grad=True)
    z = gsoftmax_logits(xt, torch.tensor(mu), torch.tensor(sigma), 1.0)
    s = z[..., 0] - z[..., 1]
    torch.nn.functional.binary_cross_entropy_with_logits(s, torch.tensor(y)).backward()
    np.testing.assert_allclose(xt.grad.numpy(), ref_gsoftmax_multi(x, y, mu, sigma, 1.0)[2], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True])
def test_gradcheck_gsoftmax_input_mu_sigma(multilabel):
    torch.manual_seed(0)
    m = 4
    shape = (m, 2) if multilabel else (m,)
    x = torch.randn(3, *shape, requires_grad=True)
    mu = (0.3 * torch.randn(shape)).requires_grad_()
    sigma = (0.5 + torch.rand(shape)).requires_grad_()
    if multilabel:
        y = torch.randint(0, 2, (3, m)).double()

        def fn(x, mu, sigma):
            z = gsoftmax_logits(x, mu, sigma, 1.0)
            return torch.nn.functional.binary_cross_entropy_with_logits(z[..., 0] - z[..., 1], y)
    else:
        y = torch.randint(0, m, (3,))

        def fn(x, mu, sigma):
            return torch.nn.functional.cross_entropy(gsoftmax_logits(x, mu, sigma, 1.0), y)

    assert torch.autograd.gradcheck(fn, (x, mu, sigma), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(fn, (x, mu, sigma), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("multilabel", [False, True])
def test_lambda_zero_is_exactly_softmax(multilabel):
    torch.manual_seed(1)
    g = build_head("gsoftmax", 8, 5, multilabel, lam=0.0, mu=0.3, sigma=0.2)
    s = build_head("softmax", 8, 5, multilabel)
    s.load_state_dict({k: v for k, v in g.state_dict().items() if k.startswith("fc.")})
    f = torch.randn(6, 8) * 3
    y = torch.randint(0, 2, (6, 5)).double() if multilabel else torch.randint(0, 5, (6,))
    assert torch.equal(g(f), s(f))
    assert torch.equal(head_loss(g, g(f), y), head_loss(s, s(f), y))


def test_softmax_multilabel_is_sigmoid_of_difference():
    torch.manual_seed(2)
    h = build_head("softmax", 4, 3, True)
    f = torch.randn(5, 4)
    x = h.fc(f).view(5, 3, 2)
    p2 = torch.softmax(x, dim=-1)[..., 0]  # the 2-way softmax of (x⁺, x⁻)
    torch.testing.assert_close(torch.sigmoid(h(f)), p2, rtol=0, atol=1e-12)


def test_msml_is_eq14():
    torch.manual_seed(3)
    h = build_head("msml", 4, 3, True)
    f, y = torch.randn(5, 4), torch.randint(0, 2, (5, 3)).double()
    x = h.fc(f)
    eq14 = -(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x))).mean()
    torch.testing.assert_close(head_loss(h, h(f), y), eq14)
    torch.testing.assert_close(torch.nn.functional.multilabel_soft_margin_loss(x, y), eq14)


def test_sigma_stays_positive_after_adversarial_step():
    head = build_head("gsoftmax", 3, 4, False, sigma=0.5)
    opt = torch.optim.SGD(head.parameters(), lr=1e6)
    head.sigma_param.sum().backward()  # pushes σ towards −∞
    opt.step()
    assert (head.sigma_param < 0).all()  # the raw parameter went negative ...
    assert (head.sigma > 0).all()  # ... σ used in the forward pass did not
    out = head(torch.randn(5, 3))
    assert torch.isfinite(out).all()
    # the gradient still reaches the parameter (straight-through floor), so σ can recover
    loss = torch.nn.functional.cross_entropy(head(torch.randn(5, 3)), torch.randint(0, 4, (5,)))
    loss.backward()
    assert head.sigma_param.grad is not None


def test_learn_dist_false_freezes():
    head = build_head("gsoftmax", 3, 2, False, learn_dist=False)
    assert not head.mu_param.requires_grad and not head.sigma_param.requires_grad


# ----------------------------------------------------------------------------- L-softmax


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_lsoftmax_psi_matches_definition_continuous_decreasing(m):
    head = LSoftmaxHead(4, 3, margin=m)
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    psi = head.psi_of_cos(torch.cos(theta))
    np.testing.assert_allclose(psi.numpy(), ref_psi(np.cos(theta.numpy()), m), atol=1e-9)
    diffs = psi[1:] - psi[:-1]
    assert (diffs <= 1e-12).all(), "ψ must be non-increasing on [0, π]"
    assert diffs.abs().max() < 1e-2, "ψ must be continuous (no jumps at kπ/m)"
    assert abs(psi[0].item() - 1.0) < 1e-12 and abs(psi[-1].item() - (1 - 2 * m)) < 1e-9


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("beta_params", [dict(base=0.0, beta_min=0.0), dict(base=5.0, gamma=0.0, beta_min=0.0)])
def test_lsoftmax_target_logit_matches_direct_computation(m, beta_params):
    torch.manual_seed(4)
    head = LSoftmaxHead(6, 5, margin=m, **beta_params)
    head.train()
    f, y = torch.randn(8, 6), torch.randint(0, 5, (8,))
    beta = head.beta
    assert beta == beta_params["base"]
    out = head(f, y)
    ref = ref_lsoftmax_logits(head.fc.weight.detach().numpy(), f.numpy(), y.numpy(), m, beta)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-9, atol=1e-9)
    wf = f @ head.fc.weight.T
    mask = torch.ones_like(wf, dtype=torch.bool)
    mask[torch.arange(8), y] = False
    assert torch.equal(out[mask], wf[mask]), "non-target logits are W f"


def test_lsoftmax_gradients_match_reference():
    torch.manual_seed(5)
    head = LSoftmaxHead(4, 3, margin=3, base=0.0)
    f = torch.randn(5, 4, requires_grad=True)
    y = torch.randint(0, 3, (5,))
    assert torch.autograd.gradcheck(lambda f: head(f, y), (f,), eps=1e-6, atol=1e-7)


def test_lsoftmax_zero_features_give_finite_gradients():
    head = LSoftmaxHead(4, 3, margin=4, base=0.0)
    f = torch.randn(3, 4)
    f[1] = 0.0  # e.g. a ReLU backbone that output nothing for one image
    f.requires_grad_()
    y = torch.tensor([0, 1, 2])
    head_loss(head, head(f, y), y).backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(head.fc.weight.grad).all()


def test_lsoftmax_eval_returns_wf_and_training_needs_the_target():
    torch.manual_seed(6)
    head = LSoftmaxHead(4, 3, margin=4)
    f, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    wf = f @ head.fc.weight.T
    with pytest.raises(TrainingError, match="needs the targets"):
        head(f)  # training mode: not silently a plain softmax
    assert int(head.step) == 0
    head.eval()
    assert torch.equal(head(f), wf) and torch.equal(head(f, y), wf)
    assert int(head.step) == 0, "evaluation does not advance β"
    assert head.fc.bias is None


def test_lsoftmax_first_step_uses_iteration_one_as_caffe():
    """Caffe's LargeMarginInnerProduct increments iter_ before β: step k uses β(k), k = 1, 2, ..."""
    torch.manual_seed(7)
    base, gamma, power = 1000.0, 0.05, 2.0
    head = LSoftmaxHead(6, 5, margin=2, base=base, gamma=gamma, power=power)
    f, y = torch.randn(8, 6), torch.randint(0, 5, (8,))
    W = head.fc.weight.detach().numpy()
    for k in (1, 2, 3):
        out = head(f, y)
        beta_k = base * (1 + gamma * k) ** -power
        ref = ref_lsoftmax_logits(W, f.numpy(), y.numpy(), 2, beta_k)
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-9, atol=1e-9)
        assert int(head.step) == k and head.beta == pytest.approx(beta_k, rel=1e-12)
    wrong = ref_lsoftmax_logits(W, f.numpy(), y.numpy(), 2, base * (1 + gamma * 2) ** -power)
    assert not np.allclose(out.detach().numpy(), wrong), "step 3 must not use β(2)"


@pytest.mark.slow
def test_lsoftmax_compiled_matches_eager_while_beta_anneals():
    """torch.compile (AOT autograd) must not recompute β in the backward from the advanced counter."""
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(10)
    eager = LSoftmaxHead(16, 5, margin=4, gamma=0.1, power=2.0)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="aot_eager")
    f, y = torch.randn(8, 16), torch.randint(0, 5, (8,))
    try:
        for _ in range(2):
            want = torch.autograd.grad(head_loss(eager, eager(f, y), y), [eager.fc.weight])[0]
            got = torch.autograd.grad(head_loss(twin, compiled(f, y), y), [twin.fc.weight])[0]
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    finally:
        torch._dynamo.reset()
    assert int(twin.step) == int(eager.step) == 2


def test_lsoftmax_beta_anneals_and_step_survives_save_load():
    head = LSoftmaxHead(4, 3, margin=2, base=1000.0, gamma=1e-3, power=45.0, beta_min=0.5)
    head.train()
    f, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    for _ in range(7):
        head(f, y)
    assert "step" in head.state_dict() and int(head.step) == 7
    assert head.step.device == head.fc.weight.device and head.beta_tensor().device == head.fc.weight.device
    assert head.beta == pytest.approx(max(1000.0 * (1 + 1e-3 * 7) ** -45.0, 0.5))
    buf = io.BytesIO()
    torch.save(head.state_dict(), buf)
    buf.seek(0)
    other = LSoftmaxHead(4, 3, margin=2, base=1000.0, gamma=1e-3, power=45.0, beta_min=0.5)
    other.load_state_dict(torch.load(buf))
    assert int(other.step) == 7 and other.beta == head.beta
    head.step.fill_(10**7)
    assert head.beta == 0.5  # beta_min floor


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "name, multilabel, cfg, key",
    [
        ("gsoftmax", False, {"sigma": 0.0}, "head.sigma"),
        ("gsoftmax", False, {"sigma": -1.0}, "head.sigma"),
        ("gsoftmax", False, {"sigma": float("inf")}, "head.sigma"),
        ("gsoftmax", False, {"mu": float("nan")}, "head.mu"),
        ("gsoftmax", False, {"lam": float("nan")}, "head.lam"),
        ("gsoftmax", False, {"lam": float("-inf")}, "head.lam"),
        ("gsoftmax", False, {"lam": "big"}, "head.lam"),
        ("gsoftmax", False, {"dist_lr_mult": -1.0}, "head.dist_lr_mult"),
        ("gsoftmax", False, {"init": "random"}, "head.init"),
        ("gsoftmax", False, {"init_batches": 0}, "head.init_batches"),
        ("gsoftmax", False, {"learn_dist": "yes"}, "head.learn_dist"),
        ("gsoftmax", False, {"margin": 2}, "head.margin"),
        ("softmax", False, {"lam": 1.0}, "head.lam"),
        ("lsoftmax", False, {"margin": 0}, "head.margin"),
        ("lsoftmax", False, {"margin": 5}, "head.margin"),
        ("lsoftmax", False, {"margin": 2.5}, "head.margin"),
        ("lsoftmax", False, {"gamma": -1.0}, "head.gamma"),
        ("lsoftmax", False, {"beta_min": float("nan")}, "head.beta_min"),
        ("lsoftmax", True, {}, "head=lsoftmax"),
        ("msml", False, {}, "head=msml"),
        ("gsoftmax", False, {"colour": 1}, "head.colour"),
        ("nohead", False, {}, "head.name='nohead'"),
    ],
)
def test_invalid_configs_name_the_key(name, multilabel, cfg, key):
    with pytest.raises(ConfigError) as err:
        build_head(name, 4, 3, multilabel, **cfg)
    assert key in str(err.value)


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: GSoftmaxHead(32, 10, sigma=-1), "head.sigma"),
        (lambda: GSoftmaxHead(32, 10, lam=float("nan")), "head.lam"),
        (lambda: GSoftmaxHead(32, 10, mu=float("inf")), "head.mu"),
        (lambda: GSoftmaxHead(32, 10, init="kmeans"), "head.init"),
        (lambda: GSoftmaxHead(32, 0), "num_classes"),
        (lambda: LSoftmaxHead(32, 10, margin=5), "head.margin"),
        (lambda: LSoftmaxHead(32, 10, power=float("nan")), "head.power"),
        (lambda: LSoftmaxHead(32, 10, multilabel=True), "head=lsoftmax"),
        (lambda: SoftmaxHead(0, 10), "in_features"),
        (lambda: MSMLHead(32, 10, multilabel=False), "head=msml"),
    ],
)
def test_constructors_validate(make, key):
    """Heads used directly (without build_head) reject bad settings the same way."""
    with pytest.raises(ConfigError) as err:
        make()
    assert key in str(err.value)


def test_build_head_types():
    assert isinstance(build_head("softmax", 4, 3, False), SoftmaxHead)
    assert isinstance(build_head("gsoftmax", 4, 3, True), GSoftmaxHead)
    assert isinstance(build_head("lsoftmax", 4, 3, False, margin=1), LSoftmaxHead)
    assert isinstance(build_head("msml", 4, 3, True), MSMLHead)


def _yaml_defaults(name):
    """The literal (non-interpolated) settings of gsm/configs/head/<name>.yaml."""
    path = Path(gsm.__file__).parent / "configs" / "head" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    return {k: v for k, v in cfg.items() if k != "name" and not (isinstance(v, str) and v.startswith("${"))}


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_defaults_agree_with_the_configs(name):
    cls = HEADS[name]
    assert cls.name == name
    params = inspect.signature(cls.__init__).parameters
    assert set(cls.config_keys) == set(yaml.safe_load(
        (Path(gsm.__file__).parent / "configs" / "head" / f"{name}.yaml").read_text())) - {"name"}
    for key, value in _yaml_defaults(name).items():
        assert params[key].default == value, f"head.{key}: constructor default {params[key].default!r}, YAML {value!r}"


def test_single_label_is_the_default_and_lsoftmax_margin_is_4():
    assert not build_head("gsoftmax", 4, 3).multilabel and not build_head("softmax", 4, 3).multilabel
    assert not GSoftmaxHead(4, 3).multilabel and not SoftmaxHead(4, 3).multilabel
    assert build_head("lsoftmax", 4, 3).margin == 4 and LSoftmaxHead(4, 3).margin == 4  # docs/paper-notes.md D10
    notes = (Path(gsm.__file__).parent.parent / "docs" / "paper-notes.md").read_text()
    assert "Margin default 4" in notes


# ----------------------------------------------------------------------------- λ in the state dict


def test_lambda_travels_with_the_state_dict(tmp_path):
    torch.manual_seed(8)
    half = GSoftmaxHead(6, 4, lam=0.5)
    path = tmp_path / "head.pt"
    torch.save(half.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        GSoftmaxHead(6, 4, lam=0.0).load_state_dict(torch.load(path))
    assert "head.lam" in str(err.value) and "0.5" in str(err.value) and "0.0" in str(err.value)
    again = GSoftmaxHead(6, 4, lam=0.5)
    again.load_state_dict(torch.load(path))  # weights_only load: λ is plain data
    f = torch.randn(3, 6)
    assert torch.equal(again(f), half(f))
    # also inside a larger model, strict or not
    model = torch.nn.Sequential(torch.nn.Identity(), GSoftmaxHead(6, 4, lam=1.0))
    with pytest.raises(CheckpointError, match="head.lam"):
        model.load_state_dict({f"1.{k}": v for k, v in half.state_dict().items()}, strict=False)


# ----------------------------------------------------------------------------- no host reads in a training step

_META_CASES = [("softmax", False), ("softmax", True), ("gsoftmax", False), ("gsoftmax", True), ("msml", True)]
_META_CASES += [("lsoftmax", False, {"margin": m}) for m in (1, 2, 3, 4)]


@pytest.mark.parametrize("case", _META_CASES, ids=lambda c: "-".join(map(str, c)))
def test_training_step_runs_on_the_meta_device(case):
    """A value read to the host (float(), .item(), bool(tensor)) fails on `meta`: no head may sync the device."""
    name, multilabel, cfg = (*case, {})[:3]
    with torch.device("meta"):
        head = build_head(name, 16, 5, multilabel, **cfg).float()
        f = torch.randn(8, 16, dtype=torch.float32, requires_grad=True)
        y = torch.randint(0, 2, (8, 5)).float() if multilabel else torch.randint(0, 5, (8,))
    head.train()
    for _ in range(2):
        loss = head_loss(head, head(f, y), y)
        loss.backward()
    assert loss.device.type == "meta" and f.grad.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in head.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- hooks


def test_param_groups_every_head_and_every_parameter_once():
    torch.manual_seed(9)
    fast = GSoftmaxHead(8, 3, dist_lr_mult=100.0)
    frozen_dist = GSoftmaxHead(8, 3, learn_dist=False)
    slow = GSoftmaxHead(8, 3, multilabel=True, dist_lr_mult=0.5)
    body = torch.nn.Linear(4, 8)
    body.bias.requires_grad_(False)  # frozen: in no group
    model = torch.nn.ModuleDict({"body": body, "a": fast, "b": torch.nn.Sequential(frozen_dist, slow),
                                 "c": SoftmaxHead(8, 3), "d": LSoftmaxHead(8, 3)})
    groups = param_groups(model, lr=0.1, weight_decay=5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "no parameter twice"
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    main, g_fast, g_slow = groups
    assert main["lr"] == 0.1 and main["weight_decay"] == 5e-4
    assert [id(p) for p in g_fast["params"]] == [id(fast.mu_param), id(fast.sigma_param)]
    assert g_fast["lr"] == pytest.approx(10.0) and g_fast["weight_decay"] == 0.0
    assert [id(p) for p in g_slow["params"]] == [id(slow.mu_param), id(slow.sigma_param)]
    assert g_slow["lr"] == pytest.approx(0.05) and g_slow["weight_decay"] == 0.0
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # a valid optimiser
    assert len(opt.param_groups) == 3
    # a bare head is a model too
    assert [len(g["params"]) for g in param_groups(GSoftmaxHead(8, 3), 0.1, 0.0)] == [2, 2]
    assert len(param_groups(SoftmaxHead(8, 3), 0.1, 0.0)) == 1
    with pytest.raises(ConfigError, match="optimizer.lr"):
        param_groups(model, lr=float("nan"), weight_decay=0.0)
    with pytest.raises(ConfigError, match="optimizer.weight_decay"):
        param_groups(model, lr=0.1, weight_decay=-1.0)


def test_distribution_hooks_of_gsoftmax_and_the_defaults():
    g = build_head("gsoftmax", 5, 3, True, init="empirical", init_batches=7, dist_lr_mult=3.0, lam=0.5, mu=0.2, sigma=0.9)
    assert g.empirical_init and g.init_batches == 7 and g.dist_lr_mult == 3.0
    assert g.distribution_parameters() == [g.mu_param, g.sigma_param]
    assert not build_head("gsoftmax", 5, 3).empirical_init
    assert build_head("gsoftmax", 5, 3, learn_dist=False).distribution_parameters() == []
    mean = torch.tensor([[0.5, -0.5], [1.0, 0.0], [2.0, 3.0]])
    std = torch.tensor([[1.0, 2.0], [0.0, 0.5], [3.0, 4.0]])
    g.init_from_moments(mean, std)
    assert torch.equal(g.mu, mean) and torch.equal(g.sigma_param, std.clamp_min(SIGMA_FLOOR))
    g.set_distribution(mean + 1, std)  # the older name still works
    assert torch.equal(g.mu, mean + 1)
    with pytest.raises(ConfigError, match="non-finite"):
        g.init_from_moments(mean, std * float("nan"))
    with pytest.raises(ConfigError, match="shape"):
        g.init_from_moments(mean[:, 0], std[:, 0])
    stats = g.learned_stats()
    assert stats == learned_stats(g.mu, g.sigma)
    np.testing.assert_allclose(stats.mu, (mean + 1)[:, 0].numpy())
    hist = g.histograms()
    assert set(hist) == {"mu", "sigma"} and torch.equal(hist["sigma"], g.sigma.detach().float())
    hp = g.hparams()
    assert hp == {"head": "gsoftmax", "lam": 0.5, "mu": 0.2, "sigma": 0.9, "learn_dist": 1, "dist_lr_mult": 3.0,
                  "init": "empirical", "init_batches": 7, "dist_update": "autograd", "loss_reduction": "mean"}
    assert all(isinstance(v, (int, float, str)) for v in hp.values())
    for other in (build_head("softmax", 5, 3), build_head("msml", 5, 3, True), build_head("lsoftmax", 5, 3)):
        assert other.distribution_parameters() == [] and not other.empirical_init and other.dist_lr_mult == 1.0
        assert other.learned_stats() is None and other.histograms() == {}
        assert other.hparams()["head"] == other.name
        with pytest.raises(ConfigError) as err:
            other.init_from_moments(mean, std)
        assert "head.init=empirical" in str(err.value) and "gsoftmax" in str(err.value)
    assert build_head("lsoftmax", 5, 3, margin=3, gamma=0.01).hparams() == {
        "head": "lsoftmax", "margin": 3, "base": 1000.0, "gamma": 0.01, "power": 45.0, "beta_min": 0.0,
        "loss_reduction": "mean"}


def test_a_fifth_head_is_one_class(monkeypatch):
    """A new head with a distribution: register the class, and build_head and param_groups handle it."""

    class ScaledHead(Head):
        name = "scaled"
        config_keys = ("scale",)
        dist_lr_mult = 10.0

        def __init__(self, in_features, num_classes, multilabel=False, scale=1.0):
            super().__init__(num_classes)
            self.fc = torch.nn.Linear(in_features, num_classes)
            self.scale = torch.nn.Parameter(torch.full((num_classes,), float(scale)))

        def logits_from_x(self, x):
            return x * self.scale

        def distribution_parameters(self):
            return [self.scale]

    monkeypatch.setitem(HEADS, "scaled", ScaledHead)
    head = build_head("scaled", 4, 3, scale=2.0)
    groups = param_groups(torch.nn.Sequential(torch.nn.Linear(2, 4), head), lr=0.01, weight_decay=1e-4)
    assert groups[-1]["params"] == [head.scale] and groups[-1]["lr"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="head.colour"):
        build_head("scaled", 4, 3, colour=1)


@pytest.mark.slow
def test_import_has_no_side_effects():
    code = (
        "import warnings, torch, numpy, scipy.special; before = list(warnings.filters)\n"
        "from omegaconf.basecontainer import BaseContainer\n"
        "known = dict(BaseContainer._resolvers)\n"
        "import gsm.heads\n"
        "assert warnings.filters == before, 'warning filters changed'\n"
        "assert BaseContainer._resolvers == known, 'resolvers registered'\n"
        "import sys; assert 'gsm.train' not in sys.modules and 'hydra' not in sys.modules, sorted(m for m in sys.modules if m.startswith(('gsm', 'hydra')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- empirical init outside the trainer


def _digits_batches(multilabel: bool, dtype=torch.float64):
    """Training batches of the embedded digits sets (single-label) or digits_mosaic (multi-label), materialised."""
    from gsm.data import build_data

    cfg = {"name": "digits_mosaic", "image_size": 16, "subset": 96, "train_size": 96, "test_size": 32} if multilabel \
        else {"name": "digits", "image_size": 16, "subset": 96}
    data = build_data(cfg, batch_size=32, num_workers=0)
    data.train.set_epoch(0)
    return [(images.to(dtype), target) for images, target, _ in data.train]


def _convnet_classifier(multilabel: bool, **head):
    from gsm.models import build_classifier

    torch.manual_seed(0)
    return build_classifier({"name": "convnet", "width": 8}, {"name": "gsoftmax", "init": "empirical", **head},
                            num_classes=10, multilabel=multilabel, in_channels=1, image_size=16)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("init_batches", [2, None])
def test_init_from_data_sets_mu_sigma_to_the_mean_and_std_of_x(multilabel, init_batches):
    """Paper §IV / D12: μ_i, σ_i ← mean and population std of x_i over every image read (x⁺, x⁻ separately)."""
    batches = _digits_batches(multilabel)
    model = _convnet_classifier(multilabel, init_batches=init_batches)
    model.train()
    model.backbone.body[0].eval()  # a module's own mode survives
    n = gsm.heads.init_from_data(model, batches)
    read = batches if init_batches is None else batches[:init_batches]
    assert n == sum(len(t) for t, _ in read)
    assert model.training and model.head.training and not model.backbone.body[0].training
    model.eval()
    with torch.no_grad():  # the trainer's path: backbone, fc, mean and std in float64
        x = torch.cat([model.head.fc_outputs(model.backbone(images)) for images, _ in read])
    assert x.dtype == torch.float64 and x.shape[1:] == ((10, 2) if multilabel else (10,))
    np.testing.assert_allclose(model.head.mu.detach().numpy(), x.mean(0).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.head.sigma.detach().numpy(), np.maximum(x.std(0, unbiased=False).numpy(), SIGMA_FLOOR),
                               rtol=0, atol=1e-12)
    assert not model.head.needs_data_init and model.head(torch.zeros(2, 32)).shape == (2, 10)


def test_init_from_data_under_autocast_is_the_trainers_computation():
    """float32 model, bf16 autocast: the backbone in bf16, x = fc(f.float()) in float32, sums in float64 —
    equal tensors to the trainer's own loop (gsm.train.empirical_init before it called init_from_data)."""
    batches = _digits_batches(False, torch.float32)[:2]
    model = _convnet_classifier(False).float()
    expected = copy.deepcopy(model)
    gsm.heads.init_from_data(model, batches, amp=torch.bfloat16)
    expected.eval()
    n, s1, s2 = 0.0, 0.0, 0.0
    with torch.no_grad():
        for images, _ in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                features = expected.backbone(images)
            assert features.dtype == torch.bfloat16
            x = expected.head.fc_outputs(features.float()).double()
            n, s1, s2 = n + x.shape[0], s1 + x.sum(0), s2 + (x**2).sum(0)
    mu = s1 / n
    sigma = (s2 / n - mu**2).clamp_min(0).sqrt()
    assert torch.equal(model.head.mu_param, mu.float())
    assert torch.equal(model.head.sigma_param, sigma.float().clamp_min(SIGMA_FLOOR))


def test_init_from_data_all_reduce_pools_the_processes():
    """Two data-parallel "ranks" each read half the batches; the all_reduce hook sums their (n, Σx, Σx²), so
    both set the μ, σ of all the images, as one process reading everything does."""
    batches = _digits_batches(True)
    whole, rank0, rank1 = (_convnet_classifier(True, init_batches=None) for _ in range(3))
    gsm.heads.init_from_data(whole, batches)
    sent: list[torch.Tensor] = []
    gsm.heads.init_from_data(rank1, batches[1::2], all_reduce=lambda t: sent.append(t.clone()))
    assert sent[0].dtype == torch.float64 and sent[0].shape == (3, 10, 2)
    n = gsm.heads.init_from_data(rank0, batches[0::2], all_reduce=lambda t: t.add_(sent[0]))
    assert n == sum(len(t) for t, _ in batches)
    torch.testing.assert_close(rank0.head.mu_param, whole.head.mu_param, rtol=0, atol=1e-12)
    torch.testing.assert_close(rank0.head.sigma_param, whole.head.sigma_param, rtol=0, atol=1e-12)
    # a rank without batches still joins the reduction (zeros), and takes the others' statistics
    empty = _convnet_classifier(True, init_batches=None)
    gsm.heads.init_from_data(empty, [], all_reduce=lambda t: t.add_(sent[0]))
    torch.testing.assert_close(empty.head.mu_param, rank1.head.mu_param, rtol=0, atol=1e-12)


def test_init_from_data_reads_init_batches_and_stops_at_the_head():
    seen = []

    def loader():
        for i in range(10):
            seen.append(i)
            yield torch.randn(3, 6)

    class After(torch.nn.Module):
        def forward(self, logits):
            raise AssertionError("init_from_data ran the model past the head")

    head = GSoftmaxHead(6, 4, init="empirical", init_batches=3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), head, After())
    assert gsm.heads.init_from_data(model, loader()) == 9
    assert seen == [0, 1, 2, 3]  # the 4th batch is fetched, seen to be one too many, and not used
    # a bare head is a model too; the loader may give (images, labels, ...) tuples or lists
    bare = GSoftmaxHead(6, 4, init="empirical")
    x = torch.randn(5, 6)
    assert gsm.heads.init_from_data(bare, [[x, torch.zeros(5)]]) == 5
    torch.testing.assert_close(bare.mu, bare.fc(x).mean(0).detach(), rtol=0, atol=1e-12)


def test_init_from_data_unwraps_torch_compile_and_data_parallel():
    """The wrappers are unwrapped: nothing is compiled, and the plain model's forward runs."""
    x = torch.randn(7, 6)
    for wrap in (lambda m: torch.compile(m, backend="eager"), torch.nn.DataParallel):
        head = GSoftmaxHead(6, 3, init="empirical")
        wrapped = wrap(torch.nn.Sequential(torch.nn.Identity(), head))
        assert gsm.heads.init_from_data(wrapped, [x]) == 7
        torch.testing.assert_close(head.mu, head.fc(x).mean(0).detach(), rtol=0, atol=1e-12)
    torch._dynamo.reset()


def test_an_empirical_head_never_initialised_is_an_error(tmp_path):
    """init="empirical" without init_from_data would train from the constant μ = 0, σ = 1: refused."""
    f = torch.randn(4, 6)
    for multilabel in (False, True):
        head = GSoftmaxHead(6, 3, multilabel=multilabel, init="empirical")
        assert head.needs_data_init
        for call in (lambda: head(f), lambda: head.logits_from_x(head.fc_outputs(f)), lambda: head.eval()(f)):
            with pytest.raises(TrainingError) as err:
                call()
            assert "gsm.heads.init_from_data(model, loader)" in str(err.value) and "init='empirical'" in str(err.value)
        head.fc_outputs(f)  # x itself (what init_from_data reads) is fine
    assert not GSoftmaxHead(6, 3).needs_data_init and GSoftmaxHead(6, 3)(f).shape == (4, 3)
    # the state dict says whether μ, σ were set: a loaded initialised head runs, a loaded uninitialised one does not
    ready = GSoftmaxHead(6, 3, init="empirical")
    gsm.heads.init_from_data(ready, [f])
    torch.save(ready.state_dict(), tmp_path / "ready.pt")
    torch.save(GSoftmaxHead(6, 3, init="empirical").state_dict(), tmp_path / "unset.pt")
    loaded = GSoftmaxHead(6, 3, init="empirical")
    loaded.load_state_dict(torch.load(tmp_path / "ready.pt"))
    torch.testing.assert_close(loaded(f), ready(f))
    unset = GSoftmaxHead(6, 3, init="empirical")
    unset.load_state_dict(torch.load(tmp_path / "unset.pt"))
    with pytest.raises(TrainingError, match="init_from_data"):
        unset(f)
    # a constant head's state dict (and one saved before gsm recorded the flag) carries its μ, σ: it loads and runs
    for state in (GSoftmaxHead(6, 3).state_dict(), {**ready.state_dict(), "_extra_state": {"lam": 1.0}}):
        fresh = GSoftmaxHead(6, 3, init="empirical")
        fresh.load_state_dict(state)
        assert not fresh.needs_data_init and fresh(f).shape == (4, 3)
    assert GSoftmaxHead(6, 3).get_extra_state() == {"lam": 1.0}  # constant heads save what they always did
    # init_from_moments (what init_from_data calls) sets it too
    direct = GSoftmaxHead(6, 3, init="empirical")
    direct.init_from_moments(torch.zeros(3), torch.ones(3))
    assert direct(f).shape == (4, 3)


def test_init_from_data_errors_name_what_to_do():
    x = torch.randn(4, 6)
    with pytest.raises(ConfigError, match=r"no head with init='empirical'.*GSoftmaxHead\(\.\.\., init='empirical'\)"):
        gsm.heads.init_from_data(torch.nn.Sequential(GSoftmaxHead(6, 3)), [x])
    with pytest.raises(ConfigError, match="no head with init='empirical'"):
        gsm.heads.init_from_data(SoftmaxHead(6, 3), [x])
    with pytest.raises(ConfigError, match="image tensors or \\(images, ...\\) tuples \\(got a batch of type dict\\)"):
        gsm.heads.init_from_data(GSoftmaxHead(6, 3, init="empirical"), [{"image": x}])
    with pytest.raises(TrainingError, match="the loader gave no images"):
        gsm.heads.init_from_data(GSoftmaxHead(6, 3, init="empirical"), [])

    class Unused(torch.nn.Module):  # holds the head but never calls it
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(6, 6), GSoftmaxHead(6, 3, init="empirical")

        def forward(self, images):
            return self.body(images)

    with pytest.raises(TrainingError, match="model\\(images\\) never called its GSoftmaxHead"):
        gsm.heads.init_from_data(Unused(), [x])
    two = torch.nn.ModuleList([GSoftmaxHead(6, 3, init="empirical", init_batches=1),
                               GSoftmaxHead(6, 3, init="empirical", init_batches=2)])
    with pytest.raises(ConfigError, match="different init_batches"):
        gsm.heads.init_from_data(two, [x])


def test_constructor_docstrings_list_every_argument():
    """help(cls) shows every constructor argument as ``name (type…): meaning`` under Args."""
    import gsm.models
    from gsm.models import densenet, wrn

    classes = [Head, *HEADS.values(), gsm.models.Classifier, densenet.DenseLayer, densenet.Transition,
               wrn.BasicBlock]
    for target in gsm.models.MODELS.values():
        module, name = target[0].split(":")
        classes.append(getattr(__import__(module, fromlist=[name]), name))
    assert len(classes) == 1 + len(HEADS) + 4 + len(gsm.models.MODELS)
    for cls in classes:
        doc = inspect.getdoc(cls) or ""
        assert "\nArgs:\n" in doc, cls.__name__
        args = doc.split("\nArgs:\n", 1)[1]
        for param in list(inspect.signature(cls.__init__).parameters)[1:]:
            assert f"    {param} (" in args, f"{cls.__name__}: argument {param!r} is not in its docstring"
    assert "init_from_data" in inspect.getdoc(GSoftmaxHead) and "§IV" in inspect.getdoc(gsm.heads.init_from_data)
