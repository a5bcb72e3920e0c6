"""Shared GroupNorm statistics for tiled inference: every tile normalised with the statistics of the whole image.
See ``docs/rddm.md``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from rawsynth.errors import ShapeError
from rawsynth.mns import Pattern, pack, unpack

from ..errors import RddmError

__all__ = ["NORM_STATS", "GroupNormStats", "GroupNormStatsError", "group_norm_moments", "group_norm_with_stats",
           "groupnorm_layers", "record_groupnorm_stats", "use_groupnorm_stats", "with_groupnorm_stats",
           "stats_size", "downscale_mosaic", "downscale_latent", "owned_spans", "owned_boxes", "pooled_tile_fn"]

#: Values of ``norm_stats`` (``--norm-stats``): ``tile`` (each tile its own statistics, plain GroupNorm),
#: ``global`` (statistics of the whole, downscaled, stage input shared by every tile) or ``pooled`` (statistics
#: of the whole full-resolution input, pooled over all tiles run as one batch: :func:`pooled_tile_fn`).
NORM_STATS = ("tile", "global", "pooled")


class GroupNormStatsError(RddmError):
    """Recorded GroupNorm statistics do not fit the pass that uses them (another module, input or call order)."""


def group_norm_moments(x: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of each (sample, group) of ``x``, as ``torch.nn.GroupNorm`` computes them.

    Args:
        x: ``(N, C, *)`` any float dtype, ``C`` divisible by ``num_groups``.
        num_groups: number of channel groups.

    Returns:
        ``(mean, var)``, each ``(N, num_groups)`` float32.
    """
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ShapeError(f"GroupNorm input must be (N, C, *) with C divisible by {num_groups}, got {tuple(x.shape)}")
    var, mean = torch.var_mean(x.detach().float().reshape(x.shape[0], num_groups, -1), dim=-1, correction=0)
    return mean, var


def group_norm_with_stats(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, num_groups: int,
                          weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                          eps: float = 1e-5) -> torch.Tensor:
    """GroupNorm of ``x`` with given statistics: ``(x − mean)/√(var + eps)·weight + bias`` per (sample, group).

    ``group_norm_with_stats(x, *group_norm_moments(x, G), G, w, b, eps)`` equals ``F.group_norm(x, G, w, b, eps)``
    up to float rounding (tested).

    Args:
        x: ``(N, C, *)``.
        mean: ``(M, num_groups)`` with ``N`` a multiple of ``M``: row ``i % M`` normalises sample ``i``.
        var: like ``mean``.
        num_groups: number of channel groups.
        weight: ``(C,)`` affine scale or ``None``.
        bias: ``(C,)`` affine shift or ``None``.
        eps: added to the variance.

    Returns:
        ``x``'s shape and dtype (computed in float32).
    """
    n, c = x.shape[:2]
    m = mean.shape[0]
    if mean.shape != (m, num_groups) or var.shape != mean.shape or c % num_groups:
        raise ShapeError(f"statistics {tuple(mean.shape)}/{tuple(var.shape)} do not fit a GroupNorm of "
                         f"{num_groups} groups on input {tuple(x.shape)}")
    if m == 0 or n % m:
        raise ShapeError(f"a batch of {n} cannot share statistics recorded for a batch of {m}")
    if n != m:
        mean, var = mean.repeat(n // m, 1), var.repeat(n // m, 1)
    xs = x.float().reshape(n, num_groups, -1)
    y = ((xs - mean[..., None].to(xs.device)) * torch.rsqrt(var[..., None].to(xs.device) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.float().reshape(shape)
    if bias is not None:
        y = y + bias.float().reshape(shape)
    return y.to(x.dtype)


class GroupNormStats:
    """Statistics recorded by :func:`record_groupnorm_stats`.

    Attributes:
        calls: for each GroupNorm that ran (qualified name in the module), ``(mean, var)`` of each of its calls
            in order, each ``(B, groups)`` float32 on the device it ran on.
    """

    def __init__(self):
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __len__(self) -> int:
        """Number of layers that recorded statistics."""
        return len(self.calls)

    def __repr__(self) -> str:
        n = sum(len(v) for v in self.calls.values())
        return f"GroupNormStats({len(self.calls)} layers, {n} calls)"


def groupnorm_layers(module: nn.Module) -> dict[str, nn.GroupNorm]:
    """Every ``torch.nn.GroupNorm`` in ``module`` (itself included) by qualified name, peft wrappers included."""
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.GroupNorm)}


_MISSING = object()
_FLAG = "_rddm_groupnorm_stats"


@contextmanager
def _patched(module: nn.Module, make_forward: Callable[[str, nn.GroupNorm, Callable], Callable]) -> Iterator[None]:
    layers = groupnorm_layers(module)
    saved: dict[str, object] = {}
    try:
        for name, m in layers.items():
            if getattr(m.forward, _FLAG, False):
                raise GroupNormStatsError(f"GroupNorm {name!r} is already recording or using shared statistics "
                                          "(nested record/use contexts on the same module)")
            saved[name] = m.__dict__.get("forward", _MISSING)
            fwd = make_forward(name, m, m.forward)
            setattr(fwd, _FLAG, True)
            m.forward = fwd
        yield
    finally:
        for name, old in saved.items():
            m = layers[name]
            if old is _MISSING:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old


@contextmanager
def record_groupnorm_stats(module: nn.Module) -> Iterator[GroupNormStats]:
    """Within the context, every GroupNorm of ``module`` records its input's per-(sample, group) statistics.

    Outputs are unchanged (the layers' own forward runs). Each entry of the yielded :class:`GroupNormStats` is
    a new recording (the object is empty on entry).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.GroupNorm(2, 4))
        >>> with record_groupnorm_stats(net) as stats:
        ...     _ = net(torch.rand(1, 1, 8, 8))
        >>> ((mean, var),) = stats.calls["1"]  # one call of layer "1": per-(sample, group) moments
        >>> mean.shape, var.shape
        (torch.Size([1, 2]), torch.Size([1, 2]))
    """
    stats = GroupNormStats()

    def make(name, m, orig):
        def forward(x, *args, **kwargs):
            stats.calls.setdefault(name, []).append(group_norm_moments(x, m.num_groups))
            return orig(x, *args, **kwargs)

        return forward

    with _patched(module, make):
        yield stats


@contextmanager
def use_groupnorm_stats(module: nn.Module, stats: GroupNormStats, *, check_calls: bool = True) -> Iterator[None]:
    """Within the context, every GroupNorm of ``module`` normalises with the statistics in ``stats`` (recorded
    on the same module) instead of its input's, then applies its own affine weight and bias.

    The ``k``-th call of a layer in the context uses its ``k``-th recorded entry, so enter the context once per
    forward pass (:func:`with_groupnorm_stats` does). A batch ``n·B`` uses the ``B`` recorded rows ``n`` times.

    Args:
        module: the module the statistics were recorded on.
        stats: from :func:`record_groupnorm_stats`.
        check_calls: on a normal exit, require that every recorded layer ran exactly as often as recorded and
            (always) that no layer runs more often or without a recording.

    Raises:
        GroupNormStatsError: a layer runs without a recording, or more or fewer times than recorded.
        ShapeError: the input does not fit the recorded statistics (channels, batch).
    """
    used: dict[str, int] = {}

    def make(name, m, orig):
        recorded = stats.calls.get(name, [])

        def forward(x):
            k = used.get(name, 0)
            if k >= len(recorded):
                raise GroupNormStatsError(f"GroupNorm {name!r} runs {k + 1} time(s), statistics were recorded for "
                                          f"{len(recorded)}: record them on the same module and the same kind of "
                                          "pass")
            used[name] = k + 1
            mean, var = recorded[k]
            return group_norm_with_stats(x, mean, var, m.num_groups, m.weight, m.bias, m.eps)

        return forward

    with _patched(module, make):
        yield
        if check_calls:
            wrong = {k: (used.get(k, 0), len(v)) for k, v in stats.calls.items() if used.get(k, 0) != len(v)}
            if wrong:
                name, (got, want) = next(iter(wrong.items()))
                raise GroupNormStatsError(f"{len(wrong)} GroupNorm layer(s) ran another number of times than "
                                          f"recorded (e.g. {name!r}: {got} vs {want}): the statistics belong to "
                                          "another pass")


def with_groupnorm_stats(fn: Callable[..., torch.Tensor], module: nn.Module,
                         stats: GroupNormStats) -> Callable[..., torch.Tensor]:
    """``fn`` with every call run inside :func:`use_groupnorm_stats` (one forward pass of ``module`` per call),
    e.g. the per-tile function of :func:`~rddm.restore.tiling.tiled_apply`."""

    def wrapped(*args, **kwargs):
        with use_groupnorm_stats(module, stats):
            return fn(*args, **kwargs)

    return wrapped


# ------------------------------------------------------------------------------- the statistics pass's input


def stats_size(h: int, w: int, max_side: int, multiple: int) -> tuple[int, int]:
    """Size of the downscaled copy for the statistics pass: ``(h, w)`` itself when its longer side is at most
    ``max_side``, else scaled by ``max_side / max(h, w)`` and rounded down to multiples of ``multiple`` (at
    least ``multiple``).

    Example:
        >>> stats_size(4032, 6016, 1024, 64)
        (640, 1024)
    """
    if max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return (max(multiple, math.floor(h * s / multiple) * multiple),
            max(multiple, math.floor(w * s / multiple) * multiple))


def downscale_mosaic(raw: torch.Tensor, pattern: Pattern | str, max_side: int, multiple: int) -> torch.Tensor:
    """A Bayer mosaic ``(B, 1, H, W)`` downscaled for the statistics pass, keeping its CFA layout.

    Its four colour planes (:func:`rawsynth.mns.pack`) are area-averaged to half of :func:`stats_size` and
    re-mosaicked with the same pattern (so the result is a plausible mosaic of the whole scene at a lower
    resolution: same colours, same black level, lower noise). Returned as is when it fits ``max_side``.

    Args:
        raw: ``(B, 1, H, W)`` float mosaic, ``H`` and ``W`` even.
        pattern: its Bayer pattern.
        max_side: longest side of the result in pixels.
        multiple: the sides of the result are multiples of it (even; the model's pixel grid).
    """
    h, w = raw.shape[-2:]
    th, tw = stats_size(h, w, max_side, multiple)
    if (th, tw) == (h, w):
        return raw
    if th % 2 or tw % 2:
        raise ShapeError(f"a downscaled mosaic must have even sides, got {th}x{tw} (multiple {multiple})")
    planes = F.interpolate(pack(raw.float(), Pattern(pattern)), size=(th // 2, tw // 2), mode="area")
    return unpack(planes, Pattern(pattern)).to(raw.dtype)


def downscale_latent(z: torch.Tensor, max_side: int, multiple: int) -> torch.Tensor:
    """Latents ``(B, C, h, w)`` area-downsampled to :func:`stats_size` (``max_side`` in latent pixels) for the
    statistics pass; returned as is when they fit."""
    h, w = z.shape[-2:]
    th, tw = stats_size(h, w, max_side, multiple)
    if (th, tw) == (h, w):
        return z
    return F.interpolate(z.float(), size=(th, tw), mode="area").to(z.dtype)


# ------------------------------------------------------------------ exact statistics pooled over the tiles


def owned_spans(size: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """The part of ``[0, size)`` each tile of :func:`~rddm.restore.tiling.tile_starts` *owns*: consecutive
    spans that partition the axis, the boundary between two neighbours at the middle of their overlap (rounded
    down to a multiple of ``align``), so an owned position is about ``overlap/2`` from the tile's interior edges.

    Example:
        >>> owned_spans(10, 4, 1)
        [(0, 3), (3, 6), (6, 10)]
    """
    from .tiling import tile_starts

    starts = tile_starts(size, tile, overlap, align)
    t = min(tile, size)
    bounds = [0]
    for s, s_next in zip(starts, starts[1:]):
        b = (s_next + s + t) // 2 // align * align
        bounds.append(min(max(b, s_next), s + t))
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def owned_boxes(grid: tuple[int, int], tiling) -> list[tuple[float, float, float, float]]:
    """For each tile of ``tiled_apply`` on a grid of ``grid`` units (in its order: row-major over the tile
    starts), the box it owns as fractions of the tile, ``(top, bottom, left, right)`` in ``[0, 1]``; the boxes
    partition the grid (:func:`owned_spans` on each axis)."""
    from .tiling import tile_starts

    gh, gw = grid
    th, tw = min(tiling.tile, gh), min(tiling.tile, gw)
    out = []
    ys, xs = (tile_starts(n, tiling.tile, tiling.overlap, tiling.align) for n in (gh, gw))
    spans_y, spans_x = (owned_spans(n, tiling.tile, tiling.overlap, tiling.align) for n in (gh, gw))
    for y, (y0, y1) in zip(ys, spans_y):
        for x, (x0, x1) in zip(xs, spans_x):
            out.append(((y0 - y) / th, (y1 - y) / th, (x0 - x) / tw, (x1 - x) / tw))
    return out


def _owned_moments(x: torch.Tensor, boxes, batch: int, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance per (sample, group) over the owned boxes of the ``n`` tiles stacked tile-major
    in ``x`` (``(n·batch, C, h, w)``): each tile's ``(count, mean, M2)`` merged with Chan et al.'s parallel
    formula in float64. Returns ``(batch, groups)`` float32 each."""
    h, w = x.shape[-2:]
    n = mean = m2 = None
    for j, (t, bo, le, r) in enumerate(boxes):
        part = x[j * batch:(j + 1) * batch, :, round(t * h):round(bo * h), round(le * w):round(r * w)]
        nb = float(part[0, 0].numel() * (x.shape[1] // num_groups))
        if nb == 0:
            continue
        var_b, mean_b = torch.var_mean(part.detach().float().reshape(batch, num_groups, -1), dim=-1, correction=0)
        mean_b, m2_b = mean_b.double(), var_b.double() * nb
        if n is None:
            n, mean, m2 = nb, mean_b, m2_b
            continue
        tot, d = n + nb, mean_b - mean
        mean, m2, n = mean + d * nb / tot, m2 + m2_b + d * d * n * nb / tot, tot
    if n is None:
        raise GroupNormStatsError("no tile owns any position of this GroupNorm's input")
    return mean.float(), (m2 / n).clamp_min(0).float()


def pooled_tile_fn(fn: Callable[..., torch.Tensor], module: nn.Module,
                   boxes: list[tuple[float, float, float, float]], batch: int) -> Callable[..., torch.Tensor]:
    """``fn`` for one call on *all* tiles at once (``tiled_apply`` with ``tile_batch`` = the number of tiles),
    with every GroupNorm of ``module`` normalising with the moments pooled over the owned boxes of all tiles.

    The boxes partition the image, so nothing is counted twice and the tile borders (where a tile's
    activations differ from the untiled ones) are left out. Layer by layer, the statistics every earlier layer
    used are the whole image's, so when the network's receptive field fits in the owned margin (about half the
    overlap) each layer's pooled moments, and the result, equal the untiled ones (tested): the exact global
    statistics of the full-resolution input in one pass. The price is memory: all tiles are in flight together
    (about the untiled pass's activations, without its full-image self-attention).

    Args:
        fn: the tile function, mapping ``(n·batch, C, h, w)`` tile-major.
        module: the module whose GroupNorms to pool.
        boxes: :func:`owned_boxes` of the tiling, one per tile in ``tiled_apply``'s order.
        batch: samples per tile (``B`` of the image).
    """

    def wrapped(xt, *args, **kwargs):
        if xt.shape[0] != len(boxes) * batch:
            raise GroupNormStatsError(f"pooled statistics need all {len(boxes)} tiles in one call, got "
                                      f"{xt.shape[0] // batch}")

        last_hw: list[tuple[int, int]] = []

        def make(name, m, orig):
            def forward(x):
                if x.ndim == 4:
                    last_hw[:] = [tuple(x.shape[-2:])]
                    xs = x
                elif x.ndim == 3 and last_hw and last_hw[0][0] * last_hw[0][1] == x.shape[-1]:
                    xs = x.reshape(*x.shape[:2], *last_hw[0])  # attention's GroupNorm on flattened (N, C, h·w)
                else:
                    raise GroupNormStatsError(f"GroupNorm {name!r} gets a {tuple(x.shape)} input whose spatial "
                                              "layout is unknown", fix="use --norm-stats global or tile")
                mean, var = _owned_moments(xs, boxes, batch, m.num_groups)
                return group_norm_with_stats(x, mean, var, m.num_groups, m.weight, m.bias, m.eps)

            return forward

        with _patched(module, make):
            return fn(xt, *args, **kwargs)

    return wrapped
