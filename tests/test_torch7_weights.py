"""model.weights=fb_resnet_torch: fb.resnet.torch's Torch7 ResNet file into gsm's ResNet (gsm.models.torch7).

The files are written by tests/torch7_writer.py (its own writer of Torch7's format, the module tree of
fb.resnet.torch's models/resnet.lua) at a small size of the same layout (``model.blocks``, ``model.width``); the
forward pass is checked against a direct computation from the arrays written, by torch.nn.functional alone.
"""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsm.errors import ConfigError
from gsm.models import build_backbone
from gsm.models.torch7 import URL, default_file
from torch7_writer import Module, fb_resnet, write_t7

BLOCKS, WIDTH = (1, 2, 1, 1), 8  # fb.resnet.torch's layout, small: every kind of block (first, strided, identity)
SMALL = {"name": "resnet_small", "blocks": list(BLOCKS), "width": WIDTH, "weights": "fb_resnet_torch"}


def _file(tmp_path, name="resnet-101.t7", **kw):
    tree, arrays = fb_resnet(np.random.default_rng(0), BLOCKS, WIDTH, **kw)
    path = tmp_path / name
    write_t7(path, tree)
    return path, tree, arrays


def direct_forward(arrays: dict, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """fb.resnet.torch's ImageNet ResNet (models/resnet.lua createModel, bottleneck, shortcut type B) on ``x`` from
    the file's arrays, global average pooled; ``training``: BatchNorm on the batch's statistics."""
    def t(name):
        return torch.from_numpy(arrays[name]).double() if name in arrays else None

    def conv(name, y, stride, pad):
        return F.conv2d(y, t(f"{name}.weight"), t(f"{name}.bias"), stride, pad)

    def bn(name, y):
        return F.batch_norm(y, t(f"{name}.running_mean"), t(f"{name}.running_var"), t(f"{name}.weight"),
                            t(f"{name}.bias"), training=training, eps=1e-5)

    y = F.max_pool2d(F.relu(bn("bn1", conv("conv1", x, 2, 3))), 3, 2, 1)
    channels = WIDTH
    for stage, count in enumerate(BLOCKS):
        n = WIDTH * 2 ** stage
        for j in range(count):
            stride, p = (2 if stage > 0 and j == 0 else 1), f"layer{stage + 1}.{j}"
            r = F.relu(bn(f"{p}.bn1", conv(f"{p}.conv1", y, 1, 0)))
            r = F.relu(bn(f"{p}.bn2", conv(f"{p}.conv2", r, stride, 1)))  # the stride on the 3x3 (resnet.lua)
            r = bn(f"{p}.bn3", conv(f"{p}.conv3", r, 1, 0))
            s = bn(f"{p}.downsample.1", conv(f"{p}.downsample.0", y, stride, 0)) if channels != 4 * n else y
            y, channels = F.relu(r + s), 4 * n
    return y.mean(dim=(2, 3))


def test_every_tensor_lands_where_it_belongs_and_the_forward_is_the_files(tmp_path):
    path, _, arrays = _file(tmp_path)
    backbone = build_backbone({**SMALL, "pretrained": True, "weights_path": str(path)}, 3, 64)
    state = backbone.state_dict()
    tensors = {k for k in state if not k.endswith("num_batches_tracked")}
    assert tensors == {k for k in arrays if not k.startswith("fc")}  # every tensor of the backbone, nothing else
    for name in tensors:
        assert torch.equal(state[name], torch.from_numpy(arrays[name])), name
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = backbone.double().eval()(x)
    assert got.shape == (2, 4 * WIDTH * 8)
    assert torch.allclose(got, direct_forward(arrays, x), rtol=1e-10, atol=1e-10)


def test_conv_bias_2d_weights_and_old_batchnorm_are_read_as_nn_reads_them(tmp_path):
    """A conv bias (cuDNN < 4) is folded into the next BatchNorm exactly, in eval and in training mode; 2-D
    SpatialConvolutionMM weights are reshaped; running_std (nn's BatchNormalization before version 2) becomes
    running_var = running_std^-2 - eps."""
    path, _, arrays = _file(tmp_path, conv_bias=True, old_bn=True, mm=True)
    backbone = build_backbone({**SMALL, "pretrained": True, "weights_path": str(path)}, 3, 64).double()
    state = backbone.state_dict()
    assert torch.allclose(state["layer2.0.bn2.running_var"].float(), torch.from_numpy(arrays["layer2.0.bn2.running_var"]),
                          rtol=1e-5)
    folded = arrays["layer2.0.bn2.running_mean"] - arrays["layer2.0.conv2.bias"]
    assert torch.allclose(state["layer2.0.bn2.running_mean"].float(), torch.from_numpy(folded))
    x = torch.randn(4, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(backbone.eval()(x), direct_forward(arrays, x), rtol=1e-5, atol=1e-5)
    assert torch.allclose(backbone.train()(x), direct_forward(arrays, x, training=True), rtol=1e-8, atol=1e-8)


def test_other_input_channels_adapt_the_rgb_filters(tmp_path):
    path, _, arrays = _file(tmp_path)
    backbone = build_backbone({**SMALL, "weights_path": str(path)}, 1, 32)  # weights_path without pretrained loads
    assert torch.allclose(backbone.conv1.weight, torch.from_numpy(arrays["conv1.weight"]).sum(1, keepdim=True))


def test_a_missing_file_says_where_to_download_it_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError) as err:
        build_backbone({**SMALL, "pretrained": True}, 3, 64)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("model.weights=fb_resnet_torch: ")
    assert URL in msg and "fb.resnet.torch" in msg and str(default_file()) in msg and default_file().parent == tmp_path / "hub" / "checkpoints"
    assert "model.weights_path=" in msg and "model.weights=torchvision" in msg
    with pytest.raises(ConfigError, match=f"are not at {tmp_path / 'elsewhere.t7'}"):
        build_backbone({**SMALL, "weights_path": str(tmp_path / "elsewhere.t7")}, 3, 64)
    build_backbone({**SMALL, "pretrained": False}, 3, 64)  # no weights asked for: nothing read


def test_another_size_a_truncated_file_and_the_wrong_format(tmp_path):
    path, _, _ = _file(tmp_path)
    with pytest.raises(ConfigError, match=r"conv1\.weight of shape \(8, 3, 7, 7\); gsm's is \(16, 3, 7, 7\)"):
        build_backbone({**SMALL, "width": 16, "weights_path": str(path)}, 3, 64)
    cut = tmp_path / "cut.t7"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"cannot be read as a Torch7 file") as err:
        build_backbone({**SMALL, "weights_path": str(cut)}, 3, 64)
    assert "\n" not in str(err.value)
    state = tmp_path / "state.pt"
    torch.save(build_backbone({**SMALL, "weights": "torchvision"}, 3, 64).state_dict(), state)
    with pytest.raises(ConfigError, match=r"is not a Torch7 file.*model\.weights=torchvision"):
        build_backbone({**SMALL, "weights_path": str(state)}, 3, 64)
    with pytest.raises(ConfigError, match=r"a Torch7 file, not a torch state dict.*model\.weights=fb_resnet_torch"):
        build_backbone({**SMALL, "weights": "torchvision", "weights_path": str(path)}, 3, 64)
    with pytest.raises(ConfigError, match=r"model\.weights.*fb_resnet_torch"):
        build_backbone({**SMALL, "weights": "authors"}, 3, 64)


@pytest.mark.slow  # composes the paper rows (a few seconds each on 2 cores)
@pytest.mark.parametrize("experiment", ["table2/resnet101_tiny_imagenet_softmax", "table3/resnet101_coco_softmax",
                                        "table4/resnet101_nuswide_gsoftmax_mu0_sigma1"])
def test_paper_rows_start_from_the_authors_weights_and_torchvision_keeps_the_old_identity(experiment):
    """The Table II-IV recipes set model.weights=fb_resnet_torch (a new run: other starting weights); with
    model.weights=torchvision the signature is the one the row had before the key existed."""
    from gsm import runs
    from gsm.grid import compose, compose_many

    authors, tv = compose_many([(experiment, []), (experiment, ["model.weights=torchvision"])])
    assert authors["model"]["weights"] == "fb_resnet_torch" and authors["model"]["pretrained"] is True
    before = {**tv, "model": {k: v for k, v in tv["model"].items() if k != "weights"}}  # a config of gsm before the key
    assert runs.signature(tv) == runs.signature(before) != runs.signature(authors)
    assert "weights" not in runs.signature_payload(tv)["model"]
    smoke = compose(experiment, ["model.name=resnet_small", "model.pretrained=false"])  # what the smoke profile runs
    build_backbone({**smoke["model"], "blocks": [1, 1, 1, 1], "width": 8}, 3, 32)  # reads no file


def _damaged_tree(tree: Module, how: str) -> Module:
    """fb.resnet.torch's tree with one thing a damaged or foreign file could hold instead (layer2's first block has
    a downsampling shortcut)."""
    mods = tree.fields["modules"]
    conv1, bn1, maxpool, layer2 = mods[0], mods[1], mods[3], mods[5]
    block = layer2.fields["modules"][0]
    concat = block.fields["modules"][0]
    res, short = concat.fields["modules"]
    if how == "class":
        block.fields["modules"][2] = Module("nn.Sigmoid", {})
    elif how == "shortcut_class":
        concat.fields["modules"][1] = Module("nn.Identity", {})
    elif how == "stride":
        res.fields["modules"][3].fields["dW"] = 1
    elif how == "blocks":
        del layer2.fields["modules"][1]
    elif how == "extra":
        mods.append(Module("nn.SpatialConvolution", {}))
    elif how == "few":
        tree.fields["modules"] = mods[:3]
    elif how == "not_list":
        layer2.fields["modules"] = 7
    elif how == "no_weight":
        conv1.fields["weight"] = None
    elif how == "text_weight":
        conv1.fields["weight"] = "w"
    elif how == "nan":
        bn1.fields["weight"][2] = np.nan
    elif how == "groups":
        conv1.fields["groups"] = 2
    elif how == "bias_shape":
        conv1.fields["bias"] = np.ones(3, dtype=np.float32)
    elif how == "eps":
        bn1.fields["eps"] = 1e-3
    elif how == "negative_var":
        bn1.fields["running_var"][0] = -0.5
    elif how == "maxpool":
        maxpool.fields["kH"] = 2
    elif how == "parts":
        block.fields["modules"] = block.fields["modules"][:2]
    elif how == "branches":
        concat.fields["modules"] = [res]
    elif how == "residual":
        res.fields["modules"] = res.fields["modules"][:7]
    elif how == "shortcut_parts":
        short.fields["modules"].append(Module("cudnn.ReLU", {}))
    return tree


@pytest.mark.parametrize("how, message", [
    ("class", r"model\.modules\[6\]\.modules\[1\]\.modules\[3\] has a nn\.Sigmoid, expected ReLU"),
    ("shortcut_class", r"model\.modules\[6\]\.modules\[1\]\.modules\[1\]\.modules\[2\] has a nn\.Identity, "
                       r"expected Sequential"),
    ("stride", r"kernel, stride, padding \(3, 3\), \(2, 1\), \(1, 1\); gsm's layer2\.0\.conv2 has \(3, 3\), \(2, 2\), "
               r"\(1, 1\)"),
    ("blocks", r"model\.modules\[6\] has 1 bottlenecks; gsm's layer2 has 2"),
    ("extra", r"model\.modules\[12\] has a nn\.SpatialConvolution, expected SpatialAveragePooling or View"),
    ("few", r"model has 3 modules, expected at least 8 \(conv, BN, ReLU, max pool, 4 layers\)$"),
    ("not_list", r"model\.modules\[6\] has no list of modules$"),
    ("no_weight", r"model\.modules\[1\] has no weight$"),
    ("text_weight", r"model\.modules\[1\] has a weight that is not a float tensor \(\w+\)$"),
    ("nan", r"model\.modules\[2\] has non-finite values in bn1\.weight$"),
    ("groups", r"model\.modules\[1\] has 2(\.0)? groups; gsm's conv1 has 1$"),
    ("bias_shape", r"model\.modules\[1\] has a bias of shape \(3,\); conv1 has 8 outputs$"),
    ("eps", r"model\.modules\[2\] has eps 0\.001; gsm's BatchNorm uses 1e-05$"),
    ("negative_var", r"model\.modules\[2\] has a negative running variance in bn1$"),
    ("maxpool", r"model\.modules\[4\] has max pooling kernel, stride, padding \(2, 2, 1\); gsm's maxpool has "
                r"\(3, 2, 1\)$"),
    ("parts", r"model\.modules\[6\]\.modules\[1\] has 2 modules, expected ConcatTable, CAddTable, ReLU$"),
    ("branches", r"model\.modules\[6\]\.modules\[1\]\.modules\[1\] has 1 branches, expected residual and shortcut$"),
    ("residual", r"model\.modules\[6\]\.modules\[1\]\.modules\[1\]\.modules\[1\] has 7 modules, expected conv, BN, "
                 r"ReLU, conv, BN, ReLU, conv, BN$"),
    ("shortcut_parts", r"model\.modules\[6\]\.modules\[1\]\.modules\[1\]\.modules\[2\] has 3 modules, expected the "
                 r"shortcut's conv 1x1 and BN$"),
])
def test_a_damaged_module_tensor_or_setting_is_one_error_naming_the_module(tmp_path, how, message):
    _, tree, _ = _file(tmp_path)
    path = tmp_path / f"{how}.t7"
    write_t7(path, _damaged_tree(tree, how))
    with pytest.raises(ConfigError) as err:
        build_backbone({**SMALL, "weights_path": str(path)}, 3, 64)
    text = str(err.value)
    assert text.startswith(f"model.weights=fb_resnet_torch, model.weights_path='{path}': not fb.resnet.torch's ResNet "
                           f"layout: ") and "\n" not in text
    assert re.search(message, text), text


def test_a_backbone_tensor_the_file_cannot_set_is_an_error_naming_it(tmp_path):
    from gsm.models.torch7 import read_torch7, state_dict_from_torch7

    path, _, _ = _file(tmp_path)
    backbone = build_backbone({**SMALL, "pretrained": False}, 3, 64)
    backbone.register_buffer("scale", torch.ones(1))  # a module gsm's ResNet might gain: the walk knows no value
    with pytest.raises(ConfigError) as err:
        state_dict_from_torch7(read_torch7(path, "src"), backbone, "src")
    assert str(err.value) == "src: the Torch7 model sets no value for 1 tensors of gsm's backbone, e.g. scale"
