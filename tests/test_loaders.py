"""JPEG loading: worker count (trainer.num_workers=auto), the fast decode path and its equivalence to PIL."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from gsm.data import load_splits
from gsm.data import loaders
from gsm.data.files import ImageFiles, load_rgb
from gsm.data.fixtures import make_coco
from gsm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ScaleNormalize, eval_transform, multilabel_train
from gsm.errors import ConfigError, DataError

# torchvision >= 0.29 deprecates its codecs (gsm.data.files silences this outside pytest's own filters)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def pil_rgb(path) -> torch.Tensor:
    """The reference decode: PIL, full size, converted to RGB."""
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def textured(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * rng.uniform(0.1, 0.5) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                     for _ in range(3)], -1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    d = tmp_path_factory.mktemp("jpegs")
    pixels = textured(160, 120)
    Image.fromarray(pixels).save(d / "rgb.jpg", "JPEG", quality=90)
    Image.fromarray(pixels[..., 0]).save(d / "gray.jpg", "JPEG", quality=90)
    Image.fromarray(pixels).convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=90)
    Image.fromarray(pixels).save(d / "rgb.png")
    Image.fromarray(pixels).convert("P").save(d / "palette.png")
    return d


# --------------------------------------------------------------------------- worker count


@pytest.mark.parametrize("cores, jobs, expected", [(16, 1, 15), (16, 4, 3), (16, 8, 1), (16, 16, 0), (16, 32, 0),
                                                   (2, 1, 1), (1, 1, 0), (14, 3, 3)])
def test_auto_num_workers_divides_the_usable_cores_among_local_jobs(monkeypatch, cores, jobs, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(100, 100 + cores)), raising=False)
    assert loaders.available_cpus() == cores
    assert loaders.auto_num_workers(jobs) == expected


def test_auto_num_workers_uses_the_affinity_mask_not_the_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert loaders.auto_num_workers() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_auto_num_workers_rejects_a_bad_job_count(bad):
    with pytest.raises(ConfigError, match="local_jobs"):
        loaders.auto_num_workers(bad)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["rgb.jpg", "gray.jpg", "cmyk.jpg", "rgb.png", "palette.png"])
def test_full_size_decode_equals_pil(jpegs, name):
    fast = load_rgb(jpegs / name)
    assert fast.dtype == torch.uint8 and fast.shape == (3, 120, 160)
    assert torch.equal(fast, pil_rgb(jpegs / name))


def test_no_reduction_when_the_image_is_less_than_twice_the_target(jpegs):
    # 160x120 with a 64-pixel target: 120 < 2*64, so the full-size decode (exactly PIL's) is used
    assert torch.equal(load_rgb(jpegs / "rgb.jpg", min_size=64), pil_rgb(jpegs / "rgb.jpg"))


@pytest.mark.parametrize("target, scale", [(60, 2), (30, 4), (15, 8), (10, 8)])
def test_reduced_decode_keeps_the_target_size_and_the_picture(jpegs, target, scale):
    small = load_rgb(jpegs / "rgb.jpg", min_size=target)
    assert small.shape == (3, 120 // scale, 160 // scale)  # DCT scaling by 1/2, 1/4 or 1/8, sides >= target
    assert min(small.shape[1:]) >= target
    # what the pipeline makes of it next (resize to target) matches the full-size decode up to decoder differences
    ref = v2.functional.resize(pil_rgb(jpegs / "rgb.jpg"), [target, target], antialias=True)
    got = v2.functional.resize(small, [target, target], antialias=True)
    assert (got.float() - ref.float()).abs().mean() < 6.0  # of 255; noisy texture, the hardest case


def test_truncated_and_non_image_files_name_the_file(jpegs, tmp_path):
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes((jpegs / "rgb.jpg").read_bytes()[:300])
    for path in (bad, tmp_path / "missing.jpg"):
        with pytest.raises(DataError, match=str(path.name)):
            load_rgb(path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"GIF89a truncated")
    with pytest.raises(DataError, match="junk.jpg"):
        load_rgb(junk, min_size=8)


def test_scale_normalize_equals_todtype_then_normalize():
    x = torch.randint(0, 256, (3, 17, 23), dtype=torch.uint8)
    ref = v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))(v2.ToDtype(torch.float32, scale=True)(x))
    got = ScaleNormalize(IMAGENET_MEAN, IMAGENET_STD)(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)
    with pytest.raises(TypeError, match="uint8"):
        ScaleNormalize(IMAGENET_MEAN, IMAGENET_STD)(x.float())


def test_coco_pipeline_items_match_the_full_size_pil_path(tmp_path):
    """Through the dataset as the trainer builds it (fixture COCO): every test item matches the reference
    (full PIL decode + the same transforms with the unfused normalisation) up to the reduced decode."""
    make_coco(tmp_path, train_images=4, val_images=6)
    size = 16  # fixture images are 40-80 x 32-64: the test split decodes at 1/2 scale
    splits = load_splits({"name": "coco", "root": str(tmp_path), "image_size": size, "on_missing": "error"})
    test = splits.test.dataset
    assert test.min_size == size and splits.train.dataset.min_size == round(size * 8 / 7)
    ref_tf = v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    for i in range(len(test)):
        got, target = test[i]
        ref = ref_tf(pil_rgb(test.paths[i]))
        assert got.shape == ref.shape == (3, size, size)
        assert (got - ref).abs().mean() * 255 * 0.226 < 3.0  # mean |Δ| in pixel levels (std ≈ 0.226)
        assert torch.equal(target, splits.test.targets[i])


def test_random_resized_crop_decodes_full_size(tmp_path):
    make_coco(tmp_path, train_images=3, val_images=3)
    splits = load_splits({"name": "coco", "root": str(tmp_path), "image_size": 16, "train_crop": "random_resized"})
    assert splits.train.dataset.min_size is None  # a crop may take 8 % of the image: never decode it smaller


def test_image_files_without_min_size_equal_the_reference_exactly(jpegs):
    files = ImageFiles([jpegs / "rgb.jpg", jpegs / "gray.jpg"], torch.tensor([0, 1]), eval_transform(120))
    ref_tf = v2.Compose([v2.Resize((120, 120), antialias=True), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    for i, name in enumerate(("rgb.jpg", "gray.jpg")):
        torch.testing.assert_close(files[i][0], ref_tf(pil_rgb(jpegs / name)), rtol=0, atol=1e-5)


def test_multilabel_train_pipeline_runs_on_the_fast_decode(jpegs):
    torch.manual_seed(0)
    out = multilabel_train(32)(load_rgb(jpegs / "rgb.jpg", min_size=37))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
