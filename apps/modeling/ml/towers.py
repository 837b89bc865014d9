"""Torch modules of the two-tower model (imports torch; training side only).

Score(u, i) = cos(q_u, v_i) / tau with

* user tower  q_u = skip(z_u) + fc2(relu(fc1(z_u))),  z_u = [x_u, E_in(h_u)]
  where x_u = content means per decay channel + scalars (features.tower_input
  without the emb block) and h_u the per-channel normalised weighted
  multi-hot history (only when ``emb_dim > 0``: learned input embeddings).
* item tower  v_i = [A b_i + e_i, s ⊙ f_i] with b_i the frozen BERT vector,
  A an adapter (identity-initialised), e_i an optional per-item ID embedding
  (zero-initialised) and f_i fixed extra item features (DP popularity, year,
  ...) with learned scales s. With ``learn_items=False`` (the "seed" item
  side) v_i = [b_i, f_i] is fixed, which is what DP training uses: Opacus
  per-sample gradients need every trainable parameter to act on a per-user
  input, and the item matrix has no user dimension.

Only ``nn.Linear`` layers carry trainable user-side parameters, so Opacus
hooks and ghost clipping both apply.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import ModelConfig

__all__ = ["ItemTower", "ModelConfig", "SoftmaxTargetLoss", "SottoModel", "UserTower"]


class UserTower(nn.Module):
    """MLP with a linear skip; optional learned input embeddings of history items."""

    def __init__(
        self, x_dim: int, out_dim: int, hidden: int, n_items: int = 0, emb_dim: int = 0, n_channels: int = 1
    ) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.n_channels = n_channels
        self.emb = nn.Linear(n_items, emb_dim, bias=False) if emb_dim > 0 else None
        z_dim = x_dim + n_channels * emb_dim
        self.skip = nn.Linear(z_dim, out_dim)
        self.fc1 = nn.Linear(z_dim, hidden) if hidden > 0 else None
        self.fc2 = nn.Linear(hidden, out_dim) if hidden > 0 else None
        if self.fc2 is not None:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
        if self.emb is not None:
            nn.init.normal_(self.emb.weight, std=0.1)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        z = x
        if self.emb is not None:
            assert h is not None
            e = self.emb(h)  # (B, C, E)
            z = torch.cat([x, e.reshape(e.shape[0], -1)], dim=1)
        q: torch.Tensor = self.skip(z)
        if self.fc1 is not None and self.fc2 is not None:
            q = q + self.fc2(torch.relu(self.fc1(z)))
        return q


class ItemTower(nn.Module):
    """Item vectors from frozen content vectors + fixed extra features."""

    content: torch.Tensor
    extras: torch.Tensor

    def __init__(self, content: np.ndarray, extras: np.ndarray, learn: bool, id_emb: bool) -> None:
        super().__init__()
        self.register_buffer("content", torch.as_tensor(content, dtype=torch.float32))
        self.register_buffer("extras", torch.as_tensor(extras, dtype=torch.float32))
        d = content.shape[1]
        self.learn = learn
        if learn:
            self.adapter = nn.Parameter(torch.eye(d))
            self.extra_scale = nn.Parameter(torch.ones(extras.shape[1]))
        self.id_emb = nn.Parameter(torch.zeros(content.shape[0], d)) if id_emb else None

    @property
    def out_dim(self) -> int:
        return int(self.content.shape[1] + self.extras.shape[1])

    def forward(self) -> torch.Tensor:
        if not self.learn:
            base, ex = self.content, self.extras
        else:
            base, ex = self.content @ self.adapter, self.extras * self.extra_scale
        if self.id_emb is not None:
            base = base + self.id_emb
        return torch.cat([base, ex], dim=1)


class SottoModel(nn.Module):
    """Cosine two-tower scorer returning masked logits over all items."""

    def __init__(self, user: UserTower, item: ItemTower, tau: float) -> None:
        super().__init__()
        self.user = user
        self.item = item
        self.tau = tau

    def item_vectors(self) -> torch.Tensor:
        return nn.functional.normalize(self.item(), dim=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = nn.functional.normalize(self.user(x, h if self.user.emb is not None else None), dim=1)
        logits = q @ self.item_vectors().T / self.tau
        return logits.masked_fill(mask, -1e4)


class SoftmaxTargetLoss(nn.Module):
    """Per-user multinomial log-loss: -Σ_i t_ui log softmax(logits_u)_i, Σ_i t_ui = 1.

    Has a ``reduction`` attribute so Opacus ghost clipping can ask for the
    per-sample losses (reduction='none').
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1)
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        return per.mean() if per.numel() else per.sum()
