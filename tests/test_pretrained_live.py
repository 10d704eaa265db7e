"""Full-size ResNet-50, ViT-B/16 and torchvision's ResNet-18 against upstream.

Runs only where torch and timm are installed (the ``bench`` extra; skipped
otherwise): timm builds each model with random weights (BatchNorm running
statistics redrawn too), :func:`tljax.models.convert_timm` converts its state
dict, and the logits of both for one 224x224 uint8 image must agree to 1e-5
relative (largest absolute difference over the largest absolute logit) in
float32. torchvision's ResNet-18 and a fixture go through a ``.pth`` file
(:func:`tljax.models.load_torchvision`). The small fixtures of
tests/test_pretrained.py test the conversion without torch.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from tljax import models


def relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _timm():
  """timm, via the fixture script's tolerant import; None without torch."""
  if importlib.util.find_spec("torch") is None:
    return None
  if importlib.util.find_spec("timm") is None:
    return None
  script = os.path.join(
      os.path.dirname(os.path.dirname(__file__)),
      "scripts",
      "make_pretrained_fixtures.py",
  )
  spec = importlib.util.spec_from_file_location("_fixtures_script", script)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.import_timm()


@pytest.mark.parametrize(
    "timm_name, tljax_name",
    [("resnet50", "resnet50"), ("vit_base_patch16_224", "vit_b16")],
)
def test_full_size_against_live_timm(timm_name, tljax_name):
  timm = _timm()
  if timm is None:
    pytest.skip("needs torch and timm (the bench extra)")
  import torch  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  upstream = timm.create_model(timm_name, pretrained=False).eval()
  with torch.no_grad():
    for name, tensor in upstream.state_dict().items():
      if name.endswith("running_var"):
        tensor.uniform_(0.5, 1.5)
      elif name.endswith("running_mean"):
        tensor.normal_(0.0, 0.1)
  arrays = {k: v.numpy() for k, v in upstream.state_dict().items()}
  converted = models.convert_timm(arrays)
  assert converted.model_name == tljax_name
  images = np.random.RandomState(0).randint(0, 256, (1, 224, 224, 3), np.uint8)
  mean = np.float32(converted.input_mean)
  std = np.float32(converted.input_std)
  inputs = (images.astype(np.float32) / np.float32(255.0) - mean) / std
  with torch.no_grad():
    logits = upstream(torch.from_numpy(inputs.transpose(0, 3, 1, 2).copy()))
  outputs, _ = converted.create_model().apply(
      converted.params, converted.model_state, images, train=False
  )
  error = relative_error(outputs.logits, logits.numpy())
  print(timm_name, "relative error", error)
  assert error <= 1e-5


def test_pth_state_dict_of_a_fixture(tmp_path):
  if importlib.util.find_spec("torch") is None:
    pytest.skip("needs torch")
  import torch  # pylint: disable=import-outside-toplevel
  from safetensors.torch import load_file  # pylint: disable=import-outside-toplevel

  fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained")
  state = load_file(os.path.join(fixtures, "resnet_bottleneck.safetensors"))
  path = tmp_path / "resnet.pth"
  torch.save(state, path)
  reference = np.load(os.path.join(fixtures, "resnet_bottleneck.npz"))
  converted = models.load_torchvision(path, image_size=32)
  outputs, _ = converted.create_model().apply(
      converted.params, converted.model_state, reference["images"], train=False
  )
  assert relative_error(outputs.logits, reference["logits"]) <= 1e-5
  torch.save({"model": object()}, tmp_path / "pickle.pth")
  with pytest.raises(ValueError, match="weights_only"):
    models.load_torchvision(tmp_path / "pickle.pth")


def test_torchvision_resnet18_against_live_torchvision(tmp_path):
  if _timm() is None:  # imports torchvision the tolerant way
    pytest.skip("needs torch, torchvision and timm (the bench extra)")
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  upstream = torchvision.models.resnet18(weights=None).eval()
  with torch.no_grad():
    for name, tensor in upstream.state_dict().items():
      if name.endswith("running_var"):
        tensor.uniform_(0.5, 1.5)
      elif name.endswith("running_mean"):
        tensor.normal_(0.0, 0.1)
  torch.save(upstream.state_dict(), tmp_path / "resnet18.pth")
  converted = models.load_torchvision(tmp_path / "resnet18.pth")
  assert converted.model_name == "resnet18"
  images = np.random.RandomState(0).randint(0, 256, (1, 224, 224, 3), np.uint8)
  mean = np.float32(converted.input_mean)
  std = np.float32(converted.input_std)
  inputs = (images.astype(np.float32) / np.float32(255.0) - mean) / std
  with torch.no_grad():
    logits = upstream(torch.from_numpy(inputs.transpose(0, 3, 1, 2).copy()))
  outputs, _ = converted.create_model().apply(
      converted.params, converted.model_state, images, train=False
  )
  error = relative_error(outputs.logits, logits.numpy())
  print("torchvision resnet18 relative error", error)
  assert error <= 1e-5
