"""JPEG loading: worker count (trainer.num_workers=auto), the fast decode path and its equivalence to PIL;
the authors' release augmentation (dataset.train_crop/color_jitter/lighting/interpolation/pad_mode) against
NumPy transcriptions of its Torch7 code."""

from __future__ import annotations

import math
import os
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from gsm.data import load_splits
from gsm.data import loaders
from gsm.data import transforms as T
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


# --------------------------------------------------------------------------- the release's augmentation
# Independent NumPy (float64) transcriptions of Torch7's transforms.lua as the authors' release ships it
# (luoyan407/gsoftmax datasets/transforms.lua; line numbers in docs/datasets.md), driven with the same draws
# as gsm's code through its seams (functions that take the draws as arguments).

T7_EIGVAL = np.array([0.2175, 0.0188, 0.0045])  # datasets/coco.lua:74
T7_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def t7_round(x: float) -> int:
    """C round (torch.round on a Lua number): halves away from zero."""
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def t7_grayscale(img: np.ndarray) -> np.ndarray:  # transforms.lua:217-224
    g = np.zeros_like(img[0])
    g += 0.299 * img[0]
    g += 0.587 * img[1]
    g += 0.114 * img[2]
    return np.stack([g, g, g])


def t7_blend(img1: np.ndarray, img2: np.ndarray, alpha: float) -> np.ndarray:  # transforms.lua:213-215
    return img1 * alpha + (1 - alpha) * img2


def t7_color_jitter(img: np.ndarray, order: list[int], alphas: list[float]) -> np.ndarray:
    """RandomOrder over {Brightness, Contrast, Saturation} (transforms.lua:226-298); order is 0-based here."""
    def brightness(x, a):
        return t7_blend(x, np.zeros_like(x), a)

    def contrast(x, a):
        gs = t7_grayscale(x)
        gs[:] = gs[0].mean()
        return t7_blend(x, gs, a)

    def saturation(x, a):
        return t7_blend(x, t7_grayscale(x), a)

    ts = [brightness, contrast, saturation]  # inserted in this order when all three are non-zero
    for i in order:
        img = ts[i](img, alphas[i])
    return img


def t7_lighting(img: np.ndarray, alpha: np.ndarray) -> np.ndarray:  # transforms.lua:192-211
    rgb = [sum(T7_EIGVEC[i, j] * alpha[j] * T7_EIGVAL[j] for j in range(3)) for i in range(3)]
    out = img.copy()
    for i in range(3):
        out[i] += rgb[i]
    return out


def t7_random_sized_crop_box(height: int, width: int, uniform, randint):
    """transforms.lua:142-169 up to the crop: (y1, x1, h, w), or None where Lua falls back."""
    attempt = 0
    while True:
        area = height * width
        target_area = uniform(0.08, 1.0) * area
        aspect = uniform(3 / 4, 4 / 3)
        w = t7_round(math.sqrt(target_area * aspect))
        h = t7_round(math.sqrt(target_area / aspect))
        if uniform(0.0, 1.0) < 0.5:
            w, h = h, w
        if h <= height and w <= width:
            y1 = randint(0, height - h)
            x1 = randint(0, width - w)
            return y1, x1, h, w
        attempt += 1
        if attempt >= 10:
            return None


def stream(seed: int):
    """uniform(a, b) and inclusive randint(lo, hi) from one NumPy generator: the same draws for both sides."""
    rng = np.random.default_rng(seed)
    return (lambda a, b: a + (b - a) * rng.random()), (lambda lo, hi: int(rng.integers(lo, hi + 1)))


def unit_image(seed: int, h: int = 9, w: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).random((3, h, w))


@pytest.mark.parametrize("seed", range(6))
def test_color_jitter_equals_the_torch7_transcription(seed):
    rng = np.random.default_rng(100 + seed)
    img = unit_image(seed)
    order = [int(i) for i in rng.permutation(3)]
    alphas = [float(a) for a in 1 + rng.uniform(-0.9, 0.9, 3)]
    got = T.color_jitter(torch.from_numpy(img).float(), order, alphas)
    np.testing.assert_allclose(got.double().numpy(), t7_color_jitter(img, order, alphas), atol=2e-6)


def test_color_jitter_order_is_immaterial_and_nothing_is_clamped():
    """The three operations are linear maps that commute (the gray weights sum to 1, so gray(gray(x)) = gray(x)
    and gray(mean) = mean): Torch7's random order changes only float rounding."""
    img = unit_image(7)
    a = T.color_jitter(torch.from_numpy(img).double(), [0, 1, 2], [1.8, 0.3, 1.6])
    b = T.color_jitter(torch.from_numpy(img).double(), [2, 1, 0], [1.8, 0.3, 1.6])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    bright = T.color_jitter(torch.from_numpy(img).float(), [0, 1, 2], [1.4, 1.0, 1.0])
    assert bright.max() > 1.0  # Torch7 does not clamp (torchvision's ColorJitter would)
    np.testing.assert_allclose(bright.double().numpy(), img * 1.4, atol=1e-6)


def test_color_jitter_draws(monkeypatch):
    """Per image: a uniformly random order of the three operations, each alpha = 1 + U(-v, v)."""
    seen = []
    monkeypatch.setattr(T, "color_jitter", lambda img, order, alphas: seen.append((tuple(order), alphas)) or img)
    jitter = T.ColorJitter(0.4)
    torch.manual_seed(0)
    for _ in range(3000):
        jitter(torch.zeros(3, 2, 2))
    orders = [o for o, _ in seen]
    counts = [orders.count(p) for p in sorted(set(orders))]
    assert len(counts) == 6 and all(sorted(o) == [0, 1, 2] for o in orders)
    assert stats.chisquare(counts).pvalue > 1e-3
    alphas = np.array([a for _, a in seen]).ravel()
    assert alphas.min() >= 0.6 and alphas.max() <= 1.4
    assert stats.kstest(alphas, stats.uniform(loc=0.6, scale=0.8).cdf).pvalue > 1e-3
    torch.manual_seed(0)
    for _ in range(3):
        jitter(torch.zeros(3, 2, 2))
    assert seen[3000:] == seen[:3]  # torch's generator (seeded per DataLoader worker) fixes the draws


@pytest.mark.parametrize("seed", range(4))
def test_lighting_equals_the_torch7_transcription(seed):
    img = unit_image(seed)
    alpha = np.random.default_rng(seed).normal(0, 0.1, 3)
    got = T.lighting(torch.from_numpy(img).float(), alpha.tolist())
    np.testing.assert_allclose(got.double().numpy(), t7_lighting(img, alpha), atol=1e-6)
    # by hand: alpha = e_1 shifts every pixel by eigval[0] * (first eigenvector)
    shift = T.lighting(torch.zeros(3, 1, 1, dtype=torch.float64), [1.0, 0.0, 0.0]).view(3).numpy()
    np.testing.assert_allclose(shift, 0.2175 * np.array([-0.5675, -0.5808, -0.5836]), rtol=1e-12)


def test_lighting_draws(monkeypatch):
    seen = []
    monkeypatch.setattr(T, "lighting", lambda img, alpha: seen.append(alpha) or img)
    light = T.Lighting(0.1)
    torch.manual_seed(1)
    for _ in range(3000):
        light(torch.zeros(3, 1, 1))
    alphas = np.array(seen)
    assert alphas.shape == (3000, 3)
    assert stats.kstest(alphas.ravel(), stats.norm(scale=0.1).cdf).pvalue > 1e-3


def test_round_is_c_round_not_bankers():
    assert [T.round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, 7.0)] == [1, 2, 3, 2, 7] != [round(x) for x in (0.5, 1.5, 2.5)]
    # a tie inside the crop: area 100 x 0.0625, aspect 1 -> sides sqrt(6.25) = 2.5 -> 3 (Python's round gives 2)
    draws = iter([0.0625, 1.0, 0.9])
    assert T.inception_box(10, 10, lambda a, b: next(draws), lambda lo, hi: lo) == (0, 0, 3, 3)


@pytest.mark.parametrize("shape", [(64, 64), (48, 120), (300, 40), (7, 9), (5, 300)])
def test_inception_box_equals_the_torch7_transcription(shape):
    fallbacks = 0
    for seed in range(300):
        ours = T.inception_box(*shape, *stream(seed))
        lua = t7_random_sized_crop_box(*shape, *stream(seed))
        assert ours == lua, (shape, seed)
        fallbacks += ours is None
    if shape == (5, 300):
        assert fallbacks == 300  # every attempt is taller than 5 rows: always the Scale + CenterCrop fallback
    elif shape == (64, 64):
        assert fallbacks == 0


def test_inception_draws():
    """The torch-backed draws: U(a, b) within [a, b) and uniform; integers uniform over lo..hi inclusive."""
    torch.manual_seed(2)
    u = np.array([T._uniform(0.08, 1.0) for _ in range(4000)])
    assert u.min() >= 0.08 and u.max() < 1.0
    assert stats.kstest(u, stats.uniform(loc=0.08, scale=0.92).cdf).pvalue > 1e-3
    ints = [T._randint(0, 4) for _ in range(5000)]
    counts = [ints.count(k) for k in range(5)]
    assert sorted(set(ints)) == [0, 1, 2, 3, 4] and stats.chisquare(counts).pvalue > 1e-3
    boxes = [T.inception_box(64, 64, T._uniform, T._randint) for _ in range(2000)]
    area = np.array([h * w / 4096 for _, _, h, w in boxes])
    assert area.min() >= 0.07 and area.max() <= 1.0
    wide, tall = sum(w > h for _, _, h, w in boxes), sum(h > w for _, _, h, w in boxes)
    assert abs(wide - tall) < 0.1 * (wide + tall)  # the 50 % swap


def test_inception_crop_resizes_the_box_and_falls_back_to_scale_center_crop():
    img = torch.randint(0, 256, (3, 48, 120), dtype=torch.uint8)
    crop = T.InceptionCrop(32, "bicubic")
    for seed in range(5):
        torch.manual_seed(seed)
        top, left, h, w = T.inception_box(48, 120, T._uniform, T._randint)
        torch.manual_seed(seed)
        got = crop(img)
        ref = TF.resize(img[:, top:top + h, left:left + w], [32, 32], interpolation=TF.InterpolationMode.BICUBIC,
                        antialias=True)
        assert torch.equal(got, ref)
    # fallback (transforms.lua:168-169): Scale (shorter side -> 32, other floor(long/short*32)), CenterCrop ceil
    thin = torch.randint(0, 256, (3, 5, 304), dtype=torch.uint8)
    long_side = math.floor(304 / 5 * 32)  # 1945.6 -> 1945 (image.scale truncates)
    left = math.ceil((long_side - 32) / 2)  # 956.5 -> 957
    ref = TF.resize(thin, [32, long_side], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)[:, :, left:left + 32]
    torch.manual_seed(0)
    assert torch.equal(crop(thin), ref)
    # Scale leaves an image whose shorter side already is the size alone; the centre crop offset rounds up
    odd = torch.randint(0, 256, (3, 32, 37), dtype=torch.uint8)
    assert torch.equal(T.scale_center_crop(odd, 32), odd[:, :, 3:35])


def _recording(monkeypatch):
    """Wrap the seams so the draws of a pipeline run are recorded (and still applied)."""
    log: dict[str, list] = {"box": [], "jitter": [], "light": []}
    box, jit, light = T.inception_box, T.color_jitter, T.lighting
    monkeypatch.setattr(T, "inception_box", lambda *a, **k: log["box"].append(box(*a, **k)) or log["box"][-1])
    monkeypatch.setattr(T, "color_jitter", lambda img, o, a: log["jitter"].append((list(o), list(a))) or jit(img, o, a))
    monkeypatch.setattr(T, "lighting", lambda img, a: log["light"].append(list(a)) or light(img, a))
    return log


def _t7_finish(img01: np.ndarray, jitter, light) -> np.ndarray:
    """ColorJitter -> Lighting -> ColorNormalize of the release (coco.lua:87-93) on a [0, 1] image."""
    x = t7_lighting(t7_color_jitter(img01, *jitter), np.array(light))
    return (x - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]


def test_release_multilabel_train_pipeline(monkeypatch, jpegs):
    """ScaleWH(448-like) -> ColorJitter(.4) -> Lighting(.1) -> ColorNormalize, as coco.lua:84-95 writes it."""
    log = _recording(monkeypatch)
    img = load_rgb(jpegs / "rgb.jpg")
    tf = multilabel_train(40, "resize", flip=False, color_jitter=0.4, lighting=0.1, interpolation="bicubic")
    torch.manual_seed(3)
    got = tf(img)
    resized = TF.resize(img, [40, 40], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    ref = _t7_finish(resized.double().numpy() / 255, log["jitter"][0], log["light"][0])
    assert got.shape == (3, 40, 40) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), ref, atol=2e-5)
    assert len(log["jitter"]) == len(log["light"]) == 1


def test_release_tiny_imagenet_train_and_test_pipelines(monkeypatch):
    log = _recording(monkeypatch)
    img = torch.from_numpy(textured(64, 64, seed=5)).permute(2, 0, 1).contiguous()
    tf = T.inception_train(80, flip=False, color_jitter=0.4, lighting=0.1, interpolation="bicubic")
    torch.manual_seed(4)
    got = tf(img)
    top, left, h, w = log["box"][0]
    crop = TF.resize(img[:, top:top + h, left:left + w], [80, 80], interpolation=TF.InterpolationMode.BICUBIC,
                     antialias=True)
    ref = _t7_finish(crop.double().numpy() / 255, log["jitter"][0], log["light"][0])
    np.testing.assert_allclose(got.double().numpy(), ref, atol=2e-5)
    # test: Torch7 Scale(80) + CenterCrop(80) (tinyimagenet.lua:99-102) is gsm's square resize on 64x64 images
    norm = ScaleNormalize(IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(eval_transform(80, interpolation="bicubic")(img), norm(T.scale_center_crop(img, 80, "bicubic")))


def test_default_pipelines_are_todays():
    """Every new key at its default builds exactly the pipeline gsm had before the keys (same draws, same tensors)."""
    img = torch.from_numpy(textured(131, 97, seed=6)).permute(2, 0, 1).contiguous()
    norm = ScaleNormalize(IMAGENET_MEAN, IMAGENET_STD)
    today = {
        "multiscale": v2.Compose([v2.Resize((55, 55), antialias=True), T.MultiScaleCrop(48),
                                  v2.RandomHorizontalFlip(), norm]),
        "random_resized": v2.Compose([v2.RandomResizedCrop(48, antialias=True), v2.RandomHorizontalFlip(), norm]),
        "pad": v2.Compose([v2.Resize((48, 48), antialias=True), v2.RandomCrop(48, padding=6),
                           v2.RandomHorizontalFlip(), norm]),
        "eval": v2.Compose([v2.Resize((48, 48), antialias=True), norm]),
    }
    ours = {"multiscale": multilabel_train(48), "random_resized": multilabel_train(48, "random_resized"),
            "pad": T.pad_crop_train(48, 6), "eval": eval_transform(48)}
    for name, ref in today.items():
        for seed in range(8):
            torch.manual_seed(seed)
            expected = ref(img)
            torch.manual_seed(seed)
            assert torch.equal(ours[name](img), expected), (name, seed)


def _np_crop_flip(images: np.ndarray, padding: int, mode: str, dy, dx, flips) -> np.ndarray:
    kw = {"mode": "reflect"} if mode == "reflect" else {"mode": "constant", "constant_values": 0}
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)), **kw)
    h, w = images.shape[-2:]
    out = np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(images))])
    return np.where(np.asarray(flips)[:, None, None, None], out[..., ::-1], out)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_device_crop_padding_equals_numpy_pad(mode):
    """The batched crop against numpy.pad (mode='reflect' / zeros) with the generator's offsets and flips."""
    images = torch.randint(0, 256, (32, 3, 10, 12), dtype=torch.uint8)
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        got = loaders.random_crop_flip(images, 4, True, torch.Generator().manual_seed(seed), mode)
        dy = torch.randint(0, 9, (32,), generator=gen)
        dx = torch.randint(0, 9, (32,), generator=gen)
        flips = torch.rand(32, generator=gen) < 0.5
        ref = _np_crop_flip(images.numpy(), 4, mode, dy.numpy(), dx.numpy(), flips.numpy())
        assert np.array_equal(got.numpy(), ref)
    reflect = loaders.random_crop_flip(images, 4, False, torch.Generator().manual_seed(0), "reflect")
    assert reflect.dtype == torch.uint8 and not (reflect == 0).all(dim=(1, 2)).any()  # no black borders
    with pytest.raises(ValueError, match="reflect"):
        loaders.random_crop_flip(images, 10, False, torch.Generator(), "reflect")
