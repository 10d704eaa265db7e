"""How LeNet's convolutions are computed: ``conv_impl="matmul"`` on CPU.

The arithmetic behind :class:`tljax.models.lenet.LeNetBackbone`'s
convolution → ReLU → 2×2 max-pool stages: :func:`dense_conv_same` (a map of
at most :data:`DENSE_MAX_PIXELS` pixels times the convolution's dense
matrix), :func:`conv_relu_pool_stages` (the stages on larger maps, in blocks
of the batch, with a VJP of their own) and :func:`max_pool_2x2`.

The two values of the backbone's ``conv_impl``, on the same ``nnx.Conv``
parameters (kernel ``(5, 5, C_in, C_out)`` HWIO, bias):

* ``"matmul"`` (default), tuned for CPU, where XLA's convolutions at these
  shapes are slow:

  - A feature map of at most 64 pixels (both convolutions on tljax's 8×8
    digits: 8×8 and 4×4) is multiplied by the convolution's dense
    ``(H·W·C_in, H·W·C_out)`` matrix, assembled from the kernel by a
    constant 0/1 tap selector. It costs ``H·W / 25`` times the multiply-adds
    of the convolution (at most 2.56×, on a layer that is small at that
    size) but needs no unfolding, and at 4×4 more than half the 5×5 taps
    fall on the 'SAME' padding anyway. Autodiff gives its gradients.
  - The leading conv → ReLU → 2×2 max-pool stages on larger maps (both
    stages at 28×28 and 32×32, the first at 11×9) run together, in blocks
    of the batch, with a VJP of their own. Forward, per block: the
    convolution (an im2col matrix product, patches of 25 shifted slices
    times the ``(25·C_in, C_out)`` kernel, when a patch has at least 128
    numbers, as in ``conv2``; XLA's convolution for a thin layer such as
    ``conv1``, where the product would be mostly patch copying), the bias,
    ReLU and pooling. Only the pooled maps are kept, with a one-byte tie
    code per pooled value: which inputs of its 2×2 block hold the maximum,
    and none if the maximum is not positive. Backward, one loop over blocks
    of 8 images, last stage first: the pre-activation gradient from the tie
    codes, the kernel gradient (transposed im2col patches times that
    gradient), the bias gradient, and the input gradient
    ``col2im(gradient · kernelᵀ)``, which is the previous stage's pooled
    gradient (XLA drops the first stage's when nothing uses it).

  Both give the convolution exactly, up to the order of floating-point
  summation, and the gradients of ``"xla"`` below, including where pooling
  inputs tie.
* ``"xla"``: ``lax.conv_general_dilated`` (what ``nnx.Conv`` calls), then
  ReLU and pooling, differentiated by autodiff.

Why the blocks (profile of the DANN training step at 28×28, 64+64 images, on
2 CPU cores; ``scripts/benchmark.py``, section ``dann``). The previous
``"matmul"`` unfolded each convolution's input for the whole batch (conv2's
patches: 128×196×500 floats, 50 MB) and left the gradients to autodiff.
FLOPs were not the limit (the matrix products ran near the CPU's peak):

* XLA allocates a step's temporaries as one buffer, 45 MiB at 64+64 and
  150 MiB at 256+256. Above glibc's 32 MiB ``mmap`` threshold it is fresh,
  unmapped memory at every step: 11,600 (38,000–138,000 at 256+256) page
  faults per step, about a fifth of the step's CPU time spent in the kernel
  zeroing pages. The blocked stages keep only the pooled maps and tie codes
  between forward and backward, and one block's patches at a time: 21 MiB
  of temporaries at 64+64 (no page faults), 33 MiB at 256+256.
* Building the patches of the whole batch (a concatenation of 25 slices
  along the channel axis) took longer than the product itself; per block
  they stay in cache, and the kernel gradient reads patches built
  transposed, channel-major (copies of image rows rather than of 20
  channels, and no transposition before the product).
* XLA's convolution runs on one core, and its kernel-gradient convolution
  (with the batch as the contracted dimension) took 0.56 s at batch 512,
  20 times its time at batch 128. Its transposed convolution inside a loop
  is slower still, so the input gradient is a matrix product and col2im.
* The gradient of pooling by autodiff (a float mask of the ties saved from
  the forward pass, then reductions over the 2×2 blocks) is replaced by the
  one-byte tie codes.

Measured (``python scripts/benchmark.py --sections dann``, 2 CPU cores, no
GPU; steps/s of the whole DANN training step, medians of 3 rounds): on
8×8 digits at 64+64 images, 134 steps/s with ``"matmul"`` against 36 with
``"xla"`` (75 for PyTorch eager in the same run); at 28×28, 14.6 against
10.1 at 64+64 and 3.5 against 1.1 at 256+256 (the previous ``"matmul"``:
about 0.74 times PyTorch eager at 28×28; now 0.95–0.97 times, so still a
little behind there). Forward and backward of the model alone at 128
images: 17 and 52 ms with ``"matmul"``, 15 and 109 ms with ``"xla"``. Never
measured on a GPU, where ``"xla"`` (cuDNN) is the natural choice.

Max pooling takes the maximum of each 2×2 block, as ``nnx.max_pool`` with a
2×2 'VALID' window; it differs in the gradient only where two inputs of a
block tie for the maximum (the block's gradient is split equally between
them, as the VJP of ``max`` over the reshaped block gives it;
``reduce_window`` gives it to one). After a ReLU a tie is, but for
probability zero, a block of zeros, where the ReLU's gradient is zero
anyway, or a blank image region, where all inputs equal the bias.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Maps up to this many pixels use the dense matrix (module docstring).
DENSE_MAX_PIXELS = 64


def _same_padding(size: int) -> tuple[int, int]:
  """'SAME' padding of a stride-1 window of ``size`` (as XLA pads)."""
  return (size - 1) // 2, size - 1 - (size - 1) // 2


def _tap_selector(height: int, width: int, kh: int, kw: int) -> np.ndarray:
  """0/1 array ``(H·W · H·W, kh·kw)``: input pixel p feeds output q through tap t.

  Row ``p · H·W + q`` has a one at tap ``t = i·kw + j`` when input pixel
  ``p`` is at offset ``(i, j)`` of the 'SAME'-padded window of output pixel
  ``q``; rows of pairs that no tap connects are zero.
  """
  top, left = _same_padding(kh)[0], _same_padding(kw)[0]
  pixels = height * width
  selector = np.zeros((pixels, pixels, kh * kw), np.float32)
  rows, cols = np.divmod(np.arange(pixels), width)
  for i in range(kh):
    for j in range(kw):
      source_rows, source_cols = rows + i - top, cols + j - left
      valid = (
          (source_rows >= 0)
          & (source_rows < height)
          & (source_cols >= 0)
          & (source_cols < width)
      )
      selector[
          source_rows[valid] * width + source_cols[valid],
          np.arange(pixels)[valid],
          i * kw + j,
      ] = 1.0
  return selector.reshape(pixels * pixels, kh * kw)


def dense_conv_same(conv: nnx.Conv, inputs: jax.Array) -> jax.Array:
  """``conv(inputs)`` (stride 1, 'SAME') as one product with its dense matrix."""
  kernel, bias = conv.kernel[...], conv.bias[...]
  dtype = conv.dtype or jnp.result_type(inputs, kernel)
  inputs, kernel, bias = (
      inputs.astype(dtype),
      kernel.astype(dtype),
      bias.astype(dtype),
  )
  kh, kw, in_features, out_features = kernel.shape
  batch, height, width, _ = inputs.shape
  pixels = height * width
  # Dense (H·W·C_in, H·W·C_out) matrix of the convolution: each entry is one
  # kernel weight or zero, so building it is exact in any dtype.
  selector = jnp.asarray(_tap_selector(height, width, kh, kw), dtype)
  dense = selector @ kernel.reshape(kh * kw, in_features * out_features)
  dense = dense.reshape(pixels, pixels, in_features, out_features)
  dense = dense.transpose(0, 2, 1, 3).reshape(
      pixels * in_features, pixels * out_features
  )
  outputs = jnp.dot(
      inputs.reshape(batch, pixels * in_features),
      dense,
      precision=conv.precision,
  )
  return outputs.reshape(batch, height, width, out_features) + bias


def max_pool_2x2(inputs: jax.Array) -> jax.Array:
  """2×2 max pooling, stride 2, 'VALID' (odd trailing rows/columns dropped)."""
  batch, height, width, channels = inputs.shape
  inputs = inputs[:, : height // 2 * 2, : width // 2 * 2]
  return inputs.reshape(batch, height // 2, 2, width // 2, 2, channels).max(
      axis=(2, 4)
  )


# --- conv → ReLU → max pool stages on maps above DENSE_MAX_PIXELS ----------
# (module docstring, "matmul" on larger maps)

# Images per block of the loops over the batch: XLA's convolution in the
# forward pass of a thin layer, the matrix products everywhere else (their
# im2col patches are then ~3 MB, which stays in cache).
_XLA_BLOCK = 32
_MATMUL_BLOCK = 8
# From this patch width (kh·kw·C_in) on, the forward pass is an im2col matrix
# product, which XLA runs on all cores; below it XLA's convolution, which
# runs on one core but needs no patches, is faster.
_MIN_IM2COL_PATCH = 128
# Bit of the tie code for input (i, j) of a 2×2 pooling block.
_TIE_BITS = np.array([[1, 2], [4, 8]], np.uint8).reshape(1, 1, 2, 1, 2, 1)


def _over_blocks(function, block: int, *arrays):
  """``function`` on blocks of ``block`` examples, one block at a time.

  ``function(*block_arrays)`` returns ``(summed, mapped)``, two pytrees:
  ``summed`` is added up over the blocks, ``mapped`` (batch first) is
  concatenated along the batch axis. ``arrays`` are pytrees of arrays with
  the batch first. The full blocks run in a ``lax.scan``, so the
  temporaries are those of one block; a remainder runs after it.
  """
  leaves, treedef = jax.tree.flatten(arrays)
  batch = leaves[0].shape[0]
  blocks = batch // block

  def call(block_leaves):
    return function(*jax.tree.unflatten(treedef, block_leaves))

  if blocks <= 1:
    return call(leaves)
  full = [
      leaf[: blocks * block].reshape(blocks, block, *leaf.shape[1:])
      for leaf in leaves
  ]
  summed_shapes, _ = jax.eval_shape(call, [leaf[0] for leaf in full])

  def add_block(total, block_leaves):
    summed, mapped = call(block_leaves)
    return jax.tree.map(jnp.add, total, summed), mapped

  summed, mapped = jax.lax.scan(
      add_block,
      jax.tree.map(
          lambda shape: jnp.zeros(shape.shape, shape.dtype), summed_shapes
      ),
      full,
  )
  mapped = jax.tree.map(
      lambda output: output.reshape(blocks * block, *output.shape[2:]), mapped
  )
  if blocks * block < batch:
    rest_summed, rest_mapped = call([leaf[blocks * block :] for leaf in leaves])
    summed = jax.tree.map(jnp.add, summed, rest_summed)
    mapped = jax.tree.map(
        lambda output, rest: jnp.concatenate([output, rest]),
        mapped,
        rest_mapped,
    )
  return summed, mapped


def _xla_conv_same(
    inputs: jax.Array, kernel: jax.Array, precision
) -> jax.Array:
  """Stride-1 'SAME' NHWC × HWIO convolution by XLA (as ``nnx.Conv``)."""
  return jax.lax.conv_general_dilated(
      inputs,
      kernel,
      (1, 1),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=precision,
  )


def _patches(inputs: jax.Array, kh: int, kw: int) -> jax.Array:
  """im2col: ``(B, H, W, kh·kw·C)``, tap ``(i, j)`` at ``[(i·kw + j)·C:]``."""
  _, height, width, _ = inputs.shape
  padded = jnp.pad(
      inputs, ((0, 0), _same_padding(kh), _same_padding(kw), (0, 0))
  )
  return jnp.concatenate(
      [
          padded[:, i : i + height, j : j + width, :]
          for i in range(kh)
          for j in range(kw)
      ],
      axis=-1,
  )


def _transposed_patches(inputs: jax.Array, kh: int, kw: int) -> jax.Array:
  """im2col, transposed: ``(kh·kw·C, B·H·W)``, rows in HWI order.

  Built from the channel-major input, each tap is a copy of rows of ``W``
  pixels (instead of runs of ``C`` numbers), and its product with the
  ``(B·H·W, C_out)`` output gradient is the kernel gradient without a
  transposition.
  """
  batch, height, width, channels = inputs.shape
  padded = jnp.pad(
      inputs.transpose(3, 0, 1, 2),
      ((0, 0), (0, 0), _same_padding(kh), _same_padding(kw)),
  )
  taps = jnp.stack(
      [
          padded[:, :, i : i + height, j : j + width]
          for i in range(kh)
          for j in range(kw)
      ]
  )
  return taps.reshape(kh * kw * channels, batch * height * width)


def _col2im(patch_grads: jax.Array, kh: int, kw: int) -> jax.Array:
  """Transpose of :func:`_patches`: ``(B, H, W, kh·kw·C)`` → ``(B, H, W, C)``.

  Adds each tap's gradient back at its offset in the padded input.
  """
  _, height, width, taps_channels = patch_grads.shape
  channels = taps_channels // (kh * kw)
  total = 0
  for i in range(kh):
    for j in range(kw):
      tap = (i * kw + j) * channels
      total = total + jnp.pad(
          patch_grads[..., tap : tap + channels],
          ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)),
      )
  top, left = _same_padding(kh)[0], _same_padding(kw)[0]
  return total[:, top : top + height, left : left + width]


def _relu_max_pool_with_ties(outputs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``max_pool_2x2(relu(outputs))`` and the uint8 tie code of each block.

  Bit ``2·i + j`` of the code is set when input ``(i, j)`` of the 2×2 block
  equals the block's maximum and that maximum is positive; the code is zero
  where the ReLU passes no gradient. (Written with the four strided inputs
  of each block, which XLA fuses into one loop; a reduction over the
  reshaped block is several times slower on CPU.)
  """
  batch, height, width, channels = outputs.shape
  blocks = outputs[:, : height // 2 * 2, : width // 2 * 2].reshape(
      batch, height // 2, 2, width // 2, 2, channels
  )
  corners = [blocks[:, :, i, :, j, :] for i in (0, 1) for j in (0, 1)]
  maximum = jnp.maximum(
      jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3])
  )
  positive = maximum > 0
  code = sum(
      jnp.where((corner == maximum) & positive, np.uint8(1 << bit), np.uint8(0))
      for bit, corner in enumerate(corners)
  )
  return jnp.maximum(maximum, 0), code


def _relu_max_pool_grad(
    code: jax.Array, pooled_grad: jax.Array, height: int, width: int
) -> jax.Array:
  """Gradient of ``max_pool_2x2(relu(·))`` at ``(B, height, width, C)``.

  Each block's gradient goes in equal shares to the inputs that attain its
  maximum, as the VJP of ``max`` over the reshaped block gives it, and
  nowhere when the maximum is not positive (the ReLU's gradient is zero
  there).
  """
  batch, pooled_height, pooled_width, channels = pooled_grad.shape
  ties = sum((code >> bit) & 1 for bit in range(4)).astype(pooled_grad.dtype)
  share = pooled_grad / jnp.maximum(ties, 1)
  hits = (code[:, :, None, :, None, :] & jnp.asarray(_TIE_BITS)) != 0
  grad = jnp.where(hits, share[:, :, None, :, None, :], 0).reshape(
      batch, 2 * pooled_height, 2 * pooled_width, channels
  )
  return jnp.pad(
      grad,
      (
          (0, 0),
          (0, height - 2 * pooled_height),
          (0, width - 2 * pooled_width),
          (0, 0),
      ),
  )


def _stage_forward(inputs, kernel, bias, precision):
  """One stage's pooled output and tie codes, in blocks of the batch."""
  kh, kw, in_features, out_features = kernel.shape
  if kh * kw * in_features < _MIN_IM2COL_PATCH:
    block = _XLA_BLOCK

    def outputs(inputs):
      return _xla_conv_same(inputs, kernel, precision) + bias

  else:
    block = _MATMUL_BLOCK
    kernel_matrix = kernel.reshape(kh * kw * in_features, out_features)

    def outputs(inputs):
      return (
          jnp.dot(_patches(inputs, kh, kw), kernel_matrix, precision=precision)
          + bias
      )

  _, (pooled, code) = _over_blocks(
      lambda inputs: ((), _relu_max_pool_with_ties(outputs(inputs))),
      block,
      inputs,
  )
  return pooled, code


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_relu_pool_stages(
    inputs: jax.Array, kernels, biases, precisions
) -> jax.Array:
  """Stages ``x ↦ max_pool_2x2(relu(conv(x, kernel) + bias))`` in sequence.

  'SAME' stride-1 convolutions with HWIO kernels, computed in blocks of the
  batch and differentiated by :func:`_conv_relu_pool_stages_bwd` (module
  docstring).
  """
  for kernel, bias, precision in zip(kernels, biases, precisions):
    inputs, _ = _stage_forward(inputs, kernel, bias, precision)
  return inputs


def _conv_relu_pool_stages_fwd(inputs, kernels, biases, precisions):
  stage_inputs, codes = [], []
  for kernel, bias, precision in zip(kernels, biases, precisions):
    stage_inputs.append(inputs)
    inputs, code = _stage_forward(inputs, kernel, bias, precision)
    codes.append(code)
  return inputs, (tuple(stage_inputs), kernels, tuple(codes))


def _conv_relu_pool_stages_bwd(precisions, residuals, pooled_grad):
  """All the stages' gradients, one block of the batch at a time.

  Per block and stage, last to first: the output gradient from the tie
  codes, the kernel gradient ``transposed_patchesᵀ · output_grad``, the bias
  gradient, and the input gradient ``col2im(output_grad · kernelᵀ)``, which
  is the next stage's pooled gradient. The first stage's input gradient is a
  mapped output of the loop, which XLA drops when it is unused.
  """
  stage_inputs, kernels, codes = residuals
  accumulator = jnp.promote_types(pooled_grad.dtype, jnp.float32)

  def block_grads(stage_inputs, codes, pooled_grad):
    kernel_grads, bias_grads = [], []
    grad = pooled_grad
    for inputs, kernel, code, precision in reversed(
        list(zip(stage_inputs, kernels, codes, precisions))
    ):
      kh, kw, in_features, out_features = kernel.shape
      output_grad = _relu_max_pool_grad(code, grad, *inputs.shape[1:3])
      output_grad = output_grad.reshape(-1, out_features)
      kernel_grads.insert(
          0,
          jnp.dot(
              _transposed_patches(inputs, kh, kw),
              output_grad,
              precision=precision,
              preferred_element_type=accumulator,
          ).reshape(kernel.shape),
      )
      bias_grads.insert(0, jnp.sum(output_grad, axis=0, dtype=accumulator))
      patch_grads = jnp.dot(
          output_grad,
          kernel.reshape(kh * kw * in_features, out_features).T,
          precision=precision,
          preferred_element_type=accumulator,
      )
      grad = _col2im(patch_grads.reshape(*inputs.shape[:3], -1), kh, kw).astype(
          inputs.dtype
      )
    return (tuple(kernel_grads), tuple(bias_grads)), grad

  (kernel_grads, bias_grads), input_grad = _over_blocks(
      block_grads, _MATMUL_BLOCK, stage_inputs, codes, pooled_grad
  )
  return (
      input_grad,
      tuple(
          grad.astype(kernel.dtype)
          for grad, kernel in zip(kernel_grads, kernels)
      ),
      tuple(
          grad.astype(kernel.dtype) for grad, kernel in zip(bias_grads, kernels)
      ),
  )


conv_relu_pool_stages.defvjp(
    _conv_relu_pool_stages_fwd, _conv_relu_pool_stages_bwd
)
