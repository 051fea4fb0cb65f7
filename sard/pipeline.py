"""SARDPipeline: paint a defect of a chosen type into a mask on a normal image."""

from __future__ import annotations

import functools
import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from . import cropping, image_io, sampling
from .denoiser import SARDDenoiser
from .grain import match_grain
from .loading import CheckpointError, check_checkpoint
from .sampling import BACKGROUND_MODES
from .scheduler import SARDScheduler

# Pixels per network batch on a CPU. One forward of the default denoiser costs, per image, 529 ms for a
# 256 x 256 crop alone and 849 ms in a batch of 16; 66 ms for a 96 x 72 crop alone, 56 ms in a batch of 4 and
# 79 ms in a batch of 64 (2-core Xeon, bench/README.md): past the caches, bigger batches only cost more.
CPU_BATCH_PIXELS = 2**16


@dataclass
class WorkingCrop:
    """One input after decoding: the user's pixels, the mask, and the crop around it that the network works on
    (see :meth:`SARDPipeline.working_crop`).

    Attributes:
        decoded (`image_io.DecodedImage`): the input's pixels at full resolution and how to give them back.
        mask (`np.ndarray`): `(H, W)` bool, the mask at full resolution.
        box (`cropping.CropBox`): where the crop is in the image, and its size at working scale.
        known (`torch.Tensor`): `(1, 3, h, w)` in [-1, 1], the crop at working scale (RGB).
        work_mask (`torch.Tensor`): `(1, 1, h, w)` in {0, 1}, the mask at working scale.
    """

    decoded: image_io.DecodedImage
    mask: np.ndarray
    box: cropping.CropBox
    known: torch.Tensor
    work_mask: torch.Tensor


@dataclass
class SampledCrop:
    """One image's working crop after sampling and before the paste (:attr:`SARDPipelineOutput.crops`).

    Attributes:
        known (`torch.Tensor`): `(3, h, w)` in [-1, 1], the input's crop at working scale (RGB).
        mask (`torch.Tensor`): `(1, h, w)` in {0, 1}, the mask at working scale.
        sample (`torch.Tensor`): `(3, h, w)` in [-1, 1], the sampled ``x_0``. With the region constraint it
            equals ``known`` outside the mask bit for bit; without it the network changed the whole crop, and
            only the inside of the mask is pasted.
    """

    known: torch.Tensor
    mask: torch.Tensor
    sample: torch.Tensor


@dataclass
class SARDPipelineOutput(ImagePipelineOutput):
    """``images``: one result per input (outside the mask, the input's pixels unchanged); ``crops``: the
    working crops as sampled, before the paste (for measuring what the network did)."""

    crops: list[SampledCrop] | None = None


def _as_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list; pass at least one.")
        return list(value)
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        return list(value)  # a (B, C, H, W) batch
    return [value]


def _device_of(generator: torch.Generator | None) -> torch.device | None:
    """Where a generator draws: a CUDA generator cannot fill a CPU tensor, so its draws are made on its device."""
    return generator.device if generator is not None else None


def _broadcast(values: list, batch_size: int, name: str) -> list:
    if len(values) == batch_size:
        return values
    if len(values) == 1:
        return values * batch_size
    raise ValueError(f"Got {len(values)} {name} for {batch_size} images; pass one, or one per image.")


class SARDPipeline(DiffusionPipeline):
    """Region-constrained few-step diffusion (SARD, Wang et al. 2025) on top of a diffusion-GAN denoiser.

    Only pixels inside the mask are ever updated; everything outside it is returned exactly as given.
    The network runs on a crop around the mask at the model's working resolution, and the result is
    pasted back into the full-resolution image inside the mask.

    Args:
        denoiser ([`SARDDenoiser`]): predicts the clean image from ``x_t``.
        scheduler ([`SARDScheduler`]): the few-step schedule and posterior.
        resolution (`int`, defaults to 256): images are processed with their longer side at most this long,
            as in training.
        crop_size (`int`, defaults to 64): the smallest crop the network sees (the training crop size).
        context (`int`, defaults to 16): pixels of context around the mask's bounding box, at working scale.
        max_crop_size (`int`, defaults to 0): the longest side of a crop at working scale; a mask too large for
            it is painted at a lower scale, so one defect never costs more than a ``max_crop_size`` square while
            small defects keep the working resolution's detail. 0: no bound.
        grain (`bool`, defaults to False): add the photo's own fine texture inside the mask where the painted fill
            is smoother than the real defects of its type are against their surroundings (:mod:`sard.grain`).
            False for models saved before it, so that they paint what they always painted.
        grain_strength (`dict`, *optional*): per defect type, how much finer its real defects are than their
            surroundings (:func:`sard.grain.type_strengths` of the training defects); a type not in it: 1.
    """

    model_cpu_offload_seq = "denoiser"

    def __init__(
        self,
        denoiser: SARDDenoiser,
        scheduler: SARDScheduler,
        resolution: int = 256,
        crop_size: int = 64,
        context: int = 16,
        max_crop_size: int = 0,
        grain: bool = False,
        grain_strength: dict[str, float] | None = None,
    ):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)
        self.register_to_config(resolution=resolution, crop_size=crop_size, context=context,
                                max_crop_size=max_crop_size, grain=grain,
                                grain_strength=dict(grain_strength or {}))

    @property
    def defect_types(self) -> list[str]:
        """The defect types this checkpoint can paint, in label order."""
        return list(self.denoiser.config.defect_types)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> SARDPipeline:
        """Load from a local folder or a Hugging Face Hub id (also offline, from the cache).

        diffusers refuses to download pipelines whose components live outside diffusers, so a hub id is
        first fetched as a snapshot with ``huggingface_hub`` and then loaded as a folder. Weights are only
        ever read from safetensors files; no pickle is loaded.
        """
        path = os.path.expanduser(os.fspath(pretrained_model_name_or_path))
        if not os.path.isdir(path):
            path = cls._download(path, kwargs)
        check_checkpoint(path)
        kwargs["use_safetensors"] = True
        try:
            return super().from_pretrained(path, **kwargs)
        except (OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"Could not load the SARD checkpoint at {path}: {error}") from error

    @staticmethod
    def _download(repo_id: str, kwargs: dict) -> str:
        """Fetch a Hub snapshot (or find it in the cache when offline) and return its folder."""
        if repo_id.startswith((".", "/", "~")) or repo_id.count("/") != 1:
            raise CheckpointError(f"No checkpoint folder at {repo_id!r} (and it is not a Hub id like 'org/name').")
        from huggingface_hub import snapshot_download

        hub_options = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
        options = {key: kwargs.pop(key) for key in hub_options if key in kwargs}
        try:
            return snapshot_download(repo_id, **options)
        except Exception as error:  # offline, unknown repository, no access: all end here
            raise CheckpointError(
                f"{repo_id!r} is not a local folder, and fetching it from the Hugging Face Hub failed "
                f"({type(error).__name__}: {error}). Check the id and your connection; offline "
                "(HF_HUB_OFFLINE=1) only models already in the cache load."
            ) from error

    def check_inputs(self, image, mask_image, defect, num_inference_steps, generator, resolution,
                     max_crop_size=None) -> tuple:
        """Check the arguments of :meth:`__call__` and give one ``(image, mask, defect, generator)`` list each,
        of one entry per image."""
        images = _as_list(image, "images")
        batch_size = len(images)
        masks = _broadcast(_as_list(mask_image, "masks"), batch_size, "masks")
        defects = _broadcast(list(defect) if isinstance(defect, (list, tuple)) else [defect], batch_size, "defects")
        generators = generator if isinstance(generator, list) else [generator] * batch_size
        generators = _broadcast(generators, batch_size, "generators")
        if not all(g is None or isinstance(g, torch.Generator) for g in generators):
            raise ValueError("generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or a list.")
        if num_inference_steps is not None and not isinstance(num_inference_steps, numbers.Integral):
            raise ValueError(f"num_inference_steps must be a whole number of steps, got {num_inference_steps!r}.")
        if resolution is not None and (not isinstance(resolution, numbers.Integral) or resolution < 1):
            raise ValueError(f"resolution must be a positive number of pixels (or None), got {resolution!r}.")
        if max_crop_size is not None and (not isinstance(max_crop_size, numbers.Integral) or max_crop_size < 0):
            raise ValueError(f"max_crop_size must be a number of pixels, 0 (no bound) or None, got {max_crop_size!r}.")
        return images, masks, defects, generators

    def crop_box(self, mask: np.ndarray, resolution: int | None = None,
                 max_crop_size: int | None = None) -> cropping.CropBox:
        """Where the crop around a non-empty `(H, W)` bool mask lies in its image, and its size at working scale
        (see :meth:`working_crop`; ``resolution`` and ``max_crop_size`` default to the model's)."""
        scale = cropping.working_scale(*mask.shape, self.config.resolution if resolution is None else resolution)
        max_crop_size = self.config.max_crop_size if max_crop_size is None else max_crop_size
        return cropping.mask_crop_box(mask, scale, self.config.crop_size, self.config.context,
                                      multiple=self.denoiser.stride, max_size=max_crop_size or None)

    def working_crop(self, image, mask_image, resolution: int | None = None,
                     max_crop_size: int | None = None) -> WorkingCrop:
        """Decode one image and its mask and cut the crop the network works on: the mask's bounding box with
        ``context`` pixels around it, at working scale (longer image side at most ``resolution``, default the
        model's), at least ``crop_size`` and a multiple of the denoiser's stride, its longer side at most
        ``max_crop_size`` (default the model's; 0: no bound)."""
        decoded = image_io.decode_image(image)
        mask = image_io.decode_mask(mask_image, decoded.size)
        if not mask.any():
            raise ValueError(
                "The mask is empty: there is nothing to synthesise. Paint (white) the region for the defect."
            )
        box = self.crop_box(mask, resolution, max_crop_size)
        rows, cols = box.slices
        size = (box.work_height, box.work_width)
        rgb = image_io.to_unit_rgb(decoded.pixels[rows, cols], decoded)
        known = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None] * 2.0 - 1.0
        work_mask = torch.from_numpy(np.ascontiguousarray(mask[rows, cols]))[None, None].float()
        return WorkingCrop(decoded, mask, box, cropping.resize(known, size), cropping.resize_mask(work_mask, size))

    def _label(self, defect: str | None, generator: torch.Generator | None) -> int:
        types = self.defect_types
        if defect is None:
            # One type: that one. Several: draw one with the image's own generator.
            if len(types) == 1:
                return 0
            return int(torch.randint(len(types), (1,), generator=generator, device=_device_of(generator)))
        if defect not in types:
            raise ValueError(f"Unknown defect type {defect!r}; this checkpoint knows: {', '.join(types)}.")
        return types.index(defect)

    def _per_image_noise(self, shapes, generators, padded, device, dtype) -> torch.Tensor:
        """Standard normal noise drawn per image at its own size, then padded: image i's noise does not
        depend on what else is in the batch. Noise from CPU generators is drawn and padded on the CPU and
        moved to ``device`` in one copy (the values are those ``randn_tensor`` draws)."""
        noise = []
        for shape, g in zip(shapes, generators):
            draw = randn_tensor((1, 3, *shape), generator=g, device=g.device if g is not None else device, dtype=dtype)
            noise.append(cropping.pad_to(draw, padded))
        return torch.cat(noise).to(device)

    def _sample_batch(self, crops: list[WorkingCrop], labels, z, generators, padded, sampler) -> torch.Tensor:
        """``sampler`` (:func:`sampling.sample_rcd` with its switches) on crops padded to the same size ``padded``;
        returns their ``x_0`` on the CPU.

        The sampling math runs in float32 (float64 for a float64 denoiser) whatever the denoiser's dtype; only
        the network's inputs are cast, so a bfloat16 denoiser costs no precision in the schedule.
        """
        device, net_dtype = self._execution_device, self.denoiser.dtype
        dtype = torch.promote_types(net_dtype, torch.float32)
        shapes = [tuple(c.known.shape[-2:]) for c in crops]
        known = torch.cat([cropping.pad_to(c.known, padded) for c in crops]).to(device, dtype)
        mask = torch.cat([cropping.pad_to(c.work_mask, padded, mode="constant") for c in crops]).to(device, dtype)
        # The network never sees the original pixels under the mask; its inputs that do not change between
        # steps are cast to its dtype once.
        known_input, net_mask, z = (known * (1.0 - mask)).to(net_dtype), mask.to(net_dtype), z.to(net_dtype)

        def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
            timestep = torch.full((len(crops),), t, device=device)
            return self.denoiser(x_t.to(net_dtype), timestep, z, net_mask, known_input, labels).to(dtype)

        def noise_sampler() -> torch.Tensor:
            return self._per_image_noise(shapes, generators, padded, device, dtype)

        abar = self.scheduler.alphas_cumprod.to(device)
        x_0 = sampler(denoise, known, mask, self.scheduler.timesteps.tolist(), abar, noise_sampler,
                      progress=self.progress_bar)
        return x_0.float().cpu()  # one copy off the GPU per batch, not one per image

    def _sample(self, crops: list[WorkingCrop], labels, z, generators, sampler) -> list[torch.Tensor]:
        """Sample every crop, in batches of crops of the same padded size: GroupNorm and attention see the whole
        padded crop, so image i's result does not depend on the other images in the batch."""
        stride = self.denoiser.stride
        shapes = [tuple(c.known.shape[-2:]) for c in crops]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, shape in enumerate(shapes):
            groups.setdefault(tuple(-(-side // stride) * stride for side in shape), []).append(i)
        samples: list[torch.Tensor | None] = [None] * len(crops)
        for padded, group_index in groups.items():
            # A GPU takes each group whole; on a CPU a batch larger than the caches costs more per image, so
            # CPU batches are cut to about CPU_BATCH_PIXELS pixels.
            on_cpu = self._execution_device.type == "cpu"
            chunk = max(1, CPU_BATCH_PIXELS // (padded[0] * padded[1])) if on_cpu else len(group_index)
            for start in range(0, len(group_index), chunk):
                index = group_index[start : start + chunk]
                x_0 = self._sample_batch([crops[i] for i in index], labels[index], z[index],
                                         [generators[i] for i in index], padded, sampler)
                for row, i in enumerate(index):
                    samples[i] = x_0[row, :, : shapes[i][0], : shapes[i][1]]
        return samples

    def _paste(self, crop: WorkingCrop, sample: torch.Tensor, grain_strength: float | None) -> np.ndarray:
        """Write the sampled crop `(3, h, w)` into a copy of the user's pixels, inside the mask only; with a
        ``grain_strength``, with the surroundings' grain matched first (:func:`~sard.grain.match_grain`).

        The grain is drawn with a generator seeded by where the crop lies, not by the image's seed: it belongs to
        the photo, so seeds vary the defect only (and the fidelity's diversity measures the network's variety)."""
        box = crop.box
        sample = cropping.resize(sample[None].float(), (box.height, box.width))[0]
        rgb = (sample.permute(1, 2, 0).cpu().numpy() + 1.0) / 2.0
        pixels = crop.decoded.pixels.copy()
        rows, cols = box.slices
        inside = crop.mask[rows, cols]
        region = pixels[rows, cols]  # a view: writes go into ``pixels``
        if grain_strength is not None:
            rng = np.random.default_rng([box.top, box.left, box.bottom, box.right])
            rgb = match_grain(rgb, image_io.to_unit_rgb(region, crop.decoded), inside, rng, grain_strength)
        if crop.decoded.color_channels == 3 and image_io.is_grayscale(region):
            # A grayscale photo stored as RGB stays grayscale: the defect is painted in luminance only.
            rgb = image_io.to_gray_rgb(rgb)
        synthesized = image_io.from_unit_rgb(rgb, crop.decoded)
        region[inside, : crop.decoded.color_channels] = synthesized[inside]
        return pixels

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask_image,
        defect: str | list[str] | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        resolution: int | None = None,
        max_crop_size: int | None = None,
        background: str = "clean",
        region_constraint: bool = True,
        grain: bool | None = None,
    ) -> SARDPipelineOutput | tuple:
        r"""Paint a defect into each mask.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, path, or a list of them): the normal
                image(s). PIL images of any mode; arrays `(H, W[, C])` and tensors `(C, H, W)` of uint8,
                uint16 or floats in [0, 1]; a `(B, C, H, W)` tensor is a batch. Any size.
            mask_image (same types, or a list): 1 / white = paint a defect here, binarised at 0.5; resized
                (nearest) to its image when sizes differ. One mask for all images, or one per image.
            defect (`str` or `list[str]`, *optional*): the defect type, one of :attr:`defect_types`, or one
                per image. None: the only type, or a type drawn with each image's generator.
            num_inference_steps (`int`, *optional*): reverse steps, from 1 to the model's ``T`` (default ``T``).
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): one generator for all, or
                one per image so that image i's result depends only on its own seed.
            output_type (`str`, defaults to `"pil"`): `"pil"` keeps the input's mode (palette images come
                back RGB); `"np"` and `"pt"` keep the input's dtype and layout.
            return_dict (`bool`, defaults to True): return a `SARDPipelineOutput` instead of a tuple
                ``(images,)``.
            resolution (`int`, *optional*): working resolution, defaults to the model's.
            max_crop_size (`int`, *optional*): the longest side of a crop at working scale, defaults to the
                model's; 0: no bound (large masks painted at the working resolution, at a higher cost).
            background (`str`, defaults to `"clean"`): what the network sees outside the mask at each step,
                the clean image (SARD) or the image re-noised to the step's level (RePaint; an ablation).
            region_constraint (`bool`, defaults to True): update only the mask at every step (RCD). False
                lets the network update the whole crop and pastes inside the mask only at the end (an
                ablation: what inpainting pipelines without RCD do).
            grain (`bool`, *optional*): match the surroundings' fine texture inside the mask after painting
                (:mod:`sard.grain`); defaults to the model's ``grain``. The crops in ``crops`` are before it.

        Returns:
            [`SARDPipelineOutput`] (an `ImagePipelineOutput`) whose ``images`` is a list with one result per
            input, outside the mask the input's pixels unchanged, and whose ``crops`` are the working crops as
            sampled, before the paste.

        Examples:
            ```py
            >>> import sard
            >>> from PIL import Image
            >>> pipe = sard.SARDPipeline.from_pretrained(sard.DEFAULT_CHECKPOINT)
            >>> image = Image.open("tile.png")
            >>> mask = Image.new("L", image.size)  # paint the defect region white
            >>> result = pipe(image, mask, defect="crack").images[0]
            ```
        """
        # 1. Check the arguments: one mask, defect type and generator per image; the sampler with its switches.
        images, masks, defects, generators = self.check_inputs(
            image, mask_image, defect, num_inference_steps, generator, resolution, max_crop_size
        )
        if background not in BACKGROUND_MODES:
            raise ValueError(f"background must be one of {BACKGROUND_MODES}, got {background!r}.")
        sampler = functools.partial(sampling.sample_rcd, background=background, region_constraint=region_constraint)
        # Looked up once: diffusers' ``_execution_device`` walks every module (milliseconds per lookup).
        device = self._execution_device

        # 2. Decode each image and its mask, and cut the working crop around the mask.
        crops = [self.working_crop(im, m, resolution, max_crop_size) for im, m in zip(images, masks)]

        # 3. The conditions: each image's defect label and latent z, drawn with its own generator.
        labels = torch.tensor([self._label(d, g) for d, g in zip(defects, generators)], device=device)
        latent_dim = self.denoiser.config.latent_dim
        z = [randn_tensor((1, latent_dim), generator=g, device=_device_of(g)) for g in generators]
        z = torch.cat([draw.to(device) for draw in z])

        # 4. Region-constrained diffusion (sampling.sample_rcd) on the crops.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        samples = self._sample(crops, labels, z, generators, sampler)

        # 5. Paste each sample back into its full-resolution image, inside the mask only (with the grain of its
        # surroundings).
        grain = self.config.grain if grain is None else grain
        strengths = self.config.grain_strength or {}
        grain_strengths = [strengths.get(self.defect_types[int(label)], 1.0) if grain else None for label in labels]
        results = [image_io.encode_image(self._paste(c, x, s), c.decoded, output_type)
                   for c, x, s in zip(crops, samples, grain_strengths)]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (results,)
        sampled = [SampledCrop(c.known[0], c.work_mask[0], x) for c, x in zip(crops, samples)]
        return SARDPipelineOutput(images=results, crops=sampled)

    def sample_crops(self, image, mask_image, **kwargs) -> list[SampledCrop]:
        r"""The working crops as sampled, before the paste: :attr:`SARDPipelineOutput.crops` of
        :meth:`__call__`, which takes the same arguments (the same seeds give the same crops).

        Returns:
            `list[SampledCrop]`: one per input, at the working scale of the crop around its mask.
        """
        return self(image, mask_image, output_type="np", **kwargs).crops
