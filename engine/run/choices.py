"""The values an option may take, where a fixed list says it (checked in engine/run/config.py)."""

from __future__ import annotations

#: torchvision classification models known to work with head replacement at small sizes.
SUPPORTED_ARCHS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "regnet_y_400mf",
    "densenet121",
    "vgg11_bn",
    "shufflenet_v2_x1_0",
    "convnext_tiny",
)
#: Archs whose stem can be swapped for a CIFAR-style 3x3 convolution without max-pool.
CIFAR_STEM_ARCHS = tuple(a for a in SUPPORTED_ARCHS if a.startswith(("resnet", "resnext", "wide_resnet")))
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "linear", "triangular")
PAD_MODES = ("zeros", "reflect")
FLIPS = ("random", "alternate", "off")
LOADERS = ("auto", "tensor", "dataloader")
DATA_BUILTINS = ("cifar10", "demo")
LR_FIND_MODES = ("", "show", "ask", "use", "only")
