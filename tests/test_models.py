"""The paper's backbones: sizes (the paper's §IV), output shapes at the paper's input sizes, weight loading, configs."""

from __future__ import annotations

import inspect
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from hydra import compose, initialize_config_dir

from gsm.errors import ConfigError
from gsm.models import MODELS, build_backbone, build_classifier
from gsm.models.resnet import WEIGHTS, ResNet101

CONFIGS = Path(__file__).resolve().parent.parent / "gsm" / "configs"
SOFTMAX = {"name": "softmax"}
R101 = {"name": "resnet101", "pretrained": False, "weights_path": None}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_classifier(model_cfg: dict, num_classes: int, multilabel: bool = False):
    """Structure only (no memory, no init cost): parameter counts do not depend on values."""
    with torch.device("meta"):
        return build_classifier(model_cfg, SOFTMAX, num_classes=num_classes, multilabel=multilabel,
                                in_channels=3, image_size=32)


# ----------------------------------------------------------------------------- sizes (the paper's §IV)


@pytest.mark.parametrize(
    ("model_cfg", "num_classes", "reference"),
    [
        ({"name": "vgg16"}, 10, 14.7e6),                # VGG-16-BN CIFAR, the paper's §IV
        ({"name": "vgg16"}, 100, 14.7e6),
        ({"name": "wrn"}, 10, 109.4e6),                 # WRN-40-14 (defaults), the paper's §IV
        ({"name": "wrn"}, 100, 109.4e6),
        ({"name": "densenet"}, 10, 27.25e6),            # DenseNet-100-24 non-BC (defaults), the paper's §IV
        ({"name": "densenet"}, 100, 27.25e6),
        ({"name": "wrn", "depth": 28, "width": 10}, 10, 36.5e6),                  # WRN paper, Table 4
        ({"name": "densenet", "depth": 190, "growth": 40, "bc": True}, 10, 25.6e6),  # DenseNet paper, Table 2
        ({"name": "densenet", "depth": 250, "growth": 24, "bc": True}, 10, 15.3e6),
    ],
)
def test_parameter_counts_match_the_references(model_cfg, num_classes, reference):
    count = n_params(meta_classifier(model_cfg, num_classes))
    assert abs(count - reference) / reference < 0.01, f"{model_cfg}: {count:,} params vs reference {reference:,.0f}"


def test_resnet101_is_torchvisions_without_fc():
    model = meta_classifier(R101, 1000)
    with torch.device("meta"):
        tv = torchvision.models.resnet101(weights=None)
    backbone = n_params(model.backbone)
    assert abs(backbone - 42.5e6) / 42.5e6 < 0.01, backbone
    assert backbone == n_params(tv) - n_params(tv.fc)
    assert n_params(model) == n_params(tv)  # + a 1000-class softmax head = torchvision's resnet101 exactly
    assert set(model.backbone.state_dict()) == {k for k in tv.state_dict() if not k.startswith("fc.")}


def test_backbones_have_no_classifier_of_their_own():
    for cfg, features in [({"name": "vgg16"}, 512), ({"name": "wrn"}, 896), ({"name": "densenet"}, 2320), (R101, 2048)]:
        model = meta_classifier(cfg, 10)
        assert model.backbone.out_features == features
        assert not any(isinstance(m, torch.nn.Linear) for m in model.backbone.modules()), cfg["name"]


# ----------------------------------------------------------------------------- output shapes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "wrn", "densenet"])
def test_cifar_models_at_32_and_64(name):
    """The paper's sizes: finite logits at 32² (CIFAR), and the shapes at 64² as well, traced on the meta device
    (shapes without the arithmetic: WRN-40-14 at 64² is 380 GFLOP)."""
    torch.manual_seed(0)
    kw = dict(num_classes=100, multilabel=False, in_channels=3, image_size=32)
    model = build_classifier({"name": name}, SOFTMAX, **kw).eval()
    with torch.device("meta"):
        shapes_only = build_classifier({"name": name}, SOFTMAX, **kw).eval()
    with torch.no_grad():
        for size, m in ((32, model), (32, shapes_only), (64, shapes_only)):
            features = m.backbone(torch.randn(1, 3, size, size, device=next(m.parameters()).device))
            assert features.shape == (1, m.backbone.out_features), (size, features.shape)
            logits = m.head(features)
            assert logits.shape == (1, 100), (size, logits.shape)
            if m is model:
                assert torch.isfinite(logits).all()


@pytest.mark.parametrize("cfg", [
    {"name": "vgg16"}, {"name": "wrn", "depth": 16, "width": 2, "dropout": 0.3},
    {"name": "densenet", "depth": 40, "growth": 12}, {"name": "densenet", "depth": 40, "growth": 12, "bc": True, "dropout": 0.2},
])
def test_cifar_models_train_step_and_grayscale(cfg):
    model = build_classifier(cfg, SOFTMAX, num_classes=10, multilabel=False, in_channels=1, image_size=32)
    logits = model(torch.randn(2, 1, 32, 32))
    logits.logsumexp(1).sum().backward()
    assert logits.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


@pytest.fixture(scope="module")
def resnet_gap():
    torch.manual_seed(0)
    return build_backbone(R101, 3, 224).eval()


@pytest.mark.parametrize("size", [64, 224, 448])
def test_resnet101_input_sizes(resnet_gap, size):
    with torch.no_grad():
        out = resnet_gap(torch.randn(1, 3, size, size))
    assert out.shape == (1, 2048) and torch.isfinite(out).all()


def test_gap_and_gmp_pool_the_last_map(resnet_gap):
    gmp = build_backbone({**R101, "pool": "gmp"}, 3, 64).eval()
    gmp.load_state_dict(resnet_gap.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fmap = resnet_gap.forward_features(x)
        avg, mx = resnet_gap(x), gmp(x)
    assert fmap.shape == (1, 2048, 2, 2)
    torch.testing.assert_close(avg, fmap.mean((2, 3)))
    torch.testing.assert_close(mx, fmap.amax((2, 3)))
    assert not torch.allclose(avg, mx)


def test_resnet101_other_in_channels_replaces_conv1():
    model = build_backbone(R101, 1, 64).eval()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2048)


# ----------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory):
    """A torchvision resnet101 state dict (with fc, with non-trivial BN statistics) saved as a user would."""
    torch.manual_seed(1)
    tv = torchvision.models.resnet101(weights=None)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_()
    path = tmp_path_factory.mktemp("weights") / "resnet101.pth"
    torch.save(tv.state_dict(), path)
    return path, tv.eval()


def assert_same_backbone(backbone, state):
    own = backbone.state_dict()
    assert set(own) == {k for k in state if not k.startswith("fc.")}
    for k, v in own.items():
        assert torch.equal(v, state[k]), k


def test_weights_path_loads_a_torchvision_state_dict_exactly(tv_weights):
    path, tv = tv_weights
    backbone = build_backbone({**R101, "weights_path": str(path)}, 3, 64).eval()
    assert_same_backbone(backbone, tv.state_dict())
    x = torch.randn(1, 3, 64, 64)
    tv.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), tv(x), rtol=0, atol=0)


@pytest.mark.slow
def test_weights_path_round_trips_our_own_files(tv_weights, tmp_path):
    path, tv = tv_weights
    model = build_classifier({**R101, "weights_path": str(path)}, SOFTMAX, num_classes=5, multilabel=False,
                             in_channels=3, image_size=64)
    # A gsm checkpoints/last.pt ({"model": classifier state dict, ...}) through a file.
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "last.pt")
    loaded = build_backbone({**R101, "pool": "gmp", "weights_path": str(tmp_path / "last.pt")}, 3, 64)
    assert_same_backbone(loaded, tv.state_dict())
    # The other layouts in memory (same loader, no 170 MB file each).
    blobs = {
        "backbone": model.backbone.state_dict(),
        "classifier": model.state_dict(),
        "ddp": {f"module.{k}": v for k, v in model.backbone.state_dict().items()},
        "wrapped": {"state_dict": model.backbone.state_dict()},
    }
    for name, blob in blobs.items():
        for t in loaded.state_dict().values():
            t.zero_()
        loaded.load_weights(blob, name)
        assert_same_backbone(loaded, tv.state_dict())


def test_weights_path_takes_precedence_over_pretrained(tv_weights, monkeypatch):
    path, tv = tv_weights

    def no_download(*a, **k):
        raise AssertionError("weights_path must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    backbone = build_backbone({**R101, "pretrained": True, "weights_path": str(path)}, 3, 64)
    assert_same_backbone(backbone, tv.state_dict())


def test_rgb_weights_adapt_to_one_channel(tv_weights):
    path, tv = tv_weights
    backbone = build_backbone({**R101, "weights_path": str(path)}, 1, 64)
    torch.testing.assert_close(backbone.conv1.weight, tv.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(backbone.layer4[2].conv3.weight, tv.layer4[2].conv3.weight, rtol=0, atol=0)


def test_missing_weights_file_names_the_key_and_path(tmp_path):
    missing = tmp_path / "nope" / "resnet101.pth"
    with pytest.raises(ConfigError, match=r"^model\.weights_path") as err:
        build_backbone({**R101, "weights_path": str(missing)}, 3, 64)
    assert str(missing) in str(err.value)


@pytest.mark.slow
def test_wrong_weights_files_name_the_key_and_path(tv_weights, tmp_path):
    state = torch.load(tv_weights[0], weights_only=True)
    bad = {
        "vgg.pt": build_backbone({"name": "vgg16"}, 3, 32).state_dict(),            # other architecture
        "resnet50.pt": torchvision.models.resnet50(weights=None).state_dict(),      # keys missing
        "shape.pt": {**state, "conv1.weight": torch.zeros(64, 3, 3, 3)},            # a wrong shape
        "list.pt": [1, 2, 3],                                                       # not a state dict
    }
    for name, blob in bad.items():
        torch.save(blob, tmp_path / name)
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    for name in [*bad, "garbage.pt"]:
        with pytest.raises(ConfigError, match=r"^model\.weights_path") as err:
            build_backbone({**R101, "weights_path": str(tmp_path / name)}, 3, 64)
        assert str(tmp_path / name) in str(err.value), name


def test_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"^model\.pretrained") as err:
        build_backbone({**R101, "pretrained": True}, 3, 224)
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth") in msg
    assert WEIGHTS.url in msg and "model.weights_path" in msg


def test_pretrained_reads_the_hub_cache_without_network(tv_weights, tmp_path, monkeypatch):
    """Where the docs tell an offline user to put the file is where torch.hub really looks."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / Path(WEIGHTS.url).name).symlink_to(tv_weights[0])

    def no_network(*a, **k):
        raise AssertionError("a cached file must not be downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    backbone = build_backbone({**R101, "pretrained": True}, 3, 224)
    assert_same_backbone(backbone, tv_weights[1].state_dict())


# ----------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(("cfg", "key"), [
    ({"name": "wrn", "depth": 41}, "model.depth"),
    ({"name": "wrn", "depth": 4}, "model.depth"),
    ({"name": "wrn", "width": 0}, "model.width"),
    ({"name": "wrn", "dropout": 1.0}, "model.dropout"),
    ({"name": "densenet", "depth": 101}, "model.depth"),
    ({"name": "densenet", "depth": 43, "bc": True}, "model.depth"),   # 3n + 4 but not 6n + 4
    ({"name": "densenet", "growth": 0}, "model.growth"),
    ({"name": "resnet101", "pretrained": False, "pool": "avg"}, "model.pool"),
    ({"name": "vgg16", "depth": 19}, "model.depth"),                  # vgg16 has no settings
])
def test_bad_model_config_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
        meta_classifier(cfg, 10)


# ----------------------------------------------------------------------------- Hydra configs


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("name", ["vgg16", "wrn", "densenet", "resnet101"])
def test_model_config_lists_every_constructor_key(name):
    cfg = yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text())
    target, keys = MODELS[name]
    assert cfg["name"] == name and set(cfg) - {"name"} == set(keys)
    module, cls = target.split(":")
    params = inspect.signature(getattr(__import__(module, fromlist=[cls]), cls)).parameters
    assert set(keys) <= set(params)
    for k in keys:  # the yaml default is the constructor default (resnet101 is pretrained by default)
        expected = True if (name, k) == ("resnet101", "pretrained") else params[k].default
        assert cfg[k] == expected, k


@pytest.mark.parametrize(("dataset", "model", "defaults"), [
    ("cifar10", "vgg16", {}),
    ("cifar100", "wrn", {"depth": 40, "width": 14}),
    ("cifar10", "densenet", {"depth": 100, "growth": 24, "bc": False}),
    ("tiny_imagenet", "resnet101", {"pool": "gmp", "pretrained": True}),  # the release's SpatialMaxPooling(7)
    ("coco", "resnet101", {"pool": "gmp", "pretrained": True}),
    ("nuswide", "resnet101", {"pool": "gmp", "pretrained": True}),
])
def test_paper_recipes_compose_and_build(dataset, model, defaults):
    # The dataset configs are added separately; select the recipe directly so this holds either way.
    cfg = _compose("dataset=digits", f"model={model}", f"dataset_model={dataset}_{model}")
    for k, v in defaults.items():
        assert cfg.model[k] == v, k
    model_cfg = {**cfg.model, "pretrained": False} if model == "resnet101" else dict(cfg.model)
    with torch.device("meta"):
        build_backbone(model_cfg, 3, 32)


@pytest.mark.skipif(not (CONFIGS / "dataset" / "coco.yaml").exists(), reason="configs/dataset/coco.yaml not added yet")
def test_coco_resnet101_resolves_the_paper_recipe():
    cfg = _compose("dataset=coco", "model=resnet101")
    assert cfg.model.pool == "gmp" and cfg.model.pretrained is True and cfg.dataset.image_size == 448


@pytest.mark.parametrize(("cfg", "key"), [
    ({"name": "wrn", "depth": "forty"}, "model.depth"),
    ({"name": "wrn", "width": 2.5}, "model.width"),          # int(2.5) would silently give 2
    ({"name": "wrn", "dropout": "none"}, "model.dropout"),
    ({"name": "wrn", "dropout": float("nan")}, "model.dropout"),
    ({"name": "densenet", "bc": "no"}, "model.bc"),          # bool("no") would be True
    ({"name": "densenet", "growth": True}, "model.growth"),
    ({"name": "convnet", "width": 0}, "model.width"),
    ({"name": "convnet", "width": "wide"}, "model.width"),
    ({"name": "resnet101", "pretrained": "yes"}, "model.pretrained"),
    ({"name": "resnet101", "pretrained": False, "weights_path": 3}, "model.weights_path"),
    ({"name": "mlp"}, "model.name"),
])
def test_model_settings_are_type_checked_before_building(cfg, key):
    from gsm.models import check_model_config

    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
        check_model_config(cfg)
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
        meta_classifier(cfg, 10)


def test_check_model_config_returns_the_clean_settings():
    from gsm.models import check_model_config
    from gsm.models.densenet import DenseNet

    builder, kwargs = check_model_config({"name": "densenet", "depth": "40", "growth": 12, "bc": False})
    assert builder is DenseNet and kwargs == {"depth": 40, "growth": 12, "bc": False, "dropout": 0.0, "shared_concat": False}
    _, kwargs = check_model_config({**R101, "weights_path": ""})
    assert kwargs["weights_path"] is None  # an empty path is no path
