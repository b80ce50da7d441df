"""DenseNet's shared-storage concatenation (``model.shared_concat``) is the same model as the torch.cat path:
same outputs, gradients, state_dict and optimiser step, in NCHW and channels_last, train and eval, BC or not."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from gsm.errors import ConfigError
from gsm.models import check_model_config
from gsm.models.densenet import DenseNet, dense_block_shared, storage_alias

TOL = 1e-10


def _pair(bc: bool, dropout: float = 0.0) -> tuple[DenseNet, DenseNet]:
    """A tiny DenseNet (cat path) and the same weights on the shared-storage path, in float64."""
    torch.manual_seed(0)
    depth = 16 if bc else 10  # two layers per block (BC: 6n + 4, original: 3n + 4)
    cat = DenseNet(in_channels=3, depth=depth, growth=4, bc=bc, dropout=dropout).double()
    shared = DenseNet(in_channels=3, depth=depth, growth=4, bc=bc, dropout=dropout, shared_concat=True).double()
    with torch.no_grad():  # BN's default affine (1, 0) would hide a gradient routed to the wrong channel
        for p in cat.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    shared.load_state_dict(cat.state_dict())
    return cat, shared


def _images(channels_last: bool) -> torch.Tensor:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return x.to(memory_format=torch.channels_last) if channels_last else x


def _loss(out: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)  # every feature weighs differently
    return (out * w).sum() + (out ** 2).sum()


def _assert_same_run(cat: DenseNet, shared: DenseNet, x: torch.Tensor) -> None:
    xs, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_c, out_s = cat(xc), shared(xs)
    assert out_c.shape == out_s.shape == (3, cat.out_features)
    torch.testing.assert_close(out_s, out_c, rtol=0, atol=TOL)
    _loss(out_c).backward()
    _loss(out_s).backward()
    torch.testing.assert_close(xs.grad, xc.grad, rtol=0, atol=TOL)
    for (name, pc), (_, ps) in zip(cat.named_parameters(), shared.named_parameters()):
        assert pc.grad is not None and ps.grad is not None, name
        assert pc.grad.abs().sum() > 0, name  # the comparison means something for every parameter
        torch.testing.assert_close(ps.grad, pc.grad, rtol=0, atol=TOL, msg=name)
    for (name, bc_), (_, bs) in zip(cat.named_buffers(), shared.named_buffers()):  # BN running statistics
        torch.testing.assert_close(bs, bc_, rtol=0, atol=TOL, msg=name)


@pytest.mark.parametrize("bc", [False, True], ids=["original", "bc"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_shared_concat_matches_cat_outputs_and_every_gradient(bc, channels_last, train):
    cat, shared = _pair(bc)
    cat.train(train)
    shared.train(train)
    if channels_last:
        cat.to(memory_format=torch.channels_last)
        shared.to(memory_format=torch.channels_last)
    _assert_same_run(cat, shared, _images(channels_last))


@pytest.mark.parametrize("bc", [False, True], ids=["original", "bc"])
def test_dropout_draws_the_same_masks(bc):
    # The layers run in the same order on either path, so a seeded run draws the same dropout masks.
    cat, shared = _pair(bc, dropout=0.3)
    x = _images(False)
    torch.manual_seed(5)
    out_c = cat(x)
    torch.manual_seed(5)
    out_s = shared(x)
    torch.testing.assert_close(out_s, out_c, rtol=0, atol=TOL)
    torch.manual_seed(6)
    assert not torch.allclose(cat(x), out_c)  # dropout is really on: another seed, another output


def test_block_buffer_layout_and_saved_inputs_are_not_overwritten():
    # The block's buffer has the input's memory format, and each alias covers only the first c channels.
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last)
    buffer = torch.empty(3, 9, 4, 4, dtype=torch.float64, memory_format=torch.channels_last)
    buffer[:, :5].copy_(x)
    head = storage_alias(buffer, 5)
    assert head.stride() == buffer.stride() and head.data_ptr() == buffer.data_ptr()
    assert torch.equal(head, x)
    version = head._version
    buffer[:, 5:].fill_(7.0)  # writing the later channels leaves the alias's numbers and version alone
    assert torch.equal(head, x) and head._version == version
    # and through a whole block: the output's first channels are the input, in its layout
    _, shared = _pair(False)
    block = [m for m in shared.features if type(m).__name__ == "DenseLayer"][:2]
    y = torch.randn(3, 16, 8, 8, dtype=torch.float64).to(memory_format=torch.channels_last)
    out = dense_block_shared(block, y)
    assert out.shape == (3, 24, 8, 8) and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[:, :16], y)
    expected = block[1](block[0](y))
    torch.testing.assert_close(out, expected, rtol=0, atol=TOL)


def test_state_dicts_are_interchangeable():
    cat, shared = _pair(True)
    assert list(cat.state_dict()) == list(shared.state_dict())
    fresh_cat = DenseNet(in_channels=3, depth=16, growth=4, bc=True).double()
    fresh_cat.load_state_dict(shared.state_dict())  # strict: every key matches both ways
    fresh_shared = DenseNet(in_channels=3, depth=16, growth=4, bc=True, shared_concat=True).double()
    fresh_shared.load_state_dict(cat.state_dict())
    x = _images(False)
    cat.eval(), fresh_cat.eval(), shared.eval(), fresh_shared.eval()
    torch.testing.assert_close(fresh_cat(x), shared(x), rtol=0, atol=TOL)
    torch.testing.assert_close(fresh_shared(x), cat(x), rtol=0, atol=TOL)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_one_sgd_step_gives_the_same_weights(channels_last):
    cat, shared = _pair(False)
    if channels_last:
        cat.to(memory_format=torch.channels_last)
        shared.to(memory_format=torch.channels_last)
    x, target = _images(channels_last), torch.tensor([0, 3, 1])
    for model in (cat, shared):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
        F.cross_entropy(model(x)[:, :4], target).backward()
        opt.step()
    for (name, pc), (_, ps) in zip(cat.state_dict().items(), shared.state_dict().items()):
        torch.testing.assert_close(ps, pc, rtol=0, atol=TOL, msg=name)
    assert not torch.equal(cat.features[0].weight, _pair(False)[0].features[0].weight)  # the step moved them


def test_no_grad_and_inference_mode():
    cat, shared = _pair(False)
    cat.eval(), shared.eval()
    x = _images(True)
    with torch.inference_mode():
        torch.testing.assert_close(shared(x), cat(x), rtol=0, atol=TOL)
    with torch.no_grad():
        out = shared(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, cat(x).detach(), rtol=0, atol=TOL)


def test_shared_concat_is_a_checked_model_key():
    _, kwargs = check_model_config({"name": "densenet", "depth": 40, "growth": 12, "shared_concat": True})
    assert kwargs["shared_concat"] is True
    assert check_model_config({"name": "densenet"})[1]["shared_concat"] is False
    with pytest.raises(ConfigError, match=r"^model\.shared_concat"):
        check_model_config({"name": "densenet", "shared_concat": "yes"})
    with pytest.raises(ConfigError, match=r"^model\.shared_concat"):
        check_model_config({"name": "wrn", "shared_concat": True})  # a DenseNet setting only


class SharedPathTaken(Exception):
    pass


def test_a_model_being_compiled_takes_the_cat_path(monkeypatch):
    # Tensor.set_ cannot be traced by torch.compile; while it traces, forward_features must use torch.cat.
    cat, shared = _pair(False)
    x = _images(False)

    def taken(*args):
        raise SharedPathTaken

    monkeypatch.setattr("gsm.models.densenet.dense_block_shared", taken)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(shared(x), cat(x), rtol=0, atol=TOL)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    with pytest.raises(SharedPathTaken):  # and in eager mode the shared path really is the one taken
        shared(x)


@pytest.mark.slow
def test_torch_compile_traces_shared_concat_in_one_graph():
    cat, shared = _pair(False)
    x = _images(False)
    graphs = []

    def backend(gm, example_inputs):  # records each graph dynamo hands over; a graph break makes a second one
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(shared, backend=backend)(x), cat(x), rtol=0, atol=TOL)
    assert len(graphs) == 1
    torch._dynamo.reset()
