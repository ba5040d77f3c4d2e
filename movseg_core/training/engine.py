"""Training engine for the RGB+X MaskFormer: seeds, AMP on CUDA, AdamW + poly schedule, resumable
checkpoints, tqdm progress, per-step CSV metrics, periodic mIoU evaluation, and torch.distributed
(DDP) when launched by ``torchrun`` (env ``WORLD_SIZE`` > 1): distributed samplers splitting each
global batch, rank-0 checkpointing/logging. Same global batch -> same loss curve for any process
count (frozen BN / GroupNorm, globally normalised losses).

Run folder: ``metrics.csv`` (one row per logged step), ``eval.csv``, ``config.yaml``,
``checkpoints/last.pt`` (training state) and ``model_final.pt`` (exported checkpoint).
"""
from __future__ import annotations

import csv
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from ..config import resolve_device
from ..models import create_model, export_checkpoint
from . import distributed as du
from .config import TrainConfig
from .criterion import SetCriterion
from .data import SegmentationDataset, collate
from .datasets import build_readers
from .evaluate import evaluate

log = logging.getLogger(__name__)

LOSS_KEYS = ("loss", "loss_ce", "loss_mask", "loss_dice")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed(device: torch.device) -> bool:
    """Join the process group ``torchrun`` describes (env RANK/WORLD_SIZE/MASTER_*); False if single."""
    if du.is_dist():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def class_text_embeddings(cfg: TrainConfig, class_names: tuple[str, ...], seed: int) -> torch.Tensor:
    """CLIP text embeddings ``C x E`` of the training classes (frozen; random CLIP seeded for tests)."""
    from ..clip import ClipConfig, create_clip

    torch.manual_seed(seed)
    clip = create_clip(ClipConfig(model_name=cfg.clip.model_name, pretrained=cfg.clip.pretrained, device="cpu",
                                  templates=cfg.clip.templates))
    emb = clip.text_embeddings(list(class_names)).float().cpu()
    del clip
    return emb


def _param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    bb, other = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (bb if n.startswith(("rgb_backbone.", "x_backbone.")) else other).append(p)
    return [{"params": bb, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": other, "lr": cfg.lr}]


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        return warm * (1.0 - min(step, cfg.steps - 1) / cfg.steps) ** cfg.poly_power
    return f


@dataclass
class TrainResult:
    """What a run produced: per-step global losses (rank 0's view, all ranks agree), evals, paths."""

    out_dir: Path
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    exported: Path | None = None


class Trainer:
    """Holds the run state; :meth:`fit` trains to ``cfg.steps`` (resuming when a checkpoint exists)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.distributed = init_distributed(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.world, self.rank = du.world_size(), du.rank()
        if cfg.batch_size % self.world:
            raise ValueError(f"global batch_size {cfg.batch_size} not divisible by {self.world} processes")
        self.per_rank_batch = cfg.batch_size // self.world
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / "checkpoints" / "last.pt"
        seed_everything(cfg.seed)
        train_r, val_r, self.class_names = build_readers(cfg.data)
        self.text = class_text_embeddings(cfg, self.class_names, cfg.seed).to(self.device)
        seed_everything(cfg.seed)
        self.model = create_model(dict(cfg.model)).to(self.device)
        if self.text.shape[1] != self.model.cfg.embed_dim:
            raise ValueError(f"CLIP {cfg.clip.model_name} embeds in {self.text.shape[1]} dims but the model's "
                             f"embed_dim is {self.model.cfg.embed_dim}; set model.embed_dim to match")
        xm = self.model.cfg.x_modality
        nc = len(self.class_names)
        self.train_set = SegmentationDataset(train_r, nc, xm, cache=cfg.data.cache)
        self.val_set = SegmentationDataset(val_r, nc, xm, cache=cfg.data.cache)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.per_rank_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.train_set)} training samples are fewer than one global batch {cfg.batch_size}")
        self.criterion = SetCriterion(eos_coef=cfg.eos_coef)
        self.optim = torch.optim.AdamW(_param_groups(self.model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, _lr_lambda(cfg))
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        if cfg.resume and self.ckpt_path.is_file():
            self._load(self.ckpt_path)
        self.net: torch.nn.Module = (
            DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed else self.model
        )

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step, model config and weights, optimiser, scheduler, scaler, RNG states."""
        return {
            "step": self.step,
            "model_config": self.model.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optim.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "class_names": list(self.class_names),
            "clip": {"model_name": self.cfg.clip.model_name, "pretrained": self.cfg.clip.pretrained},
            "train_config": self.cfg.to_dict(),
            "class_embeddings": self.text.cpu(),
        }

    def save(self) -> None:
        """Rank 0 writes ``checkpoints/last.pt`` atomically."""
        if not du.is_main():
            return
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.ckpt_path)

    def _load(self, path: Path) -> None:
        st = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(st["model"])
        self.optim.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        random.setstate(st["rng"]["python"])
        self.step = int(st["step"])
        log.info("resumed from %s at step %d", path, self.step)

    # ---- data ----------------------------------------------------------------------------------
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        """This rank's batches of ``epoch``, starting after ``skip_batches`` (deterministic order)."""
        self.sampler.set_epoch(epoch)
        idx = list(self.sampler)
        b = self.per_rank_batch
        batches = [idx[i:i + b] for i in range(0, self.steps_per_epoch * b, b)][skip_batches:]
        return DataLoader(self.train_set, batch_sampler=batches, collate_fn=collate, num_workers=self.cfg.num_workers)

    def _val_batches(self):
        b = max(1, self.per_rank_batch)
        return DataLoader(self.val_set, batch_size=b, shuffle=False, collate_fn=collate,
                          num_workers=self.cfg.num_workers)

    # ---- loop ----------------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        x = batch["x"].to(self.device, non_blocking=True) if batch["x"] is not None else None
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch["targets"]]
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.net(rgb, x, self.text)
        terms = self.criterion(out, targets)
        loss = self.criterion.total(terms)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
        self.optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optim)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optim)
        self.scaler.update()
        self.sched.step()
        vals = torch.stack([loss.detach()] + [terms[k].detach() for k in LOSS_KEYS[1:]])
        vals = du.all_reduce_mean(vals)
        return dict(zip(LOSS_KEYS, vals.tolist()))

    def evaluate(self) -> dict[str, float]:
        """Validation mIoU of the current model (:func:`~movseg_core.training.evaluate.evaluate`)."""
        return evaluate(self.model, self._val_batches(), self.text, len(self.class_names), self.device)

    def _csv(self, name: str, row: dict[str, Any]) -> None:
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def fit(self, until: int | None = None) -> TrainResult:
        """Train to ``cfg.steps``; ``until`` stops (with a checkpoint, no export) after that step, as an
        interruption would (the schedule still spans ``cfg.steps``)."""
        cfg = self.cfg
        stop_at = min(until, cfg.steps) if until is not None else cfg.steps
        res = TrainResult(self.out)
        main = du.is_main()
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            log.info("training %s on %s x%d (global batch %d), %d steps, from step %d", cfg.model, self.device,
                     self.world, cfg.batch_size, cfg.steps, self.step)
        bar = None
        if main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.net.train()
        while self.step < stop_at:
            epoch, skip = divmod(self.step, self.steps_per_epoch)
            for batch in self._loader(epoch, skip):
                t0 = time.perf_counter()
                vals = self._train_step(batch)
                self.step += 1
                dt = time.perf_counter() - t0
                res.steps.append(self.step)
                res.losses.append(vals["loss"])
                if main and (self.step % max(1, cfg.log_every) == 0 or self.step == cfg.steps):
                    self._csv("metrics.csv", {"step": self.step, "epoch": epoch,
                                              **{k: f"{v:.6g}" for k, v in vals.items()},
                                              "lr": f"{self.sched.get_last_lr()[-1]:.6g}", "sec_per_step": f"{dt:.4f}"})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{vals['loss']:.3f}")
                last = self.step == cfg.steps
                if (cfg.eval_every > 0 and self.step % cfg.eval_every == 0) or (last and cfg.eval_every >= 0):
                    if main:
                        ev = self.evaluate()
                        res.evals.append({"step": self.step, **ev})
                        self._csv("eval.csv", {"step": self.step, **{k: f"{v:.6g}" for k, v in ev.items()}})
                        log.info("step %d: %s", self.step, ev)
                    du.barrier()
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last or self.step == stop_at:
                    self.save()
                    du.barrier()
                if self.step >= stop_at:
                    break
        if bar is not None:
            bar.close()
        if main and self.step >= cfg.steps:
            res.exported = export_checkpoint(
                self.model, self.out / "model_final.pt", self.class_names,
                clip={"model_name": cfg.clip.model_name, "pretrained": cfg.clip.pretrained},
                meta={"steps": self.step, "data": cfg.data.kind}, class_embeddings=self.text,
            )
        du.barrier()
        return res


def train(cfg: TrainConfig, until: int | None = None) -> TrainResult:
    """Train (or resume) one run; under torchrun every process calls this. ``until``: see :meth:`Trainer.fit`."""
    return Trainer(cfg).fit(until)


def export_run(run: str | os.PathLike, output: str | os.PathLike, clip_x: str | None = None) -> Path:
    """A training checkpoint (``checkpoints/last.pt`` or its run folder) -> exported checkpoint file."""
    from ..models import MaskFormerConfig, RGBXMaskFormer

    p = Path(run)
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise ValueError(f"no training checkpoint at {p}")
    st = torch.load(p, map_location="cpu", weights_only=False)
    if "model" not in st or "model_config" not in st:
        raise ValueError(f"{p}: not a training checkpoint (needs 'model' and 'model_config')")
    model = RGBXMaskFormer(MaskFormerConfig.from_dict(dict(st["model_config"], pretrained=False)))
    model.load_state_dict(st["model"])
    clip = dict(st.get("clip", {}))
    clip["clip_x"] = clip_x
    return export_checkpoint(model, output, st.get("class_names", []), clip=clip, meta={"steps": st.get("step")},
                             class_embeddings=st.get("class_embeddings"))
