"""Where a training step's time goes: a ``torch.profiler`` summary of a recipe's training steps by kind of work.

:func:`profile_recipe` builds a recipe's model, head, optimiser, AMP dtype and memory format as the trainer builds
them (:func:`gsm.train.build.build_model` and :func:`~gsm.train.build.build_run`, as :func:`gsm.estimate.probe`
does) on synthetic batches of the recipe's shapes (:func:`gsm.estimate.make_loader`), runs warm-up steps of the
trainer's own :func:`gsm.train.loop.train_one_epoch`, times ``steps`` more without the profiler (the wall time of
a step), then profiles as many again. Each unit of measured time is put in one category of :data:`CATEGORIES`:

* on CUDA, each kernel, memory copy and memset on the device (its duration), with the CPU operator that launched
  it; the *launch gaps* are the share of the unprofiled wall time of the steps in which no device work was
  running: ``1 - device time / wall time`` (the host launching kernels, waiting, synchronising);
* on a CPU, each operator's self time (its time minus that of the operators it called).

How a unit is classified (:func:`classify`): its *chain* is the names from the outermost enclosing operator or
``record_function`` scope down to itself (on CUDA the kernel's own name is the innermost link). The chain is read
from the outside in; the first name that a rule of :data:`CATEGORY_RULES` matches decides, rules tried in table
order; a chain that no rule matches is ``other``. The autograd engine's scopes
(``autograd::engine::evaluate_function: <node>``, :data:`ENGINE_SCOPE`) are skipped: the backward node inside
decides. Reading from the outside in classifies what the training step asked for rather than how a library
carried it out: a cuDNN convolution's implicit-GEMM kernel is ``conv`` because ``aten::conv2d`` launched it;
everything inside ``Optimizer.step#SGD.step`` (the ``record_function`` scope that ``torch.optim`` puts around
every optimiser's ``step``) is ``optimiser``, whatever its kernels are; the batches' creation and on-device
augmentation run in the ``gsm.profile: input batch`` scope this module opens around the loader
(:class:`ScopedLoader`). Names that match no rule (``torch::autograd::AccumulateGrad``, ``CompiledFunction``)
pass the decision inwards, so the kernels of a compiled graph are classified by their own names
(``triton_poi_*`` pointwise, ``triton_red_*`` / ``triton_per_*`` reductions, GEMM kernels).

The shares say where the device (or CPU) is busy; they do not say what would be saved by removing a category
(kernels of one step can overlap, and on CUDA a shorter kernel may only lengthen a launch gap).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from gsm.text import table_lines

INPUT_SCOPE = "gsm.profile: input batch"  # record_function around each batch the loader yields

CATEGORIES: tuple[str, ...] = ("conv", "matmul", "norm", "elementwise", "reduce/loss", "copy/memory", "optimiser",
                               "input", "other")


@dataclass(frozen=True)
class Rule:
    """Names that put a unit of time in ``category``: ``ops`` are ATen operators (``aten::<op>``, also in place,
    ``aten::<op>_``), ``nodes`` autograd nodes (``<Node>Backward<N>``), ``patterns`` regular expressions searched
    in every name (``record_function`` scopes, device kernel names). All case-insensitive."""

    category: str
    ops: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def regex(self) -> re.Pattern[str]:
        parts = list(self.patterns)
        if self.ops:
            parts.append(r"^aten::(?:" + "|".join(self.ops) + r")_?$")
        if self.nodes:
            parts.append(r"^(?:" + "|".join(self.nodes) + r")Backward\d*$")
        return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)


# The classification table. A chain is read from the outside in; the first name that any rule matches decides, and
# the first rule (in this order) that matches that name gives the category.
CATEGORY_RULES: tuple[Rule, ...] = (
    Rule("optimiser", patterns=(r"^Optimizer\.(?:step|zero_grad)#",)),
    Rule("input", patterns=(r"^" + re.escape(INPUT_SCOPE) + r"$",)),
    Rule("conv", ops=("conv1d", "conv2d", "conv3d", "convolution", "_convolution", "convolution_backward",
                      "cudnn_convolution", "cudnn_convolution_backward\\w*", "mkldnn_convolution\\w*",
                      "_slow_conv2d_\\w+", "slow_conv\\w*", "thnn_conv\\w*", "conv_depthwise\\w*",
                      "_conv_depthwise\\w*", "miopen_convolution\\w*", "cudnn_convolution_relu\\w*"),
         nodes=("Convolution", "CudnnConvolution", "MkldnnConvolution", "SlowConv2D", "ConvDepthwise2D"),
         patterns=(r"implicit_?gemm", r"implicit_convolve", r"convolve", r"fprop", r"dgrad", r"wgrad", r"winograd",
                   r"conv2d", r"convolution")),
    Rule("matmul", ops=("linear", "addmm", "mm", "bmm", "baddbmm", "addbmm", "matmul", "addmv", "mv", "dot",
                        "einsum", "_addmm_activation", "linear_backward"),
         nodes=("Addmm", "Mm", "Bmm", "Baddbmm", "Mv", "Dot", "Linear"),
         patterns=(r"gemm", r"gemv", r"cublas", r"cutlass", r"xmma", r"triton_tem_fused_\w*mm")),
    Rule("norm", ops=("batch_norm", "_batch_norm_impl_index\\w*", "native_batch_norm\\w*", "cudnn_batch_norm\\w*",
                      "miopen_batch_norm\\w*", "_native_batch_norm_legit\\w*", "batch_norm_\\w+", "layer_norm",
                      "native_layer_norm\\w*", "group_norm", "native_group_norm\\w*", "instance_norm"),
         nodes=("NativeBatchNorm", "CudnnBatchNorm", "MiopenBatchNorm", "NativeLayerNorm", "NativeGroupNorm"),
         patterns=(r"batch_?norm", r"layer_?norm", r"group_?norm", r"cudnn::bn_", r"\bbn_fw", r"\bbn_bw")),
    Rule("reduce/loss", ops=("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "norm",
                             "linalg_vector_norm", "var", "std", "var_mean", "std_mean", "prod", "logsumexp",
                             "softmax", "_softmax", "log_softmax", "_log_softmax", "_softmax_backward_data",
                             "_log_softmax_backward_data", "cross_entropy_loss", "nll_loss\\w*",
                             "binary_cross_entropy\\w*", "mse_loss\\w*", "topk", "sort", "cumsum",
                             "\\w*pool\\dd\\w*", "sum_to_size"),
         nodes=("Sum", "Mean", "Amax", "Amin", "Max", "Min", "Norm", "LinalgVectorNorm", "Var", "Std", "Prod",
                "Logsumexp", "Softmax", "LogSoftmax", "NllLoss\\w*", "BinaryCrossEntropy\\w*", "MseLoss",
                "\\w*Pool\\dD\\w*"),
         patterns=(r"reduce_kernel", r"softmax", r"nll_loss", r"cross_entropy", r"triton_(?:red|per)_", r"pool")),
    Rule("copy/memory", ops=("copy", "_to_copy", "to", "contiguous", "clone", "cat", "_cat", "stack", "index_select",
                             "index", "index_put", "_index_put_impl", "gather", "scatter", "constant_pad_nd", "pad",
                             "reflection_pad\\dd\\w*", "replication_pad\\dd\\w*", "flip", "roll", "repeat",
                             "narrow_copy", "empty", "empty_like", "empty_strided", "new_empty\\w*", "new_zeros",
                             "zero", "zeros", "zeros_like", "fill", "ones", "ones_like", "full", "full_like",
                             "resize", "as_strided_scatter", "slice_scatter", "select_scatter", "set"),
         nodes=("Cat", "Clone", "ToCopy", "Copy\\w*", "Stack", "Index", "IndexSelect", "IndexPut", "Gather",
                "ConstantPadNd", "Flip", "Repeat"),
         # gsm.models.densenet.BlockInput (model.shared_concat): the dense block's concatenation into shared storage
         patterns=(r"^BlockInput(?:Backward)?$", r"memcpy", r"memset", r"CatArrayBatchedCopy", r"nchwToNhwc",
                   r"nhwcToNchw", r"transpose_readWrite", r"copy_kernel", r"direct_copy", r"FillFunctor", r"index_elementwise", r"\bcat_", r"gather",
                   r"scatter", r"flip_kernel")),
    Rule("elementwise", ops=("add", "sub", "mul", "div", "rsub", "neg", "relu", "threshold", "threshold_backward",
                             "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "erf", "erfc", "erfinv", "exp",
                             "exp2", "log", "log1p", "log2", "expm1", "sqrt", "rsqrt", "pow", "abs", "sign", "sgn",
                             "clamp", "clamp_min", "clamp_max", "clip", "maximum", "minimum", "where", "lerp",
                             "addcmul", "addcdiv", "hardtanh", "hardtanh_backward", "gelu", "gelu_backward", "silu",
                             "silu_backward", "elu", "elu_backward", "leaky_relu", "leaky_relu_backward", "dropout",
                             "native_dropout\\w*", "feature_dropout", "masked_fill", "reciprocal", "square", "ge",
                             "gt", "le", "lt", "eq", "ne", "logical_\\w+", "bitwise_\\w+", "floor", "ceil", "round",
                             "trunc", "frac", "fmod", "remainder", "special_\\w+", "_foreach_\\w+", "mish", "softplus",
                             "softplus_backward", "sin", "cos", "nan_to_num", "isfinite", "isnan"),
         nodes=("Add", "Sub", "Mul", "Div", "Rsub", "Neg", "Relu", "Threshold", "Sigmoid", "Tanh", "Erf", "Erfc", "Exp",
                "Log", "Log1P", "Expm1", "Sqrt", "Rsqrt", "Pow", "Abs", "Sign", "Clamp", "ClampMin", "ClampMax",
                "Maximum", "Minimum", "Where", "Lerp", "Addcmul", "Addcdiv", "Hardtanh", "Gelu", "Silu", "Elu",
                "LeakyRelu", "NativeDropout", "MaskedFill", "Reciprocal", "Softplus", "Mish"),
         patterns=(r"elementwise", r"triton_poi_", r"pointwise", r"multi_tensor_apply", r"launch_clamp")),
)

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((rule.category, rule.regex()) for rule in CATEGORY_RULES)


def category_of_name(name: str) -> str | None:
    """The category the first matching rule gives ``name`` alone; None when no rule matches it."""
    for category, regex in _RULES:
        if regex.search(name):
            return category
    return None


# The autograd engine's scope around each backward node never decides: the node inside it does (``ConvolutionBackward0``),
# and what the engine does outside the node, such as adding up the gradients of a tensor used several times, is
# classified by its own operator (``aten::add``).
ENGINE_SCOPE = "autograd::engine::evaluate_function: "


@lru_cache(maxsize=65536)
def _classify(chain: tuple[str, ...]) -> str:
    for name in chain:
        if name.startswith(ENGINE_SCOPE):
            continue
        category = category_of_name(name)
        if category is not None:
            return category
    return "other"


def classify(chain: Sequence[str]) -> str:
    """The category of a unit of time whose names, from the outermost scope to itself, are ``chain`` (see the
    module docstring): the first name, from the outside in, that a rule of :data:`CATEGORY_RULES` matches."""
    return _classify(tuple(chain))


def summarize(items: Iterable[tuple[Sequence[str], float]]) -> dict[str, float]:
    """Time per category (every one of :data:`CATEGORIES`, in that order) of ``(chain, time)`` items."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for chain, seconds in items:
        totals[classify(chain)] += seconds
    return totals


def _chain(event: Any) -> list[str]:
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    return names[::-1]


def _is_device(event: Any) -> bool:
    return event.device_type != DeviceType.CPU


def _duration_us(event: Any) -> float:
    return float(event.time_range.end - event.time_range.start)


def timed_items(events: Iterable[Any], device: str) -> list[tuple[list[str], float]]:
    """``(chain, seconds)`` of the profiled events (``torch.profiler.profile(...).events()``, FunctionEvents).

    ``device="cuda"``: each device event (kernel, memcpy, memset) with the chain of the CPU operator that launched
    it plus its own name; device events that no operator claims (e.g. replays of a captured CUDA graph) with their
    own name only. ``device="cpu"``: each CPU operator's and ``record_function`` scope's self time."""
    events = list(events)
    items: list[tuple[list[str], float]] = []
    if device == "cpu":
        for e in events:
            if not _is_device(e) and not e.is_async and e.name != "[memory]":
                items.append((_chain(e), float(e.self_cpu_time_total) / 1e6))
        return items
    claimed: Counter[tuple[str, float]] = Counter()
    for e in events:
        if _is_device(e) or not getattr(e, "kernels", None):
            continue
        chain = _chain(e)
        for k in e.kernels:
            items.append((chain + [k.name], float(k.duration) / 1e6))
            claimed[(k.name, round(float(k.duration), 3))] += 1
    for e in events:
        if not _is_device(e):
            continue
        key = (e.name, round(_duration_us(e), 3))
        if claimed[key]:
            claimed[key] -= 1
        else:
            items.append(([e.name], _duration_us(e) / 1e6))
    return items


class ScopedLoader:
    """A training loader whose every batch is produced inside the :data:`INPUT_SCOPE` ``record_function``
    (the loader interface of :func:`gsm.train.loop.train_one_epoch`: ``set_epoch``, ``len``, iteration)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        while True:
            with record_function(INPUT_SCOPE):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


@dataclass
class StepProfile:
    """Where the profiled training steps of one recipe spent their time."""

    label: str
    device: str  # "cuda" (device time of kernels, copies, memsets) or "cpu" (operators' self time)
    steps: int
    batch_size: int
    seconds: dict[str, float]  # per category of CATEGORIES, summed over the profiled steps
    wall_seconds: float  # the same number of steps, timed without the profiler

    @property
    def busy_seconds(self) -> float:
        """Summed device time (CUDA) or operator self time (CPU) of the profiled steps."""
        return sum(self.seconds.values())

    def shares(self) -> dict[str, float]:
        """Each category's share of :attr:`busy_seconds` (they sum to 1)."""
        total = self.busy_seconds
        return {k: (v / total if total > 0 else 0.0) for k, v in self.seconds.items()}

    @property
    def launch_gaps(self) -> float | None:
        """CUDA: the share of the steps' wall time with no device work running, ``max(0, 1 - busy / wall)``;
        None on a CPU."""
        if self.device != "cuda" or self.wall_seconds <= 0:
            return None
        return max(0.0, 1.0 - self.busy_seconds / self.wall_seconds)

    def ms_per_step(self, seconds: float) -> float:
        return seconds / self.steps * 1e3

    def describe(self) -> str:
        """One line: the shares of every category, the time per step and (CUDA) the launch gaps."""
        shares = self.shares()
        parts = " · ".join(f"{k} {shares[k]:.0%}" for k in CATEGORIES)
        what = "device" if self.device == "cuda" else "CPU op self"
        text = (f"{parts}; {what} {self.ms_per_step(self.busy_seconds):,.1f} ms/step of "
                f"{self.ms_per_step(self.wall_seconds):,.1f} ms wall (batch {self.batch_size}, {self.steps} "
                f"step{'s' if self.steps != 1 else ''})")
        if self.launch_gaps is not None:
            text += f"; launch gaps {self.launch_gaps:.0%} of wall"
        return text

    def row(self) -> tuple[str, str, str]:
        """A row of scripts/gpu_check.py's summary: (check, value, status)."""
        return (f"{self.label}: where a training step's time goes", self.describe(), "info")


def markdown_table(profiles: Sequence[StepProfile]) -> str:
    """The profiles as a markdown table: one row per recipe, each category's share, the busy time per step (device
    time on CUDA, operators' self time on a CPU), the unprofiled wall time per step and the launch gaps."""
    head = ["recipe", *CATEGORIES, "busy ms/step", "wall ms/step", "launch gaps", "steps"]
    rows = []
    for p in profiles:
        shares = p.shares()
        gaps = "n/a (CPU)" if p.launch_gaps is None else f"{p.launch_gaps:.0%}"
        cells = [f"{p.label} ({p.device})", *(f"{shares[k]:.0%}" for k in CATEGORIES),
                 f"{p.ms_per_step(p.busy_seconds):,.1f}", f"{p.ms_per_step(p.wall_seconds):,.1f}", gaps,
                 f"{p.steps} × batch {p.batch_size}"]
        rows.append(cells)
    return "\n".join(table_lines(head, rows, ["l", *"r" * (len(head) - 1)]))


def profile_callable(fn: Callable[[], Any], device: torch.device) -> list[tuple[list[str], float]]:
    """Run ``fn`` once under ``torch.profiler`` (CPU activity; CUDA too on a GPU) and return its timed items
    (:func:`timed_items`)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return timed_items(prof.events(), "cuda" if device.type == "cuda" else "cpu")


def profile_recipe(recipe: Any, device: torch.device, *, warmup: int, steps: int, label: str | None = None) -> StepProfile:
    """Profile ``steps`` training steps of ``recipe`` (a :class:`gsm.estimate.Recipe`) on ``device`` after
    ``warmup`` steps; the wall time comes from ``steps`` more steps without the profiler (see the module
    docstring). One process, the trainer's decisions for this device (:meth:`gsm.train.device.Machine.decide`)."""
    from gsm.estimate import build_probe_run, make_loader
    from gsm.train.loop import train_one_epoch

    if warmup < 1 or steps < 1:
        raise ValueError(f"profile_recipe needs at least one warm-up and one profiled step (got {warmup}, {steps})")
    shape = recipe.shape()
    built = build_probe_run(recipe, device)
    model, machine, run, train_model = built.model, built.machine, built.parts, built.train_model
    batch, channels_last = machine.batch_size, machine.channels_last

    def epoch(loader: Any, index: int) -> dict[str, float]:
        return train_one_epoch(train_model, model.head, ScopedLoader(loader), run.optimizer, run.scaler, machine.amp,
                               index, False)

    epoch(make_loader(shape, batch, warmup, True, device, channels_last, seed=1), 0)
    loader = make_loader(shape, batch, steps, True, device, channels_last, seed=2)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    epoch(loader, 1)  # ends with the epoch loss read to the host: the device is done
    wall = time.perf_counter() - start
    items = profile_callable(lambda: epoch(loader, 2), device)
    return StepProfile(label or recipe.name, "cuda" if device.type == "cuda" else "cpu", steps, batch,
                       summarize(items), wall)
