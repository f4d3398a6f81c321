"""Guided backpropagation of WSISPDR: explicit backward pass vs torch autograd, and its ONNX export."""
import pytest

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cellpoint.training.methods.wsispdr.guided_backprop import (  # noqa: E402
    GuidedBackprop, export_guided_backprop, guided_backprop_autograd, max_pool_routing)
from cellpoint.training.methods.wsispdr.network import DetectionUNet  # noqa: E402

torch.set_num_threads(1)

H, W = 32, 48
REL_TOL = 1e-5  # absolute tolerance, relative to the largest magnitude of the reference


def close(actual, expected) -> bool:
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.abs(actual - expected).max() <= REL_TOL * max(np.abs(expected).max(), 1e-30)


@pytest.fixture(scope="module")
def net():
    """A small random DetectionUNet in eval mode with non-trivial BatchNorm statistics.

    The head's weights get mixed but mostly positive signs, so that the seeds survive the last guided
    ReLU and the contribution maps are not trivially zero."""
    torch.manual_seed(0)
    net = DetectionUNet(in_channels=1, widths=(4, 8, 16))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        net.head.weight.abs_()
        net.head.weight[0, 0] *= -1
    return net.eval()


def random_regions(k, h=H, w=W, seed=1):
    """(k, 1, h, w) float32 0/1: one random rectangle per region."""
    rng = np.random.default_rng(seed)
    regions = np.zeros((k, 1, h, w), np.float32)
    for r in regions:
        r0, c0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        r[0, r0:r0 + rng.integers(2, 6), c0:c0 + rng.integers(2, 6)] = 1
    return torch.from_numpy(regions)


def contributions(net, image, regions):
    with torch.no_grad():
        return GuidedBackprop(net)(image, regions)


def test_explicit_backward_matches_autograd(net):
    torch.manual_seed(2)
    image = torch.randn(1, 1, H, W)
    regions = random_regions(3)
    out = contributions(net, image, regions)
    assert out.shape == (3, 1, H, W) and out.dtype == torch.float32
    for k in range(3):
        reference = guided_backprop_autograd(net, image, regions[k])
        assert reference.abs().max() > 0
        assert close(out[k], reference)


def test_batched_regions_match_one_at_a_time(net):
    torch.manual_seed(3)
    image = torch.randn(1, 1, H, W)
    regions = random_regions(3, seed=4)
    out = contributions(net, image, regions)
    for k in range(3):
        assert close(out[k:k + 1], contributions(net, image, regions[k:k + 1]))


def test_max_pool_routing_matches_autograd_on_ties():
    torch.manual_seed(5)
    x = torch.randint(0, 3, (2, 3, 8, 10)).float()  # many ties, including all-equal windows
    g = torch.randn(2, 3, 4, 5)
    pooled, routing = max_pool_routing(x)
    assert torch.equal(pooled, F.max_pool2d(x, 2))
    assert torch.equal(F.avg_pool2d(routing, 2) * 4, torch.ones_like(pooled))  # one position per window
    x_ = x.clone().requires_grad_(True)
    F.max_pool2d(x_, 2).backward(g)
    assert torch.equal(F.interpolate(g, scale_factor=2.0, mode="nearest") * routing, x_.grad)


def test_pool_ties_in_network_route_like_autograd(net):
    """A piecewise-constant image makes many 2x2 windows of equal positive activations."""
    image = torch.zeros(1, 1, H, W)
    image[..., 8:24, 12:36] = 1.0
    with torch.no_grad():
        level0 = net.encoder[0](image)
    corners = [level0[:, :, a::2, b::2] for a in (0, 1) for b in (0, 1)]
    pooled = F.max_pool2d(level0, 2)
    ties = (sum((c == pooled).int() for c in corners) > 1) & (pooled > 0)
    assert ties.sum() > 0
    regions = random_regions(3, seed=6)
    out = contributions(net, image, regions)
    for k in range(3):
        reference = guided_backprop_autograd(net, image, regions[k])
        assert reference.abs().max() > 0
        assert close(out[k], reference)


def test_guided_rule_differs_from_plain_gradient(net):
    torch.manual_seed(7)
    image = torch.randn(1, 1, H, W)
    region = random_regions(1, seed=8)[0]
    guided = guided_backprop_autograd(net, image, region)
    vanilla = guided_backprop_autograd(net, image, region, guided=False)
    assert not close(guided, vanilla)
    assert close(contributions(net, image, region[None])[0], guided)


@pytest.fixture(scope="module")
def session(net, tmp_path_factory):
    ort = pytest.importorskip("onnxruntime")
    path = export_guided_backprop(net, tmp_path_factory.mktemp("wsispdr") / "guided_backprop.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("size", [(H, W), (24, 16)])
@pytest.mark.parametrize("k", [1, 3])
def test_onnx_matches_torch(net, session, size, k):
    assert [i.name for i in session.get_inputs()] == ["image", "regions"]
    assert [o.name for o in session.get_outputs()] == ["contributions"]
    torch.manual_seed(9)
    image = torch.randn(1, 1, *size)
    regions = random_regions(k, *size, seed=10 + k)
    expected = contributions(net, image, regions).numpy()
    (actual,) = session.run(None, {"image": image.numpy(), "regions": regions.numpy()})
    assert actual.shape == (k, 1, *size) and actual.dtype == np.float32
    assert np.abs(expected).max() > 0
    assert close(actual, expected)
