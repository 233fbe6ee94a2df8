"""An existing model, unmodified, trained by a balgrad strategy: the official OGM-GE
``AVClassifier`` shape (GeWu-Lab/OGM-GE_CVPR2022, ``models/basic_model.py``), with small
convolution stacks standing in for its two ResNet-18 streams so that it runs in seconds.

    python examples/declared_official_model.py

The declaration is the ten lines under "declare it"; the model class is the official
shape and is not changed for balgrad.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import balgrad
from balgrad.models import DeclaredModel, Readout


class Stream(nn.Module):
    """Stands in for the official ``resnet18(modality=...)``: the visual stream folds its
    frames into the batch, as the official one does."""

    def __init__(self, modality: str, channels: int, width: int = 16):
        super().__init__()
        self.modality = modality
        self.conv1 = nn.Conv2d(channels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        if self.modality == "visual":
            (b, c, t, h, w) = x.size()
            x = x.permute(0, 2, 1, 3, 4).contiguous().view(b * t, c, h, w)
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class ConcatFusion(nn.Module):
    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        return x, y, self.fc_out(torch.cat((x, y), dim=1))


class AVClassifier(nn.Module):
    """The official model's shape and forward, with the small streams."""

    def __init__(self, n_classes: int = 6, width: int = 16):
        super().__init__()
        self.fusion_module = ConcatFusion(2 * width, n_classes)
        self.audio_net = Stream("audio", 1, width)
        self.visual_net = Stream("visual", 3, width)

    def forward(self, audio, visual):
        a = self.audio_net(audio)
        v = self.visual_net(visual)
        (_, c, h, w) = v.size()
        b = a.size()[0]
        v = v.view(b, -1, c, h, w).permute(0, 2, 1, 3, 4)
        a = torch.flatten(F.adaptive_avg_pool2d(a, 1), 1)
        v = torch.flatten(F.adaptive_avg_pool3d(v, 1), 1)
        return self.fusion_module(a, v)


def encode_audio(av, spec):  # the audio half of AVClassifier.forward
    return torch.flatten(F.adaptive_avg_pool2d(av.audio_net(spec), 1), 1)


def encode_visual(av, frames):  # the visual half: frames [B, C, T, H, W]
    v = av.visual_net(frames)
    (_, c, h, w) = v.size()
    v = v.view(frames.size(0), -1, c, h, w).permute(0, 2, 1, 3, 4)
    return torch.flatten(F.adaptive_avg_pool3d(v, 1), 1)


def declare(av: AVClassifier) -> DeclaredModel:
    # declare it: which stream is which modality, and which module is the head
    width = av.fusion_module.fc_out.in_features // 2
    return DeclaredModel(
        av,
        encoders={"audio": encode_audio, "visual": encode_visual},
        head=lambda av, h: av.fusion_module(h["audio"], h["visual"])[2],
        groups={"audio": av.audio_net, "visual": av.visual_net, "head": av.fusion_module},
        # the output layer's columns per modality: OGM-GE's official half-bias scores
        readout=lambda av: Readout(
            av.fusion_module.fc_out.weight,
            av.fusion_module.fc_out.bias,
            {"audio": slice(0, width), "visual": slice(width, 2 * width)},
        ),
    )


def main(steps: int = 5) -> dict[str, float]:
    torch.manual_seed(0)
    av = AVClassifier()
    model = declare(av)
    strategy = balgrad.create_strategy("ogm_ge", semantics="official", alpha=0.5)
    optimizer = torch.optim.SGD(strategy.param_groups(model, lr=1e-2), lr=1e-2, momentum=0.9)
    for _ in range(steps):
        spec = torch.randn(8, 1, 32, 24)  # log-mel [B, 1, mels, time]
        frames = torch.randn(8, 3, 2, 32, 32)  # two frames [B, C, T, H, W]
        label = torch.randint(0, 6, (8,))
        optimizer.zero_grad()
        stats = strategy.backward(model, model({"audio": spec, "visual": frames}), label)
        optimizer.step()
    out = {k: float(v) for k, v in stats.items()}
    print(
        f"loss {out['loss_task']:.3f}  coef audio {out['coef_audio']:.3f}  "
        f"coef visual {out['coef_visual']:.3f}"
    )
    return out


if __name__ == "__main__":
    main()
