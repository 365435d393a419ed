"""Models by name. No BatchNorm anywhere: its running statistics do not average meaningfully
across nodes, so normalisation layers are GroupNorm and models carry no buffers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from gossiplab.errors import ConfigError, unknown


def logistic_regression(input_shape: Sequence[int], num_classes: int, **_: object) -> nn.Module:
    d = math.prod(input_shape)  # plain ints: also builds on the meta device (size checks)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, num_classes))


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64,),
        **_: object) -> nn.Module:
    d = math.prod(input_shape)  # plain ints: also builds on the meta device (size checks)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Two conv blocks (conv3x3-ReLU-maxpool) and a two-layer head; ~width*(width*2) conv weights."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 32,
                 head: int = 128):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, head), nn.ReLU(), nn.Linear(head, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def small_cnn(input_shape: Sequence[int], num_classes: int, width: int = 32,
              **_: object) -> nn.Module:
    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        raise ConfigError(f"model 'cnn' needs [C, H, W] images with H, W >= 4, got {input_shape}")
    return SmallCNN(input_shape, num_classes, width=width)


class LeNet(nn.Module):
    """The CIFAR LeNet of decentralizepy's benchmarks (89,834 parameters on 3x32x32, 10 classes):
    three conv5x5 ('same' padding)-GroupNorm(2)-ReLU-maxpool blocks (32, 32, 64 channels) and one
    linear layer. Written from its description here, for side-by-side comparisons."""

    def __init__(self, input_shape: Sequence[int], num_classes: int):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for cin, cout in ((c, 32), (32, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 5, padding=2), nn.GroupNorm(2, cout), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def lenet(input_shape: Sequence[int], num_classes: int, **_: object) -> nn.Module:
    if len(input_shape) != 3 or min(input_shape[1:]) < 8:
        raise ConfigError(f"model 'lenet' needs [C, H, W] images with H, W >= 8, got {input_shape}")
    return LeNet(input_shape, num_classes)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.GroupNorm(min(groups, cout), cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(min(groups, cout), cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return torch.relu(out + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool) with GroupNorm instead of BatchNorm."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 64,
                 groups: int = 2):
        super().__init__()
        c = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.GroupNorm(min(groups, width), width),
            nn.ReLU(),
        )
        blocks, cin = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(cin, cout, stride, groups), BasicBlock(cout, cout, 1, groups)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18(input_shape: Sequence[int], num_classes: int, width: int = 64,
             gn_groups: int = 2, **_: object) -> nn.Module:
    if len(input_shape) != 3:
        raise ConfigError(f"model 'resnet18' needs [C, H, W] images, got {input_shape}")
    if gn_groups > width or width % gn_groups:
        raise ConfigError(f"model.gn_groups = {gn_groups} must divide model.width = {width} "
                          "(GroupNorm splits every layer's channels into equal groups)")
    return ResNet18(input_shape, num_classes, width=width, groups=gn_groups)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "logreg": logistic_regression,
    "mlp": mlp,
    "cnn": small_cnn,
    "lenet": lenet,
    "resnet18": resnet18,
}
"""Models by name. Adding one is one builder ``(input_shape, num_classes, **opts) -> Module``."""


def build_model(name: str, input_shape: Sequence[int], num_classes: int,
                **options: object) -> nn.Module:
    try:
        builder = MODELS[name]
    except KeyError:
        raise ConfigError(unknown("model", name, MODELS, "model.name")) from None
    model = builder(tuple(input_shape), num_classes, **options)
    if any(True for _ in model.buffers()):
        raise ConfigError(f"model '{name}' has buffers (e.g. BatchNorm); they cannot be gossiped")
    return model
