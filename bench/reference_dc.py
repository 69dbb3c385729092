"""A reference condensation loop structured like the authors' code, for ``bench_synthesis.py`` only.

The DC/DSA code (``main.py`` and ``utils.py`` of the DC/DSA repository) and the DCC code built on
it compute one matching step like this::

    loss = 0
    for c in classes:
        img_real = get_images(c, 256)                   # real batch of class c
        img_syn  = image_syn[c·ipc : (c+1)·ipc]
        if dsa: img_real, img_syn = DiffAugment(…, seed) # one Siamese draw, shared
        gw_real = autograd.grad(CE(net(img_real)), θ)    # forward/backward per class
        gw_syn  = autograd.grad(CE(net(img_syn)), θ, create_graph=True)
        loss   += match_loss(gw_syn, gw_real)            # parameter by parameter (distance_wb)
    loss.backward(); optimizer_img.step()
    for T epochs: epoch('train', synthetic set, net)     # DSA per batch (non-Siamese)

and for DCC the same per-class real passes, their gradients averaged over the classes, then ONE
synthetic forward over the whole set and one ``match_loss``. This module keeps that structure —
including ``DiffAugment``'s style: the group's parameters drawn for every image, affine matrices
built image by image in a Python list comprehension and turned into a tensor with
``torch.tensor``, crop and cutout by ``meshgrid`` index tensors — so that the benchmark compares
the package with the code it replaces, not with a straw man.

The math is the package's (same losses, loop sizes, optimisers, DSA parameters). So that both
implementations see the same random numbers, the reference draws from the same per-iteration
generator in the same order as :mod:`condense.synthesis` (the authors used the global RNG, and
the clock for DSA): real batches by ``randperm`` and DSA parameters with
:meth:`condense.augment.DSA.sample`. Starting from the same synthetic set, one reference
iteration then gives the package's result up to float rounding; the benchmark reports the
difference.

Not covered: batch-norm networks (the BN protocol of PAPER.md §1); the benchmark uses the
default ConvNet (instance norm).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from condense.augment import DSA, AugmentationDraw
from condense.config import CondenseConfig
from condense.data import ImageDataset
from condense.networks import build_network, has_batchnorm
from condense.runtime import derive_generator, seeded_global_rng

__all__ = ["ReferenceCondenser", "distance_wb", "match_loss", "diff_augment"]


# --------------------------------------------------------------------------------------------
# the distance, parameter by parameter (the authors' distance_wb / match_loss)


def distance_wb(gwr: Tensor, gws: Tensor) -> Tensor:
    """Row-wise cosine distance of one parameter's real and synthetic gradients; 0 for 1-D tensors."""
    shape = gwr.shape
    if len(shape) == 4:  # conv, out × in·h·w
        gwr = gwr.reshape(shape[0], shape[1] * shape[2] * shape[3])
        gws = gws.reshape(shape[0], shape[1] * shape[2] * shape[3])
    elif len(shape) == 3:  # layer norm, C × h·w
        gwr = gwr.reshape(shape[0], shape[1] * shape[2])
        gws = gws.reshape(shape[0], shape[1] * shape[2])
    elif len(shape) == 1:  # biases, norm scales and shifts
        return torch.tensor(0, dtype=torch.float, device=gwr.device)
    return torch.sum(1 - torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 0.000001))


def match_loss(gw_syn: list[Tensor], gw_real: list[Tensor]) -> Tensor:
    """Σ over parameter tensors of :func:`distance_wb` (the ``ours`` distance), accumulated in Python."""
    dis = torch.tensor(0.0, device=gw_real[0].device)
    for ig in range(len(gw_real)):
        dis += distance_wb(gw_real[ig], gw_syn[ig])
    return dis


# --------------------------------------------------------------------------------------------
# DiffAugment in the authors' style; parameters come from a package draw expanded to the batch


def _per_image(values: Tensor, n: int) -> Tensor:
    """A draw's (B,) values as (n,): a Siamese draw (B = 1) gives every image the first value."""
    return values.expand(n) if values.numel() == 1 else values


def _rand_scale(x: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    theta = [[[sx[i], 0, 0], [0, sy[i], 0]] for i in range(x.shape[0])]  # per image, in Python
    theta = torch.tensor(theta, dtype=torch.float)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True).to(x.device)
    return F.grid_sample(x, grid, align_corners=True)


def _rand_rotate(x: Tensor, angle: Tensor) -> Tensor:
    theta = [[[torch.cos(angle[i]), torch.sin(-angle[i]), 0], [torch.sin(angle[i]), torch.cos(angle[i]), 0]] for i in range(x.shape[0])]
    theta = torch.tensor(theta, dtype=torch.float)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True).to(x.device)
    return F.grid_sample(x, grid, align_corners=True)


def _rand_color(x: Tensor, brightness: Tensor, saturation: Tensor, contrast: Tensor) -> Tensor:
    x = x + brightness.view(-1, 1, 1, 1)
    x_mean = x.mean(dim=1, keepdim=True)
    x = (x - x_mean) * saturation.view(-1, 1, 1, 1) + x_mean
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * contrast.view(-1, 1, 1, 1) + x_mean


def _rand_crop(x: Tensor, shift_h: Tensor, shift_w: Tensor) -> Tensor:
    """Translate with zero fill via a 1-pixel zero pad and clamped meshgrid indices (as the authors)."""
    n, _, h, w = x.shape
    grid_batch, grid_x, grid_y = torch.meshgrid(*(torch.arange(k, device=x.device) for k in (n, h, w)), indexing="ij")
    grid_x = torch.clamp(grid_x + shift_h.view(-1, 1, 1) + 1, 0, h + 1)
    grid_y = torch.clamp(grid_y + shift_w.view(-1, 1, 1) + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)


def _rand_cutout(x: Tensor, centre_h: Tensor, centre_w: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero a square per image via a mask built from clamped meshgrid indices (as the authors)."""
    n, _, h, w = x.shape
    grid_batch, grid_x, grid_y = torch.meshgrid(*(torch.arange(k, device=x.device) for k in (n, *size)), indexing="ij")
    grid_x = torch.clamp(grid_x + centre_h.view(-1, 1, 1) - size[0] // 2, min=0, max=h - 1)
    grid_y = torch.clamp(grid_y + centre_w.view(-1, 1, 1) - size[1] // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


def _uniform_int(u: Tensor, count: int) -> Tensor:
    """u ~ U[0, 1) → integers uniform on {0, …, count − 1} (how the package maps its draws)."""
    return torch.clamp((u * count).floor().long(), 0, count - 1)


def diff_augment(x: Tensor, draw: AugmentationDraw, dsa: DSA) -> Tensor:
    """Apply one DSA draw to ``x: (N, C, H, W)`` in the style of the authors' ``DiffAugment``."""
    n, _, h, w = x.shape
    p, q = dsa.params, {k: _per_image(v, n).to(x.device) for k, v in draw.params.items()}
    if draw.group == "color":
        return _rand_color(x, q["brightness_shift"], q["saturation_factor"], q["contrast_factor"])
    if draw.group == "crop":
        sh, sw = int(h * p.crop_ratio + 0.5), int(w * p.crop_ratio + 0.5)
        return _rand_crop(x, _uniform_int(q["u_h"], 2 * sh + 1) - sh, _uniform_int(q["u_w"], 2 * sw + 1) - sw)
    if draw.group == "cutout":
        size = (int(h * p.cutout_ratio + 0.5), int(w * p.cutout_ratio + 0.5))
        return _rand_cutout(x, _uniform_int(q["u_h"], h + 1 - size[0] % 2), _uniform_int(q["u_w"], w + 1 - size[1] % 2), size)
    if draw.group == "flip":
        return torch.where(q["flip"].view(-1, 1, 1, 1), x.flip(3), x)
    if draw.group == "scale":
        return _rand_scale(x, q["sx"], q["sy"])
    if draw.group == "rotate":
        return _rand_rotate(x, q["angle"])
    return x


# --------------------------------------------------------------------------------------------
# the loop


class ReferenceCondenser:
    """One run's state and its iterations, written like the authors' ``main.py``.

    Args:
        config: the package's config (method, ipc, K, T, batch sizes, learning rates, warm-up, seed).
        dataset: the real data; normalised and kept in memory like the authors' ``images_all``.
    """

    def __init__(self, config: CondenseConfig, dataset: ImageDataset, device: str | torch.device = "cpu"):
        if config.distance != "ours":
            raise ValueError("the reference implements the default distance ('ours') only")
        self.config = config
        self.device = torch.device(device)
        images_all, labels_all = dataset.normalised_train()
        self.images_all = images_all.to(self.device)  # the authors keep all real images on the GPU
        self.indices_class = [torch.nonzero(labels_all == c).flatten() for c in range(dataset.num_classes)]
        self.num_classes = dataset.num_classes
        self.shape = tuple(images_all.shape[1:])
        self.dsa = DSA() if config.uses_dsa else None
        init = derive_generator(config.seed, "init")
        image_syn = torch.cat([self.get_images(c, config.ipc, init) for c in range(self.num_classes)])
        self.image_syn = image_syn.detach().clone().requires_grad_(True)
        self.label_syn = torch.arange(self.num_classes, device=self.device).repeat_interleave(config.ipc)
        self.optimizer_img = torch.optim.SGD([self.image_syn], lr=config.syn_lr, momentum=config.syn_momentum)
        self.iteration = 0

    @property
    def synthetic(self) -> Tensor:
        return self.image_syn

    def get_images(self, c: int, n: int, generator: torch.Generator) -> Tensor:
        """``n`` random real images of class ``c`` (the authors' ``get_images``)."""
        idx = self.indices_class[c]
        return self.images_all[idx[torch.randperm(len(idx), generator=generator)[:n]].to(self.device)]

    def _augment_pair(self, img_real: Tensor, img_syn: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.dsa is None:
            return img_real, img_syn
        draw = self.dsa.sample(generator, 1, siamese=True)  # one draw shared by the pair
        return diff_augment(img_real, draw, self.dsa), diff_augment(img_syn, draw, self.dsa)

    def _classwise_loss(self, net: nn.Module, params: list[Tensor], generator: torch.Generator) -> Tensor:
        """DC / DSA: Σ_c match_loss(∇θ ℓ(S_c), ∇θ ℓ(B_c)), one forward/backward pair per class."""
        ipc, loss = self.config.ipc, torch.tensor(0.0, device=self.device)
        for c in range(self.num_classes):
            img_real = self.get_images(c, self.config.real_batch, generator)
            img_syn = self.image_syn[c * ipc : (c + 1) * ipc]
            img_real, img_syn = self._augment_pair(img_real, img_syn, generator)
            lab_real = torch.ones((img_real.shape[0],), dtype=torch.long, device=self.device) * c
            lab_syn = torch.ones((ipc,), dtype=torch.long, device=self.device) * c
            gw_real = torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), params)
            gw_real = [g.detach().clone() for g in gw_real]
            gw_syn = torch.autograd.grad(F.cross_entropy(net(img_syn), lab_syn), params, create_graph=True)
            loss += match_loss(gw_syn, gw_real)
        return loss

    def _contrastive_loss(self, net: nn.Module, params: list[Tensor], generator: torch.Generator) -> Tensor:
        """DCC / DSAC: per-class real gradients averaged, one synthetic forward over the whole set."""
        ipc = self.config.ipc
        gw_real_sum: list[Tensor] | None = None
        img_syn_all = []
        for c in range(self.num_classes):
            img_real = self.get_images(c, self.config.real_batch, generator)
            img_syn = self.image_syn[c * ipc : (c + 1) * ipc]
            img_real, img_syn = self._augment_pair(img_real, img_syn, generator)
            lab_real = torch.ones((img_real.shape[0],), dtype=torch.long, device=self.device) * c
            gw_real = torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), params)
            gw_real = [g.detach().clone() for g in gw_real]
            gw_real_sum = gw_real if gw_real_sum is None else [a + b for a, b in zip(gw_real_sum, gw_real)]
            img_syn_all.append(img_syn)
        assert gw_real_sum is not None
        gw_real_mean = [g / self.num_classes for g in gw_real_sum]
        output_syn = net(torch.cat(img_syn_all))
        gw_syn = torch.autograd.grad(F.cross_entropy(output_syn, self.label_syn), params, create_graph=True)
        return match_loss(gw_syn, gw_real_mean)

    def _train_epoch(self, net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[float, float]:
        """The authors' ``epoch('train', …)``: shuffled batches, DSA per batch, accuracy via numpy."""
        net.train()
        loss_avg, acc_avg = 0.0, 0.0
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for start in range(0, len(images), self.config.network_batch):
            index = order[start : start + self.config.network_batch]
            img, lab = images[index], labels[index]
            if self.dsa is not None:
                img = diff_augment(img, self.dsa.sample(generator, img.shape[0]), self.dsa)
            output = net(img)
            loss = F.cross_entropy(output, lab)
            acc = np.sum(np.equal(np.argmax(output.detach().cpu().numpy(), axis=-1), lab.cpu().numpy()))
            loss_avg += loss.item() * lab.shape[0]
            acc_avg += float(acc)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss_avg / len(images), acc_avg / len(images)

    def run_iteration(self) -> float:
        """One iteration: a fresh network, K matching steps with T epochs between them. Returns the mean loss."""
        config, it = self.config, self.iteration
        generator = derive_generator(config.seed, "iteration", it)
        with seeded_global_rng(generator):
            net = build_network(config.network, self.shape[0], self.num_classes, self.shape[1:]).to(self.device)
        if has_batchnorm(net):
            raise ValueError("the reference loop does not implement the batch-norm protocol")
        net.train()
        params = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=config.network_lr)
        loss_avg = 0.0
        for ol in range(config.steps):
            contrastive = config.uses_warmup and (it >= config.outer_warmup or ol >= config.inner_warmup)
            loss = self._contrastive_loss(net, params, generator) if contrastive else self._classwise_loss(net, params, generator)
            self.optimizer_img.zero_grad()
            loss.backward()
            self.optimizer_img.step()
            loss_avg += loss.item()
            if ol == config.steps - 1:
                break
            image_syn_train, label_syn_train = self.image_syn.detach().clone(), self.label_syn.clone()
            for _ in range(config.epochs_between_steps):
                self._train_epoch(net, optimizer_net, image_syn_train, label_syn_train, generator)
        self.iteration += 1
        return loss_avg / config.steps
