"""LPIPS (Zhang et al. 2018) as a training loss on the one-step estimate x0_hat, as epsilon-VAE
(weight 0.5) and DGAE (eta) use it: d(x0_hat, x_0) = sum over layers l of the spatial mean of
|| w_l * (phi_l(x0_hat) - phi_l(x_0)) ||^2 on unit-normalised features phi_l of a pretrained network.

The `lpips` package is an optional dependency (requirements-extras.txt). Its linear weights w_l ship
with the package, but the backbone's ImageNet weights download on first use: offline, or without
the package, load_lpips fails at start with one sentence, never mid-run.
"""
import warnings


def load_lpips(device, net: str = "alex", random_backbone: bool = False):
    """The frozen LPIPS network on `device`: a callable (x, y in [-1, 1], (B, 3, H, W)) -> (B,).
    random_backbone: the package's untrained-backbone mode (tests only: it needs no download)."""
    try:
        import lpips
    except ImportError:
        raise ValueError("--lpips-weight needs the lpips package: pip install -r requirements-extras.txt, "
                         "or pass --lpips-weight 0") from None
    try:
        with warnings.catch_warnings():  # torchvision's deprecation notes about lpips's own call
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pnet_rand=random_backbone, verbose=False)
    except Exception as e:  # the backbone's weights come from download.pytorch.org
        raise OSError(f"--lpips-weight could not load the {net} backbone's pretrained weights (no network? "
                      f"{type(e).__name__}); run once online to cache them, or pass --lpips-weight 0") from None
    model = model.to(device).eval().requires_grad_(False)

    def distance(x, y):
        return model(x.float(), y.float()).flatten()                                # (B,)
    return distance
