"""Post-processing: guided filter, dark-channel airlight, antialiased resize, median of repeats."""
from __future__ import annotations

import torch
import torch.nn.functional as F



def _symmetric_indices(n: int, r: int, device) -> torch.Tensor:
    """Indices padding a length-n axis by r on each side with the edge repeated (OpenCV's
    BORDER_REFLECT: ``cba|abc|cba``), valid for any r."""
    idx = torch.remainder(torch.arange(-r, n + r, device=device), 2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, borders reflected (edge included).
    x: ... x H x W, computed with cumulative sums (cost independent of r)."""
    for dim in (-2, -1):
        n = x.shape[dim]
        padded = x.index_select(dim, _symmetric_indices(n, r, x.device)).double()
        c = torch.cumsum(padded, dim)
        zero_shape = list(c.shape)
        zero_shape[dim] = 1
        c = torch.cat([c.new_zeros(zero_shape), c], dim)
        x = (c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)).to(x.dtype) / (2 * r + 1)
    return x


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = 50, eps: float = 1e-4) -> torch.Tensor:
    """He et al.'s guided filter with a colour (or gray) guide.

    guide: 1 x Cg x H x W (Cg = 1 or 3); src: 1 x 1 x H x W. Returns 1 x 1 x H x W.
    Colour case: per pixel, ``a = (Sigma_I + eps Id)^-1 cov(I, p)``, ``b = mean_p - a . mean_I``,
    output ``mean(a) . I + mean(b)``.
    """
    if guide.dim() != 4 or src.dim() != 4 or guide.shape[0] != 1 or src.shape[:2] != (1, 1):
        raise ValueError(f"guided_filter expects 1 x C x H x W guide and 1 x 1 x H x W src, "
                         f"got {tuple(guide.shape)} and {tuple(src.shape)}")
    if guide.shape[-2:] != src.shape[-2:]:
        raise ValueError(f"guide and src sizes differ: {tuple(guide.shape[-2:])} vs {tuple(src.shape[-2:])}")
    I = guide[0].double()  # C x H x W
    p = src[0, 0].double()  # H x W
    C, H, W = I.shape
    mean_I = box_mean(I, radius)
    mean_p = box_mean(p, radius)
    cov_Ip = box_mean(I * p, radius) - mean_I * mean_p  # C x H x W
    # Sigma_I: C x C x H x W
    II = I.unsqueeze(0) * I.unsqueeze(1)
    sigma = box_mean(II.reshape(C * C, H, W), radius).reshape(C, C, H, W) - mean_I.unsqueeze(0) * mean_I.unsqueeze(1)
    sigma = sigma + eps * torch.eye(C, dtype=I.dtype, device=I.device).reshape(C, C, 1, 1)
    a = torch.linalg.solve(sigma.permute(2, 3, 0, 1), cov_Ip.permute(1, 2, 0).unsqueeze(-1))[..., 0]
    a = a.permute(2, 0, 1)  # C x H x W
    b = mean_p - (a * mean_I).sum(0)
    q = (box_mean(a, radius) * I).sum(0) + box_mean(b, radius)
    return q.to(src.dtype)[None, None]


def dark_channel(image: torch.Tensor, window: int = 15) -> torch.Tensor:
    """Minimum over a window x window neighbourhood (edge padding) and over channels.
    image: N x C x H x W -> N x 1 x H x W."""
    r = window // 2
    m = image.amin(dim=1, keepdim=True)
    m = F.pad(m, (r, r, r, r), mode="replicate")
    return -F.max_pool2d(-m, window, stride=1)


def estimate_airlight(image: torch.Tensor, window: int = 15, fraction: float = 1e-4) -> torch.Tensor:
    """Dark-channel-prior airlight (He et al.): the per-channel maximum of the image over the
    brightest ``int(H*W*fraction)`` pixels (at least one) of its dark channel.
    image: 1 x 3 x H x W -> (3,)."""
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"estimate_airlight expects a 1 x 3 x H x W image, got {tuple(image.shape)}")
    dark = dark_channel(image, window).flatten()
    count = max(1, int(dark.numel() * fraction))
    top = torch.topk(dark, count, sorted=False).indices
    return image.flatten(2)[0][:, top].amax(dim=1)


def dcp_transmission(image: torch.Tensor, airlight: torch.Tensor, window: int = 15, omega: float = 0.95,
                     radius: int | None = None, eps: float = 1e-3) -> torch.Tensor:
    """He et al.'s dark-channel transmission ``1 - omega * dark(I / A)``, refined by a guided filter
    (guide: the image; radius a tenth of the shorter side unless given) and clipped to [0.1, 1].
    image: 1 x 3 x H x W, airlight: (3,) -> 1 x 1 x H x W."""
    h, w = image.shape[-2:]
    a = airlight.reshape(1, 3, 1, 1).clamp_min(1e-3)
    t = 1.0 - omega * dark_channel(image / a, window)
    radius = max(2, round(min(h, w) / 10)) if radius is None else radius
    return guided_filter(image, t, radius=radius, eps=eps).clamp(0.1, 1.0)


def dcp_dehaze(image: torch.Tensor, window: int = 15, omega: float = 0.95, t_min: float = 0.1,
               radius: int | None = None, eps: float = 1e-3,
               airlight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The classic single-image dehazing (He, Sun, Tang, CVPR 2009) with guided-filter refinement.

    Airlight ``A`` from the brightest dark-channel pixels; ``t = 1 - omega * dark(I / A)``, refined
    by a guided filter (guide: the image; ``radius`` a tenth of the shorter side unless given,
    He et al.'s 60 px at 600 px) and clipped to ``[t_min, 1]``; ``J = (I - A) / t + A`` clipped
    to [0, 1]. image: 1 x 3 x H x W -> (J: 1 x 3 x H x W, t: 1 x 1 x H x W, A: (3,)); a given
    ``airlight`` (3,) replaces the estimate."""
    if not 0.0 < omega <= 1.0:
        raise ValueError(f"omega must be in (0, 1], received {omega}")
    h, w = image.shape[-2:]
    radius = max(2, round(min(h, w) / 10)) if radius is None else radius
    if airlight is None:
        airlight = estimate_airlight(image, window=window)
    airlight = airlight.to(image).clamp_min(1e-3)
    a = airlight.view(1, 3, 1, 1)
    t = 1.0 - omega * dark_channel(image / a, window)
    t = guided_filter(image, t, radius=radius, eps=eps).clamp(t_min, 1.0)
    clear = ((image - a) / t + a).clamp(0.0, 1.0)
    return clear, t, airlight


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubic resize with antialiasing (when shrinking). x: N x C x H x W."""
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)


def median_of_runs(runs: list[torch.Tensor]) -> torch.Tensor:
    """Per-element median over repeated runs (vectorised). For an even count the lower middle,
    as torch does; the method uses 3 runs."""
    return torch.stack(runs).median(dim=0).values
