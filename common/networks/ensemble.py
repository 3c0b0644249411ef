"""A deep ensemble trained in one trainer (Lakshminarayanan, Pritzel, Blundell 2017, "Simple and Scalable
Predictive Uncertainty Estimation using Deep Ensembles").

:class:`DeepEnsemble` holds ``num_members`` copies of one network, each re-initialised from its own seed.
In training mode its forward stacks every member's logits on the channel axis, ``(B, K * C, ...)``, and
:class:`MemberLoss` averages one loss per member, so each member's gradient is that of its own loss: the members
train independently on the same batches (random initialisation alone decorrelates them, as in the paper's
ablation). In evaluation mode the forward returns ``log`` of the members' mean softmax probability,
``(B, C, ...)``: a softmax of it is the ensemble's predictive distribution, an argmax its segmentation, so
every consumer of a plain segmentation network's logits (validation, MONAI Label, TorchScript export) works.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["DeepEnsemble", "MemberLoss", "reset_parameters"]


def reset_parameters(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every submodule of ``module`` that has ``reset_parameters`` from torch seed ``seed``
    (the global RNG state is restored afterwards). Returns ``module``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if m is not module and callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    return module


class DeepEnsemble(nn.Module):
    """``num_members`` independently initialised copies of ``network`` (member ``k`` from seed
    ``1000 * seed + k``).

    Args:
        network: one member (e.g. a MONAI ``UNet`` with dropout, so MC dropout also works on a member).
        num_members: K >= 1.
        seed: base seed of the members' initialisation.
    """

    def __init__(self, network: nn.Module, num_members: int = 3, seed: int = 0):
        super().__init__()
        if int(num_members) < 1:
            raise ValueError(f"DeepEnsemble: num_members must be >= 1, got {num_members!r}")
        self.num_members = int(num_members)
        self.members = nn.ModuleList(
            reset_parameters(copy.deepcopy(network), 1000 * int(seed) + k) for k in range(self.num_members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: ``(B, K * C, ...)`` member logits; evaluation: ``(B, C, ...)`` log mean probability."""
        if self.training:
            return torch.cat([m(x) for m in self.members], dim=1)
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-8))


class MemberLoss(nn.Module):
    """Mean over the K members of ``loss(member logits, target)``, for a :class:`DeepEnsemble` in training mode
    whose output is ``(B, K * C, ...)``."""

    def __init__(self, loss: nn.Module, num_members: int):
        super().__init__()
        self.loss, self.num_members = loss, int(num_members)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape[1] % self.num_members:
            raise ValueError(f"MemberLoss: {pred.shape[1]} channels do not split into {self.num_members} members")
        chunks = pred.chunk(self.num_members, dim=1)
        return torch.stack([self.loss(c, target) for c in chunks]).mean()
