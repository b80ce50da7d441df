"""The README's "G-softmax in your own model" snippet runs as written (ResNet-18, param_groups, compile, state dict)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    """The first ```python block of the README section titled "G-softmax in your own model"."""
    text = README.read_text()
    section = re.search(r"^## G-softmax in your own model\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has no section '## G-softmax in your own model'"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "the section has no python block"
    return block.group(1)


def test_snippet_shows_what_a_user_needs():
    code = readme_snippet()
    for needed in ("resnet.fc = nn.Identity()", "param_groups(", "torch.compile(", "load_state_dict(", "head_loss("):
        assert needed in code, needed


def test_readme_snippet_runs(tmp_path, monkeypatch):
    """Executes the block verbatim. Inductor needs minutes of C++ compilation on 2 CPU cores, so the
    test lets torch.compile use the aot_eager backend (Dynamo + AOT autograd tracing of the whole model,
    without code generation); the snippet's text is unchanged."""
    real_compile = torch.compile

    def compile_aot_eager(model, *args, **kwargs):
        kwargs.setdefault("backend", "aot_eager")
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "readme_snippet"}
    try:
        exec(compile(readme_snippet(), "README.md:G-softmax in your own model", "exec"), namespace)
    finally:
        torch._dynamo.reset()
    from gsm.heads import GSoftmaxHead

    head, model = namespace["head"], namespace["model"]
    assert isinstance(head, GSoftmaxHead) and model[1] is head
    assert (tmp_path / "gsoftmax_resnet18.pt").is_file()
    # the SGD step moved μ (its own group, no weight decay) away from its initial 0
    assert head.mu.abs().sum() > 0
    groups = namespace["optimizer"].param_groups
    assert groups[-1]["weight_decay"] == 0.0 and {id(p) for p in groups[-1]["params"]} == {id(head.mu_param), id(head.sigma_param)}


def test_snippet_state_dict_refuses_another_lambda(tmp_path):
    from torch import nn

    from gsm.errors import CheckpointError
    from gsm.heads import GSoftmaxHead

    saved = nn.Sequential(nn.Flatten(), GSoftmaxHead(12, num_classes=3, lam=1.0)).state_dict()
    other = nn.Sequential(nn.Flatten(), GSoftmaxHead(12, num_classes=3, lam=0.5))
    with pytest.raises(CheckpointError, match="head.lam"):
        other.load_state_dict(saved)
