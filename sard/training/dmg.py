"""One training step of Discriminative Mask Guidance (DMG): the losses of both networks on a batch.

EDM-style (``training/loss.py``): :class:`DMGLoss` holds the loss weights and the noise schedule, and each of
its two losses is a call on the networks and a batch; the training loop never sees what is inside. The batch
carries its own randomness (:meth:`DMGLoss.micro_batches`), so a step is a pure function of its batch (and,
with ``fake_history``, of the past fakes the trainer keeps and checkpoints: :mod:`sard.training.fake_history`),
and the formulas are in :mod:`sard.training.losses` (docs/METHOD.md, "DMG").

Notation: ``x0`` is the anomalous crop ``x_a`` in ``[-1, 1]``, ``mask`` is 1 where the defect is, ``t`` a
level in ``1..T``, ``x_t`` / ``x_prev`` the noisy pair at levels ``t`` / ``t - 1``, ``x0_hat`` the denoiser's
clean prediction. The background (mask 0) is kept clean in every pair, as the sampler keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import sampling
from . import losses
from .diffaugment import DRAWS_PER_IMAGE, diff_augment
from .fake_history import FakeHistory, Fakes


def real_pair(batch: dict, alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_{t-1}, x_t)`` by forward diffusion of ``x0``, with the background kept clean in both."""
    x0, mask = batch["image"], batch["mask"]
    x_prev, x_t = sampling.q_sample_pair(x0, batch["t"], alphas_cumprod, batch["noise"][0], batch["noise"][1])
    return sampling.blend_known(x_prev, x0, mask), sampling.blend_known(x_t, x0, mask)


def fake_prev(batch: dict, x0_hat: torch.Tensor, x_t: torch.Tensor, alphas_cumprod: torch.Tensor,
              which: int) -> torch.Tensor:
    """The generated ``x_{t-1}``: a posterior sample from ``x0_hat`` inside the mask, ``x0`` outside.
    ``which`` picks the batch's posterior noise (0: the discriminator block, 1: the denoiser block)."""
    noise = batch["posterior_noise"][which]
    x_prev = sampling.posterior_sample(x0_hat, x_t, batch["t"], alphas_cumprod, noise=noise)
    return sampling.blend_known(x_prev, batch["image"], batch["mask"])


REC_WEIGHTINGS = ("flat", "snr")


@dataclass
class DMGLoss:
    """The two losses of a DMG training step.

    What the discriminator judges follows ``view``, the view it was built with
    (:class:`~sard.discriminator.MaskAwareDiscriminator`): DDGAN's pairs ``(x_{t-1}, x_t)``, or the clean
    prediction ``x0_hat`` pasted into the real background against the real crop ``x0``, at the level ``t`` it was
    predicted from.

    Args:
        alphas_cumprod: `(T + 1,)` cumulative products of the noise schedule (``SARDScheduler.alphas_cumprod``),
            on the device of the batches.
        latent_dim: size of the denoiser's latent ``z``.
        lambda_mask: weight of the mask-aware head's adversarial terms.
        lambda_x0: pair view only: weight of the mask-aware head's judgement of the clean prediction at level 0
            (only with ``mask_head``).
        lambda_rec: weight of the masked L1 between ``x0_hat`` and ``x0``.
        mask_head: whether the discriminator has its mask-aware head.
        r1_gamma: weight of the R1 penalty on real inputs (0: none).
        r1_every: lazy R1 (StyleGAN2): the penalty every ``r1_every`` steps, scaled up by as much.
        lambda_adv: weight of the adversarial terms in the denoiser's loss (0: L1 only).
        rec_weighting: ``"flat"``, or ``"snr"``: the L1 at level ``t`` weighted by ``sqrt(abar_t)``, so that where
            ``x_t`` holds almost nothing of the defect (``t >= 3``), the prediction is left to the discriminator
            and may be any plausible defect instead of the blurred mean that L1 asks for.
        lambda_ms: weight of the mode-seeking term (Mao et al. 2019; DFMGAN uses 0.1): two latents on the same
            ``x_t`` should give different fills (0: off).
        ms_target: with ``lambda_ms``: 0, MSGAN's ratio, maximised without bound; > 0, the shortfall of the two
            fills' difference from ``ms_target`` times the real defect's spread inside its mask, minimised
            (:func:`~sard.training.losses.mode_seeking_shortfall`): variety up to the real defects' own, no
            push beyond.
        lambda_hf: weight of the high-frequency gap (:func:`~sard.training.losses.high_frequency_gap`): the
            fill, pasted into the real background, should hold as much fine texture as the real defect (0: off).
        lambda_low: weight of the low-frequency L1 (:func:`~sard.training.losses.low_frequency_loss`), at every
            level alike: with ``rec_weighting="snr"`` the noisiest levels, where a fill's colour and shading are
            decided, are almost free of the L1, and a discriminator that judges texture does not hold them either;
            this holds them to the real defect's (0: off). On bottle, at weight 1, it did not keep the fills' colour
            (docs/dmg_measurements.md, run b4).
        lambda_tone: weight of the tone gap (:func:`~sard.training.losses.tone_gap`, per defect type in the
            batch), at every level alike: a type's fills, pasted into the real background, should be as dark (in
            each channel) as its real defects on average, so that a discriminator judging texture cannot lighten
            the cracks away (0: off).
        view: the discriminator's view, ``"pair"`` or ``"clean"`` (kept here: a DDP-wrapped network has no config).
        augment: clean view only: the DiffAugment transforms (:mod:`~sard.training.diffaugment`) through which the
            discriminator sees real and fake crops in training, e.g. ``("color", "translation")`` (empty: none).
            A real crop and its fake share one draw, so they share the moved mask; the held-out accuracy is
            measured without augmentation.
        lambda_sample: clean view only: weight of the adversarial term on finished samples
            (:meth:`finished_sample`, judged at level 0): the fills the sampler paints, from noise through every
            level with the denoiser's own predictions, which the level terms never show the discriminator (at
            ``t = 1`` they start from the real defect noised; the sampler's ``x_1`` is the denoiser's) (0: off).
        fake_history: clean view only: the size of the history of past fakes the discriminator is also shown
            (:class:`~sard.training.fake_history.FakeHistory`; 0: none). Here it only decides whether
            :meth:`micro_batches` draws the slots read; the history itself is passed to
            :meth:`discriminator_loss`.
    """

    alphas_cumprod: torch.Tensor
    latent_dim: int
    lambda_mask: float = 1.0
    lambda_x0: float = 1.0
    lambda_rec: float = 1.0
    mask_head: bool = True
    r1_gamma: float = 0.05
    r1_every: int = 4
    lambda_adv: float = 1.0
    rec_weighting: str = "flat"
    lambda_ms: float = 0.0
    view: str = "pair"
    lambda_hf: float = 0.0
    augment: tuple[str, ...] = ()
    lambda_low: float = 0.0
    ms_target: float = 0.0
    fake_history: int = 0
    lambda_sample: float = 0.0
    lambda_tone: float = 0.0

    def __post_init__(self):
        used = [name for name in ("augment", "fake_history", "lambda_sample") if getattr(self, name)]
        if used and self.view != "clean":
            # The pair view's x_t would have to move with x_{t-1}, a stored pair would need its x_t, and a
            # finished sample has no x_t.
            raise ValueError(f"{' and '.join(used)} need{'s' if len(used) == 1 else ''} the clean view.")

    @classmethod
    def from_config(cls, config, alphas_cumprod: torch.Tensor) -> DMGLoss:
        """The loss of a :class:`~sard.training.config.TrainConfig`."""
        return cls(alphas_cumprod, config.latent_dim, config.lambda_mask, config.lambda_x0, config.lambda_rec,
                   config.mask_head, config.r1_gamma, config.r1_every, config.lambda_adv, config.rec_weighting,
                   config.lambda_ms, config.disc_view, config.lambda_hf, config.disc_augment_policy(),
                   config.lambda_low, config.ms_target, config.fake_history, config.lambda_sample, config.lambda_tone)

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod) - 1

    def r1_due(self, step: int) -> bool:
        """Whether step ``step`` (from 1) adds the lazy R1 penalty."""
        return self.r1_gamma > 0 and step % self.r1_every == 0

    def micro_batches(self, batch: dict, micro: int, generator: torch.Generator, device) -> list[dict]:
        """Cut a batch into ``micro`` gradient-accumulation micro-batches and draw each one's randomness: levels
        ``t`` in ``1..T``, the forward noises of the real pair, latents ``z`` and posterior noises (one each for
        the discriminator and the denoiser block)."""
        micro_batches = []
        for i in range(micro):
            chunk = {k: v.chunk(micro)[i] for k, v in batch.items()}
            n = chunk["image"].shape[0]
            chunk["t"] = torch.randint(1, self.num_timesteps + 1, (n,), generator=generator)
            chunk["noise"] = torch.randn(2, *chunk["image"].shape, generator=generator)
            chunk["z"] = torch.randn(2, n, self.latent_dim, generator=generator)
            chunk["posterior_noise"] = torch.randn(2, *chunk["image"].shape, generator=generator)
            if self.augment:  # drawn only when used, so that runs without it keep their random streams
                chunk["augment"] = torch.rand(2, n, DRAWS_PER_IMAGE, generator=generator)
            if self.fake_history:  # likewise
                chunk["history"] = torch.rand(n, generator=generator)
            if self.lambda_sample:  # likewise: x_T and one posterior noise per level, for each block
                chunk["chain_noise"] = torch.randn(2, self.num_timesteps + 1, *chunk["image"].shape,
                                                   generator=generator)
            micro_batches.append({k: v.to(device) for k, v in chunk.items()})
        return micro_batches

    def _augmented(self, batch: dict, x: torch.Tensor, which: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, mask)`` as the discriminator sees them in training: through DiffAugment with the batch's draw
        ``which`` (0: the discriminator block, 1: the denoiser block), or as they are."""
        if not self.augment:
            return x, batch["mask"]
        return diff_augment(x, batch["mask"], batch["augment"][which], self.augment)

    def _judge(self, discriminator, batch: dict, fakes: Fakes, which: int, augment: bool):
        """The clean-view discriminator's logits on ``fakes`` (each with its own mask, level and label), through
        DiffAugment with the batch's draw ``which`` when ``augment``. Returns ``(logits, mask)``, the mask as the
        discriminator saw it."""
        image, mask = fakes.image, fakes.mask
        if augment and self.augment:
            image, mask = diff_augment(image, mask, batch["augment"][which], self.augment)
        return discriminator(image, fakes.t, mask, fakes.label), mask

    def _judge_fake(self, discriminator, batch: dict, x0_hat: torch.Tensor, x_t: torch.Tensor, which: int,
                    augment: bool = False):
        """The discriminator's logits on the fake made from ``x0_hat``: the prediction pasted into the real
        background (clean view; through DiffAugment when ``augment``), or the posterior sample ``x_{t-1}``
        drawn from it (pair view). Returns ``(logits, mask)``, the mask as the discriminator saw it."""
        x0, m, t, label = batch["image"], batch["mask"], batch["t"], batch["label"]
        if self.view == "clean":
            return self._judge(discriminator, batch, Fakes(sampling.blend_known(x0_hat, x0, m), m, t, label), which,
                               augment)
        return discriminator(fake_prev(batch, x0_hat, x_t, self.alphas_cumprod, which), t, m, label, x_t=x_t), m

    def finished_sample(self, denoiser, batch: dict, which: int, grad: bool = False) -> torch.Tensor:
        """What the sampler paints into the batch's masks: :func:`~sard.sampling.sample_rcd` over all ``T`` levels
        from noise, with latent and noises ``which`` (0: the discriminator block, 1: the denoiser block), the
        real background outside the mask. With ``grad`` the gradient flows through the last step only: its input
        ``x_1`` is the denoiser's own, as when sampling, at the cost of one step's graph, not ``T``."""
        x0, m, label = batch["image"], batch["mask"], batch["label"]
        known, z, n = x0 * (1.0 - m), batch["z"][which], x0.shape[0]
        noises = iter(batch["chain_noise"][which])

        def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
            with torch.set_grad_enabled(grad and t == 1):
                return denoiser(x_t, torch.full((n,), t, device=x0.device), z, m, known, label)

        levels = sampling.timesteps_for(self.num_timesteps, self.num_timesteps)
        return sampling.sample_rcd(denoise, x0, m, levels, self.alphas_cumprod, lambda: next(noises))

    def _judge_sample(self, discriminator, batch: dict, sample: torch.Tensor, which: int):
        """The discriminator's logits on finished samples (level 0, through DiffAugment with draw ``which``) and
        the mask as it saw them."""
        fakes = Fakes(sample, batch["mask"], torch.zeros_like(batch["t"]), batch["label"])
        return self._judge(discriminator, batch, fakes, which, augment=True)

    @torch.no_grad()
    def accuracy_by_level(self, discriminator, denoiser, batch: dict) -> dict[str, float]:
        """Each head's accuracy on real inputs against the denoiser's fakes at every level ``t = 1..T``: the
        batch (its own randomness drawn by :meth:`micro_batches`) is judged once per level.

        Returns ``{"acc_global_t1": ..., "acc_mask_t1": ..., ...}``; measured on held-out defects, it says
        whether the discriminator tells real from painted where it matters, not how well it remembers the
        training crops.
        """
        out = {}
        for level in range(1, self.num_timesteps + 1):
            at_level = {**batch, "t": torch.full_like(batch["t"], level)}
            x0, m, t, label = at_level["image"], at_level["mask"], at_level["t"], at_level["label"]
            x_prev, x_t = real_pair(at_level, self.alphas_cumprod)
            clean = self.view == "clean"
            real = discriminator(x0 if clean else x_prev, t, m, label, x_t=None if clean else x_t)
            x0_hat = denoiser(x_t, t, at_level["z"][0], m, x0 * (1.0 - m), label)
            fake = self._judge_fake(discriminator, at_level, x0_hat, x_t, 0)[0]
            for name, value in losses.discriminator_accuracy(real, fake, m).items():
                out[f"{name}_t{level}"] = value.item()
        if self.lambda_sample:  # level 0: real defects against finished samples
            x0, m, label = batch["image"], batch["mask"], batch["label"]
            level0 = torch.zeros_like(batch["t"])
            real = discriminator(x0, level0, m, label)
            fake = discriminator(self.finished_sample(denoiser, batch, 0), level0, m, label)
            for name, value in losses.discriminator_accuracy(real, fake, m).items():
                out[f"{name}_t0"] = value.item()
        return out

    def discriminator_loss(self, discriminator, denoiser, batch: dict, r1: bool = False,
                           history: FakeHistory | None = None) -> dict[str, torch.Tensor]:
        """The discriminator block: real inputs against fakes made by the frozen denoiser (with ``history``, part
        of them swapped for past fakes: :meth:`FakeHistory.exchange`), (pair view) the mask-aware head's level-0
        judgement of ``x0_hat``, and R1 when ``r1``. Returns ``"loss"`` and its parts for logging, with each
        head's accuracy on this batch (:func:`~sard.training.losses.discriminator_accuracy`)."""
        x0, m, t, label = batch["image"], batch["mask"], batch["t"], batch["label"]
        x_prev, x_t = real_pair(batch, self.alphas_cumprod)
        clean = self.view == "clean"
        real_input = (x0.detach() if clean else x_prev).requires_grad_(r1)
        seen, seen_mask = self._augmented(batch, real_input, 0)  # the fake below shares this draw
        real = discriminator(seen, t, seen_mask, label, x_t=None if clean else x_t)
        with torch.no_grad():
            x0_hat = denoiser(x_t, t, batch["z"][0], m, x0 * (1.0 - m), label)
        if history is None:
            fake, fake_mask = self._judge_fake(discriminator, batch, x0_hat, x_t, 0, augment=True)
        else:
            judged = history.exchange(Fakes(sampling.blend_known(x0_hat, x0, m), m, t, label), batch["history"])
            fake, fake_mask = self._judge(discriminator, batch, judged, 0, augment=True)
        parts = losses.discriminator_loss(real, fake, seen_mask, self.lambda_mask, fake_mask)
        parts.update(losses.discriminator_accuracy(real, fake, seen_mask, fake_mask))
        loss = parts["loss"]
        if self.lambda_sample:
            # Real defects against finished samples, at level 0 (same augmentation draw, so the same moved mask).
            with torch.no_grad():
                sample = self.finished_sample(denoiser, batch, 0)
            real0 = discriminator(seen, torch.zeros_like(t), seen_mask, label)
            sampled, sample_mask = self._judge_sample(discriminator, batch, sample, 0)
            parts["d_sample"] = losses.discriminator_loss(real0, sampled, seen_mask, self.lambda_mask,
                                                          sample_mask)["loss"]
            accuracy = losses.discriminator_accuracy(real0, sampled, seen_mask, sample_mask)
            parts.update({f"{name}_sample": value for name, value in accuracy.items()})
            loss = loss + parts["d_sample"]
        if not clean and self.lambda_x0 > 0 and self.mask_head:
            # The mask-aware head also judges clean predictions against the real defect (at level 0).
            level0 = torch.zeros_like(t)
            real0 = discriminator(x0, level0, m, label, x_t=x_t)[1]
            fake0 = discriminator(sampling.blend_known(x0_hat, x0, m), level0, m, label, x_t=x_t)[1]
            parts["d_x0"] = losses.mask_head_loss(real0, m, True) + losses.mask_head_loss(fake0, m, False)
            loss = loss + self.lambda_x0 * parts["d_x0"]
        if r1:
            logit_sum = real[0].sum() + (real[1].sum() if real[1] is not None else 0.0)
            parts["r1"] = losses.r1_penalty(logit_sum, real_input)
            # Lazy regularisation: applied every r1_every steps, scaled up by as much (StyleGAN2).
            loss = loss + self.r1_gamma / 2 * self.r1_every * parts["r1"]
        parts["loss"] = loss
        return parts

    def denoiser_loss(self, discriminator, denoiser, batch: dict) -> dict[str, torch.Tensor]:
        """The denoiser block: fool both heads, stay close to the real defect inside the mask and, with
        ``lambda_ms``, give different fills for different latents. Returns ``"loss"`` and its parts for logging."""
        x0, m, t, label = batch["image"], batch["mask"], batch["t"], batch["label"]
        x_t = real_pair(batch, self.alphas_cumprod)[1]
        known = x0 * (1.0 - m)
        x0_hat = denoiser(x_t, t, batch["z"][1], m, known, label)
        loss = x0_hat.new_zeros(())
        parts = {}
        if self.lambda_adv > 0:
            fake, seen_mask = self._judge_fake(discriminator, batch, x0_hat, x_t, 1, augment=True)
            parts = losses.generator_adversarial_loss(fake, seen_mask, self.lambda_mask)
            loss = self.lambda_adv * parts["loss"]
            if self.view == "pair" and self.lambda_x0 > 0 and self.mask_head:
                fake0 = discriminator(sampling.blend_known(x0_hat, x0, m), torch.zeros_like(t), m, label, x_t=x_t)[1]
                parts["g_x0"] = losses.mask_head_loss(fake0, m, True)
                loss = loss + self.lambda_adv * self.lambda_x0 * parts["g_x0"]
        if self.lambda_sample:
            sampled, sample_mask = self._judge_sample(discriminator, batch, self.finished_sample(denoiser, batch, 1,
                                                                                                 grad=True), 1)
            parts["g_sample"] = losses.generator_adversarial_loss(sampled, sample_mask, self.lambda_mask)["loss"]
            loss = loss + self.lambda_sample * parts["g_sample"]
        weight = self.alphas_cumprod[t].sqrt().to(x0.dtype) if self.rec_weighting == "snr" else None
        parts["rec"] = losses.reconstruction_loss(x0_hat, x0, m, weight)
        loss = loss + self.lambda_rec * parts["rec"]
        pasted = sampling.blend_known(x0_hat, x0, m)  # the statistics terms judge the fill in its real background
        if self.lambda_hf > 0:
            parts["hf"] = losses.high_frequency_gap(pasted, x0, m)
            loss = loss + self.lambda_hf * parts["hf"]
        if self.lambda_low > 0:
            parts["low"] = losses.low_frequency_loss(pasted, x0, m)
            loss = loss + self.lambda_low * parts["low"]
        if self.lambda_tone > 0:
            parts["tone"] = losses.tone_gap(pasted, x0, m, label)
            loss = loss + self.lambda_tone * parts["tone"]
        if self.lambda_ms > 0:
            other = denoiser(x_t, t, batch["z"][0], m, known, label)
            parts["ms"] = losses.mode_seeking_ratio(x0_hat, other, batch["z"][1], batch["z"][0], m)
            if self.ms_target > 0:
                parts["ms_gap"] = losses.mode_seeking_shortfall(x0_hat, other, x0, m, self.ms_target)
                loss = loss + self.lambda_ms * parts["ms_gap"]
            else:
                loss = loss - self.lambda_ms * parts["ms"]
        parts["loss"] = loss
        return parts
