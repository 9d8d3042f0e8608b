"""Losses: CE + mean Dice on logits, CCT consistency, and seed 003's pixel-contrastive losses.

Done right where the first paper's code was not: cross-entropy takes logits (one
softmax), Dice is the mean over the classes present in the batch (not a sum over
batch x classes), and pixels labeled 255 contribute nothing to any loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nwwatch.classes import UNLABELED

#: Half-width (px) of the boundary band that ``boundary_weight`` up-weights.
BOUNDARY_WIDTH_PX = 3


def _zero(like: torch.Tensor) -> torch.Tensor:
    # Keeps the graph connected when a batch has nothing to learn from.
    return like.sum() * 0.0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                   ignore_index: int = UNLABELED, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in ``target`` (labeled pixels only).

    logits : float (N, C, H, W).  target : int64 (N, H, W), ``ignore_index`` ignored.
    Dice of class c over the whole batch: (2 sum p_c y_c + eps) / (sum p_c + sum y_c + eps).
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    probs = logits.softmax(dim=1)
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    mask = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * mask, onehot * mask
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + eps) / (cardinality + eps)
    present = onehot.sum(dims) > 0
    return 1.0 - dice[present].mean()


def boundary_band(target: torch.Tensor, width_px: int = BOUNDARY_WIDTH_PX,
                  ignore_index: int = UNLABELED) -> torch.Tensor:
    """Pixels within ``width_px`` of a boundary between two labeled classes.

    target : int64 (N, H, W).  Returns bool (N, H, W). A pixel is in the band when its
    (2 width + 1)-square neighbourhood holds more than one labeled class (255 ignored), so the
    band straddles the wire/droplet interface and the object outlines the measurement fits.
    """
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    num_classes = int(safe.max()) + 1
    onehot = F.one_hot(safe, max(num_classes, 2)).permute(0, 3, 1, 2).float()
    onehot = onehot * valid.unsqueeze(1).float()
    present = F.max_pool2d(onehot, 2 * width_px + 1, stride=1, padding=width_px)
    return (present.sum(dim=1) > 1.5) & valid


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
                 ignore_index: int = UNLABELED, boundary_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy on logits (ignoring 255) + ``dice_weight`` x mean-Dice loss.

    ``boundary_weight`` > 0 multiplies the cross-entropy of pixels in :func:`boundary_band`
    by ``1 + boundary_weight`` (the mean is still over all labeled pixels), so the network is
    pushed to place the boundaries the measurement lives on.

    logits : float (N, C, H, W).  target : int64 (N, H, W).  Returns a scalar.
    """
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    if boundary_weight > 0:
        per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index,
                                    reduction="none")
        weights = 1.0 + boundary_weight * boundary_band(target, ignore_index=ignore_index).float()
        ce = (per_pixel * weights).sum() / valid.sum()
    else:
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    if dice_weight == 0:
        return ce
    return ce + dice_weight * soft_dice_loss(logits, target, ignore_index)


def consistency_mse(main_logits: torch.Tensor, aux_logits: torch.Tensor) -> torch.Tensor:
    """CCT's unsupervised loss: MSE between softmax(main, detached) and softmax(aux)."""
    target = main_logits.detach().softmax(dim=1)
    return F.mse_loss(aux_logits.softmax(dim=1), target)


#: Embeddings shorter than this are scaled by 1/EMBEDDING_EPS, not to unit length. A ReLU
#: network whose biases start at zero (the lean ``unet``) gives some pixels an exact zero
#: embedding; at torch's default 1e-12 their gradient was ~1e9, one step killed the network
#: and the exported model gave one class everywhere.
EMBEDDING_EPS = 1e-3


def unit_embeddings(embeddings: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``embeddings`` scaled to unit length along ``dim`` (the one normalisation of the
    contrastive paradigm: its losses, its classifier, its exported model)."""
    return F.normalize(embeddings, dim=dim, eps=EMBEDDING_EPS)


def _flatten(embeddings: torch.Tensor) -> torch.Tensor:
    # (N, D, H, W) -> (N*H*W, D), unit length for cosine similarity.
    n, d, h, w = embeddings.shape
    return unit_embeddings(embeddings.permute(0, 2, 3, 1).reshape(-1, d))


def supervised_pixel_contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    n_positive: int = 10,
    n_negative: int = 10,
    temperature: float = 0.1,
    max_anchors: int = 2048,
    generator: torch.Generator | None = None,
    ignore_index: int = UNLABELED,
) -> torch.Tensor:
    """Seed 003 eq. (4): supervised contrastive loss over labeled pixels.

    Every labeled anchor i gets ``n_positive`` pixels of its class and ``n_negative`` pixels
    of other classes (sampled with replacement among the labeled pixels of the batch,
    never i itself); with s = cosine similarity / temperature,
    ``loss_i = -mean_{j in P+} log(exp(s_ij) / sum_{k in P+ u P-} exp(s_ik))``.
    Anchors whose class has no other pixel, or that have no negative, are skipped.

    embeddings : float (N, D, H, W).  labels : int64 (N, H, W), 255 unlabeled.
    Returns a scalar (0 with a graph when no anchor qualifies).
    """
    z = _flatten(embeddings)
    y = labels.reshape(-1)
    labeled = torch.nonzero(y != ignore_index).squeeze(1)
    if labeled.numel() < 2:
        return _zero(embeddings)
    device = z.device
    if labeled.numel() > max_anchors:
        pick = torch.randperm(labeled.numel(), generator=generator)[:max_anchors]
        pool = labeled[pick.to(device)]
    else:
        pool = labeled
    # Sort the pool by class: partners of an anchor are then index ranges, and sampling costs
    # O(anchors x pairs) instead of O(anchors x pool).
    order = torch.argsort(y[pool], stable=True)
    zp, yp = z[pool][order], y[pool][order]
    m = pool.numel()
    _, inverse, counts = torch.unique_consecutive(yp, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    n_same = counts[inverse]                       # pixels of the anchor's class (incl. itself)
    start = starts[inverse]
    keep = (n_same >= 2) & (n_same < m)
    if not bool(keep.any()):
        return _zero(embeddings)
    anchor_index = torch.arange(m, device=device)[keep]
    n_same, start = n_same[keep], start[keep]
    a = anchor_index.numel()
    u_pos = torch.rand((a, n_positive), generator=generator).to(device)
    u_neg = torch.rand((a, n_negative), generator=generator).to(device)
    # Positives: uniform over the class range without the anchor itself.
    r = (u_pos * (n_same - 1)[:, None]).long()
    local_self = (anchor_index - start)[:, None]
    pos_idx = start[:, None] + r + (r >= local_self).long()
    # Negatives: uniform over the pool outside the class range.
    r = (u_neg * (m - n_same)[:, None]).long()
    neg_idx = r + (r >= start[:, None]).long() * n_same[:, None]
    anchors = zp[anchor_index]
    sim_pos = (anchors[:, None, :] * zp[pos_idx]).sum(-1) / temperature   # (A, P)
    sim_neg = (anchors[:, None, :] * zp[neg_idx]).sum(-1) / temperature   # (A, Q)
    log_denominator = torch.logsumexp(torch.cat([sim_pos, sim_neg], dim=1), dim=1, keepdim=True)
    return -(sim_pos - log_denominator).mean()


def self_supervised_pixel_contrastive_loss(
    embeddings: torch.Tensor,
    perturbed: torch.Tensor,
    temperature: float = 0.1,
    max_pixels: int = 1024,
    generator: torch.Generator | None = None,
    pseudo_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Seed 003 eq. (6): a pixel and the same pixel of a perturbed copy form the positive pair.

    For a random subset S of pixel positions (labeled or not), with s = cos / temperature,
    ``loss_i = -log(exp(s_ii~) / (exp(s_ii~) + sum_{j in S, j != i} exp(s(z_i, z_j))))`` with
    ``s_ii~ = s(z_i, z~_i)`` (the InfoNCE form: the paper's eq. 6 leaves the positive out of the
    denominator, which makes the loss unbounded below; keeping it bounds the loss by 0).

    embeddings, perturbed : float (N, D, H, W) of the image and of its perturbed copy.
    pseudo_labels : int (N, H, W), optional. A pixel is then no negative for the pixels of its
        own (predicted) class: the paper's "all other pixels" are mostly of the anchor's own
        class, and pushing those apart spreads a class over the embedding sphere.
    """
    z = _flatten(embeddings)
    zt = _flatten(perturbed)
    classes = None
    if pseudo_labels is not None:
        n, _, h, w = embeddings.shape
        if tuple(pseudo_labels.shape) != (n, h, w):
            raise ValueError(f"pseudo_labels must be (N, H, W) = {(n, h, w)}, "
                             f"got {tuple(pseudo_labels.shape)}")
        classes = pseudo_labels.reshape(-1).to(z.device)  # the (N, H, W) order of _flatten
    count = z.shape[0]
    if count < 2:
        return _zero(embeddings)
    if count > max_pixels:
        pick = torch.randperm(count, generator=generator)[:max_pixels].to(z.device)
        z, zt = z[pick], zt[pick]
        classes = None if classes is None else classes[pick]
    positive = (z * zt).sum(1, keepdim=True) / temperature               # (S, 1)
    others = z @ z.t() / temperature                                     # (S, S)
    not_negative = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    if classes is not None:
        not_negative = not_negative | (classes[:, None] == classes[None, :])
    others = others.masked_fill(not_negative, float("-inf"))
    logits = torch.cat([positive, others], dim=1)
    return -(positive.squeeze(1) - torch.logsumexp(logits, dim=1)).mean()
