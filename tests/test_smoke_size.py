"""The smoke profile's models are small versions of the paper's, so all smoke tables together fit in 300 MB
(gsm.profiles.SMOKE, model.blocks / model.width of ResNet-101 and VGG-16, gsm.estimate_plan.disk_bytes)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from gsm import paper
from gsm.errors import ConfigError
from gsm.estimate_plan import disk_bytes
from gsm.grid import Grid
from gsm.models import check_model_config
from gsm.models.resnet import ResNet101
from gsm.models.vgg import CFG_D, VGG16


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _bottleneck(inplanes: int, planes: int, downsample: bool) -> int:
    """Parameters of one torchvision Bottleneck, counted by hand: three convs, three BatchNorms, the shortcut."""
    convs = inplanes * planes + 9 * planes * planes + planes * 4 * planes
    norms = 2 * (planes + planes + 4 * planes)
    return convs + norms + ((inplanes * 4 * planes + 2 * 4 * planes) if downsample else 0)


@pytest.mark.slow
def test_the_smaller_resnet_is_resnet_101_s_layout_and_the_default_is_resnet_101():
    paper_size = ResNet101()
    tv = torchvision.models.resnet101(weights=None)
    assert _params(paper_size) == _params(tv) - _params(tv.fc) == 42_500_160
    assert paper_size.out_features == 2048
    small = ResNet101(blocks=[1, 1, 1, 1], width=8)
    width, expected, inplanes = 8, 3 * 8 * 49 + 2 * 8, 8  # stem conv and BatchNorm
    for stage in range(4):
        planes = width * 2 ** stage
        expected += _bottleneck(inplanes, planes, downsample=True)
        inplanes = 4 * planes
    assert _params(small) == expected == 128_392 and small.out_features == 256
    # the same module names as ResNet-101 (its first block of each stage), so the trainer and figures see one layout
    assert set(small.state_dict()) == {k for k in paper_size.state_dict() if k.split(".")[1] == "0" or "layer" not in k}
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 256)


def test_vgg_width_scales_every_layer():
    def count(width: int) -> int:
        cin, total = 3, 0
        for v in CFG_D:
            if v != "M":
                cout = int(v) * width // 64
                total += 9 * cin * cout + 2 * cout
                cin = cout
        return total

    assert _params(VGG16()) == count(64) == 14_718_912  # conv weights and BatchNorm, no bias
    assert _params(VGG16(width=8)) == count(8) and VGG16(width=8).out_features == 64


@pytest.mark.parametrize(("cfg", "message"), [
    ({"name": "resnet_small", "blocks": [1, 1, 1]}, "model.blocks must be 4 block counts"),
    ({"name": "resnet_small", "blocks": [1, 0, 1, 1]}, "model.blocks[1] must be an integer >= 1"),
    ({"name": "resnet_small", "width": 0}, "model.width"),
    ({"name": "vgg16_small", "width": "wide"}, "model.width"),
    ({"name": "vgg16", "width": 8}, "model.width is not a setting of model=vgg16"),  # VGG-16 itself has one size
])
def test_bad_sizes_are_one_error_naming_the_key(cfg, message):
    with pytest.raises(ConfigError) as err:
        check_model_config(cfg)
    assert message in str(err.value)


@pytest.mark.slow
def test_all_smoke_tables_write_less_than_300_mb(tmp_path):
    total, per_table = 0, {}
    for table in (1, 2, 3, 4):
        grid = Grid(paper.experiments(table), "smoke", tmp_path / "runs")
        per_table[table] = sum(disk_bytes(row.config)["total"] for row in grid.rows.values())
        total += per_table[table]
        # the small versions of the paper's models, each row keeping its recipe (dataset_model) otherwise
        names = {row.config["model"]["name"] for row in grid.rows.values()}
        assert names <= {"vgg16_small", "densenet", "wrn", "resnet_small"} and "resnet101" not in names
    assert total < 300e6 / 4, per_table  # ~25 MB: far inside the budget
    full = Grid(["table3/resnet101_coco_softmax"], "full", tmp_path / "runs")
    assert disk_bytes(full.rows["table3/resnet101_coco_softmax"].config)["checkpoint"] > 300e6  # what smoke avoids
