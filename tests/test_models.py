import pytest
import torch

from gossiplab.errors import ConfigError
from gossiplab.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_forward_and_have_no_buffers(name):
    shape = (3, 32, 32) if name == "resnet18" else (1, 8, 8)
    kw = {"width": 8} if name == "resnet18" else {}
    m = build_model(name, shape, 10, **kw)
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert not list(m.buffers())


def test_resnet18_uses_groupnorm_and_has_the_standard_size():
    m = build_model("resnet18", (3, 32, 32), 10)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
    n = sum(p.numel() for p in m.parameters())
    assert 11_000_000 < n < 11_300_000  # ResNet-18 for CIFAR: ~11.2M parameters


def test_cnn_on_28x28_and_unknown_model():
    assert build_model("cnn", (1, 28, 28), 10)(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        build_model("mpl", (1, 8, 8), 10)


def test_lenet_is_decentralizepys_cifar_lenet_size():
    model = build_model("lenet", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 89_834
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
