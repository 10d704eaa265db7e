#!/usr/bin/env python
"""Writes tests/fixtures/pretrained/: small timm models and their outputs.

Each fixture is a model built with timm's own constructors (random
initialisation, then every floating tensor redrawn, BatchNorm running
statistics included, so no parameter is left at a trivial value), saved as
timm saves it (``<name>.safetensors``, the state dict by timm's names) and
``<name>.npz`` with fixed inputs and timm's outputs in eval mode:

  images    (2, 32, 32, 3) uint8, NHWC (timm gets ``images / 255``
            normalised by the fixture's mean/std, as NCHW float32; tljax's
            Model reads uint8 the same way)
  features  ``forward_head(forward_features(x), pre_logits=True)``, the
            pooled features before the head
  logits    ``model(x)``
  mean, std the input convention the test gives the converter

``vit_augreg.checkpoint.npz`` is a ViT in the original ViT / AugReg ``.npz``
layout (the names of google-research/vision_transformer, which big_vision
also reads), random arrays loaded into a timm ViT by timm's own npz loader
(``vision_transformer._load_weights``); ``vit_augreg.npz`` holds timm's
outputs for it.

``hf_vit.safetensors`` is a Hugging Face transformers
``ViTForImageClassification`` (width 32, 2 layers) as ``save_pretrained``
writes it; ``hf_vit.npz`` its outputs (features: the class token of
``last_hidden_state``, after the final LayerNorm). Needs transformers.

``clip_vision.safetensors`` is a transformers
``CLIPVisionModelWithProjection`` (width 32, 2 layers); ``clip_vision.npz``
its ``pooler_output`` (features) and ``image_embeds`` (the projection of
the features).

tests/test_pretrained.py converts each fixture with tljax.models.load_timm
(load_big_vision for the npz) and requires tljax's outputs to equal these,
without torch. This script
needs torch and timm (the ``bench`` extra) and is never imported by tljax or
the tests:

  python scripts/make_pretrained_fixtures.py [--out tests/fixtures/pretrained]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(_REPO, "tests", "fixtures", "pretrained")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def import_timm():
  """Imports timm, tolerating a torchvision whose C ops do not load.

  timm imports torchvision at module level; a torchvision wheel built for
  another torch (e.g. a CUDA torchvision next to a CPU torch) fails while
  registering its fake ``nms`` kernel. Nothing here uses torchvision's ops, so
  that registration is skipped when it fails.
  """
  import torch  # pylint: disable=import-outside-toplevel

  register_fake = torch.library.register_fake

  def tolerant_register_fake(*args, **kwargs):
    try:
      decorator = register_fake(*args, **kwargs)
    except RuntimeError:
      return lambda function: function

    def apply(function):
      try:
        return decorator(function)
      except RuntimeError:
        return function

    return apply

  torch.library.register_fake = tolerant_register_fake
  try:
    import timm  # pylint: disable=import-outside-toplevel
  finally:
    torch.library.register_fake = register_fake
  return timm


def build_models(timm):
  """``{name: (timm module, mean, std)}``: the fixtures' upstream models."""
  from timm.models.resnet import BasicBlock, Bottleneck, ResNet  # pylint: disable=import-outside-toplevel
  from timm.models.vision_transformer import VisionTransformer  # pylint: disable=import-outside-toplevel

  del timm
  vit = dict(
      num_classes=10,
      img_size=32,
      patch_size=8,
      embed_dim=64,
      depth=2,
      num_heads=4,
      mlp_ratio=2.0,
  )
  half = (0.5, 0.5, 0.5)
  return {
      # ResNet-18's blocks, one per stage, narrow stages (timm's channels).
      "resnet_basic": (
          ResNet(
              BasicBlock, [1, 1, 1, 1], num_classes=10, channels=(4, 8, 16, 32)
          ),
          IMAGENET_MEAN,
          IMAGENET_STD,
      ),
      # ResNet-50's bottleneck blocks (stride on the 3x3), one per stage.
      "resnet_bottleneck": (
          ResNet(
              Bottleneck, [1, 1, 1, 1], num_classes=10, channels=(4, 8, 16, 32)
          ),
          IMAGENET_MEAN,
          IMAGENET_STD,
      ),
      # A 2-block ViT of width 64, patch 8, image 32, class token.
      "vit_token": (VisionTransformer(**vit), half, half),
      # The same with average pooling after the final norm (no fc_norm).
      "vit_gap": (
          VisionTransformer(
              **vit, class_token=False, global_pool="avg", fc_norm=False
          ),
          half,
          half,
      ),
  }


def randomize(module, seed: int):
  """Redraws every floating tensor: N(0, 0.2²), norm scales around 1,
  running variances positive."""
  import torch  # pylint: disable=import-outside-toplevel

  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if not tensor.dtype.is_floating_point:
        continue
      value = torch.randn(tensor.shape, generator=generator) * 0.2
      if name.endswith("running_var"):
        value = value.abs() + 0.5
      elif name.endswith("weight") and tensor.ndim == 1:
        value = value + 1.0  # a BatchNorm or LayerNorm scale, around 1
      tensor.copy_(value)
  return module.eval()


def augreg_arrays(width=32, depth=2, heads=2, mlp=64, patch=8, tokens=16):
  """Random arrays under the original ViT / AugReg names (one cls position)."""
  rng = np.random.RandomState(7)

  def normal(*shape, loc=0.0):
    return (loc + 0.2 * rng.standard_normal(shape)).astype(np.float32)

  arrays = {
      "embedding/kernel": normal(patch, patch, 3, width),
      "embedding/bias": normal(width),
      "cls": normal(1, 1, width),
      "Transformer/posembed_input/pos_embedding": normal(1, 1 + tokens, width),
      "Transformer/encoder_norm/scale": normal(width, loc=1.0),
      "Transformer/encoder_norm/bias": normal(width),
      "head/kernel": normal(width, 10),
      "head/bias": normal(10),
  }
  for index in range(depth):
    block = f"Transformer/encoderblock_{index}"
    for norm in ("LayerNorm_0", "LayerNorm_2"):
      arrays[f"{block}/{norm}/scale"] = normal(width, loc=1.0)
      arrays[f"{block}/{norm}/bias"] = normal(width)
    attention = f"{block}/MultiHeadDotProductAttention_1"
    for name in ("query", "key", "value"):
      arrays[f"{attention}/{name}/kernel"] = normal(
          width, heads, width // heads
      )
      arrays[f"{attention}/{name}/bias"] = normal(heads, width // heads)
    arrays[f"{attention}/out/kernel"] = normal(heads, width // heads, width)
    arrays[f"{attention}/out/bias"] = normal(width)
    arrays[f"{block}/MlpBlock_3/Dense_0/kernel"] = normal(width, mlp)
    arrays[f"{block}/MlpBlock_3/Dense_0/bias"] = normal(mlp)
    arrays[f"{block}/MlpBlock_3/Dense_1/kernel"] = normal(mlp, width)
    arrays[f"{block}/MlpBlock_3/Dense_1/bias"] = normal(width)
  return arrays


def write_augreg(out, images, scaled):
  """The AugReg-layout fixture and timm's outputs for it (timm's npz loader)."""
  import torch  # pylint: disable=import-outside-toplevel
  from timm.models import vision_transformer  # pylint: disable=import-outside-toplevel

  path = os.path.join(out, "vit_augreg.checkpoint.npz")
  np.savez(path, **augreg_arrays())
  model = vision_transformer.VisionTransformer(
      num_classes=10,
      img_size=32,
      patch_size=8,
      embed_dim=32,
      depth=2,
      num_heads=2,
      mlp_ratio=2.0,
  )
  vision_transformer._load_weights(model, path)  # pylint: disable=protected-access
  model.eval()
  inputs = torch.from_numpy(((scaled - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    features = model.forward_head(
        model.forward_features(inputs), pre_logits=True
    )
    logits = model(inputs)
  np.savez(
      os.path.join(out, "vit_augreg.npz"),
      images=images,
      features=features.numpy(),
      logits=logits.numpy(),
      mean=np.full(3, 0.5),
      std=np.full(3, 0.5),
  )
  print("vit_augreg", features.shape, logits.shape)


def write_hugging_face(out, images, scaled):
  """A small transformers ViT, saved by save_pretrained, and its outputs."""
  import shutil  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel

  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  config = transformers.ViTConfig(
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=2,
      intermediate_size=64,
      image_size=32,
      patch_size=8,
      num_labels=10,
  )
  model = randomize(transformers.ViTForImageClassification(config), 11)
  inputs = torch.from_numpy(((scaled - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    features = model.vit(inputs).last_hidden_state[:, 0]
    logits = model(inputs).logits
  with tempfile.TemporaryDirectory() as directory:
    model.save_pretrained(directory)
    shutil.copyfile(
        os.path.join(directory, "model.safetensors"),
        os.path.join(out, "hf_vit.safetensors"),
    )
  np.savez(
      os.path.join(out, "hf_vit.npz"),
      images=images,
      features=features.numpy(),
      logits=logits.numpy(),
      mean=np.full(3, 0.5),
      std=np.full(3, 0.5),
      layer_norm_eps=np.asarray(config.layer_norm_eps),
      transformers_version=np.asarray(transformers.__version__),
  )
  print("hf_vit", features.shape, logits.shape)


def write_clip(out, images, scaled):
  """A small transformers CLIP image tower, saved by save_pretrained."""
  import shutil  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel

  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  config = transformers.CLIPVisionConfig(
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=2,
      num_attention_heads=2,
      image_size=32,
      patch_size=8,
      projection_dim=16,
  )
  model = randomize(transformers.CLIPVisionModelWithProjection(config), 13)
  mean = np.float32((0.48145466, 0.4578275, 0.40821073))
  std = np.float32((0.26862954, 0.26130258, 0.27577711))
  inputs = torch.from_numpy(
      ((scaled - mean) / std).transpose(0, 3, 1, 2).copy()
  )
  with torch.no_grad():
    result = model(pixel_values=inputs)
    features = model.vision_model(pixel_values=inputs).pooler_output
  with tempfile.TemporaryDirectory() as directory:
    model.save_pretrained(directory)
    shutil.copyfile(
        os.path.join(directory, "model.safetensors"),
        os.path.join(out, "clip_vision.safetensors"),
    )
  np.savez(
      os.path.join(out, "clip_vision.npz"),
      images=images,
      features=features.numpy(),
      image_embeds=result.image_embeds.numpy(),
      mean=mean.astype(np.float64),
      std=std.astype(np.float64),
      layer_norm_eps=np.asarray(config.layer_norm_eps),
      hidden_act=np.asarray(config.hidden_act),
      transformers_version=np.asarray(transformers.__version__),
  )
  print("clip_vision", features.shape, result.image_embeds.shape)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=OUT)
  args = parser.parse_args(argv)
  timm = import_timm()
  import torch  # pylint: disable=import-outside-toplevel
  from safetensors.torch import save_file  # pylint: disable=import-outside-toplevel

  os.makedirs(args.out, exist_ok=True)
  images = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3), np.uint8)
  scaled = images.astype(np.float32) / np.float32(255.0)
  for seed, (name, (module, mean, std)) in enumerate(
      build_models(timm).items()
  ):
    torch.manual_seed(seed)
    randomize(module, seed)
    mean32, std32 = np.float32(mean), np.float32(std)
    inputs = torch.from_numpy(
        ((scaled - mean32) / std32).transpose(0, 3, 1, 2).copy()
    )
    with torch.no_grad():
      features = module.forward_head(
          module.forward_features(inputs), pre_logits=True
      )
      logits = module(inputs)
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(state, os.path.join(args.out, f"{name}.safetensors"))
    np.savez(
        os.path.join(args.out, f"{name}.npz"),
        images=images,
        features=features.numpy(),
        logits=logits.numpy(),
        mean=np.asarray(mean, np.float64),
        std=np.asarray(std, np.float64),
        timm_version=np.asarray(timm.__version__),
        torch_version=np.asarray(torch.__version__),
    )
    print(name, features.shape, logits.shape)
  write_augreg(args.out, images, scaled)
  write_hugging_face(args.out, images, scaled)
  write_clip(args.out, images, scaled)
  total = sum(
      os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)
  )
  print(f"{args.out}: {total} bytes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
