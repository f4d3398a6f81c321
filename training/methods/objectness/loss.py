"""Targets and losses of point supervision with objectness regularisation (Li, Dey et al.), plus the
same network on full masks.

The network predicts, per pixel, two class logits (background, cell) and one centre logit. Weak mode
(label kind "points") trains the class logits with the paper's loss
    L = λ1·L_point + λ2·L_obj + λ3·L_img          (λ1 = λ2 = λ3 = 1)
    L_point: cross-entropy on the clicked points (cell) and the objectness region boundaries
             (background, down-weighted to 0.1), averaged over labelled pixels;
    L_obj:   soft cross-entropy against the objectness P = (1 − Obj, Obj), background weighted β_bg > 1;
    L_img:   image-level presence: −log S at the most confident pixel of each class present in the
             crop, −log(1 − S) for a class absent from it.
Full mode (label kind "full") trains the class logits with plain cross-entropy on the masks.
Both modes train the centre logit against Gaussian peaks at the points (full mode: mask centroids) with
the penalty-reduced focal loss of CenterNet, so that the runtime can seed touching cells apart."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cellpoint.training.methods.objectness.config import OUT_CHANNELS, ObjectnessParams  # noqa: F401
from cellpoint.training.methods.objectness.regions import objectness_targets
from cellpoint.training.targets import center_heatmap


def point_targets(image: np.ndarray, points_rc: np.ndarray, params: ObjectnessParams) -> dict:
    """Targets of one (H,W) normalised image from its clicks (K,2 row/col).

    Returns float32 (H,W) maps: objectness, point_label (1 cell, 0 background, -1 unlabelled),
    point_weight, center."""
    objectness, boundary, _ = objectness_targets(image, points_rc, params.w)
    label = np.full(image.shape, -1, np.float32)
    weight = np.zeros(image.shape, np.float32)
    label[boundary] = 0
    weight[boundary] = params.boundary_weight
    r = params.point_radius
    for row, col in np.asarray(points_rc, int).reshape(-1, 2):
        label[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1] = 1
        weight[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1] = 1.0
    return {"objectness": objectness, "point_label": label, "point_weight": weight,
            "center": center_heatmap(image.shape, points_rc, params.center_sigma)}


def full_targets(labels: np.ndarray, centers_rc: np.ndarray, params: ObjectnessParams) -> dict:
    """Targets of one image from its full instance masks: foreground (float32 0/1) and centre map."""
    return {"foreground": (labels > 0).astype(np.float32),
            "center": center_heatmap(labels.shape, centers_rc, params.center_sigma)}


def center_focal_loss(logit: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss; logit, target (N,H,W) Gaussian peaks.

    Pixels with target > 0.8 count as peaks (crops are resampled, so a peak's maximum may fall between
    pixels); the sum is normalised by the number of peak pixels."""
    prob = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    peak = target > 0.8
    pos = -((1 - prob) ** alpha) * torch.log(prob) * peak
    neg = -((1 - target) ** beta) * (prob ** alpha) * torch.log(1 - prob) * (~peak)
    return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)


def weak_loss(logits: torch.Tensor, batch: dict, params: ObjectnessParams) -> tuple[torch.Tensor, dict]:
    """The paper's loss plus the centre term. logits (N,3,H,W); batch maps (N,H,W). Returns (loss, parts)."""
    log_s = F.log_softmax(logits[:, :2], 1)
    label, weight = batch["point_label"], batch["point_weight"]
    labelled = label >= 0
    picked = torch.where(label > 0.5, log_s[:, 1], log_s[:, 0])
    l_point = -(weight * picked * labelled).sum() / labelled.sum().clamp(min=1)

    obj = batch["objectness"]
    l_obj = -(params.beta_background * (1 - obj) * log_s[:, 0] + obj * log_s[:, 1]).mean()

    # image level: t_c = argmax_i S_ic per crop; the cell class is present iff the crop holds a click
    flat = log_s.flatten(2)                                  # (N,2,HW)
    best = flat.max(2).values                                # log S at t_c, (N,2)
    cell_present = (label > 0.5).flatten(1).any(1)
    s_best_cell = best[:, 1].exp().clamp(max=1 - 1e-6)
    l_img = (-best[:, 0] + torch.where(cell_present, -best[:, 1], -torch.log1p(-s_best_cell))).mean()

    l_center = center_focal_loss(logits[:, 2], batch["center"])
    loss = l_point + l_obj + l_img + l_center
    return loss, {"point": l_point.item(), "obj": l_obj.item(), "img": l_img.item(), "center": l_center.item()}


def full_loss(logits: torch.Tensor, batch: dict, params: ObjectnessParams) -> tuple[torch.Tensor, dict]:
    """Upper bound: cross-entropy on full masks plus the same centre term."""
    l_mask = F.cross_entropy(logits[:, :2], batch["foreground"].long())
    l_center = center_focal_loss(logits[:, 2], batch["center"])
    return l_mask + l_center, {"mask": l_mask.item(), "center": l_center.item()}


def keep_start_loss(logits: torch.Tensor, start_logits: torch.Tensor) -> torch.Tensor:
    """How far a fine-tuned network's maps moved from those of the network it started from (fixed): the
    KL divergence of its cell/background softmax from the start's, plus the squared difference of the
    centre probabilities; 0 where they agree. logits, start_logits (N,3,H,W). Returns a scalar."""
    l_mask = F.kl_div(F.log_softmax(logits[:, :2], 1), F.log_softmax(start_logits[:, :2], 1), reduction="none",
                      log_target=True).sum(1).mean()
    l_center = F.mse_loss(torch.sigmoid(logits[:, 2]), torch.sigmoid(start_logits[:, 2]))
    return l_mask + l_center
