"""tljax.data.loader: grain batches equal the iterators', resume, workers."""

import itertools

import jax
import numpy as np
import pytest

from tljax.data import augment, iterators, loader
from tljax.data.base import ArraySource

# 37 examples, batches of 8: 4 batches per epoch, so 10 steps cross epochs.
SOURCE = ArraySource(
    np.random.default_rng(0).normal(size=(37, 3)).astype(np.float32),
    np.arange(37) % 3,
    num_classes=3,
    name="toy",
)
TARGET = ArraySource(
    np.random.default_rng(1).normal(size=(21, 3)).astype(np.float32),
    np.arange(21) % 3,
    num_classes=3,
    name="toy_target",
)


class Images:
  """Records ``{"image": uint8 (12, 16, 3), "label"}``, as image sources give."""

  def __init__(self, count: int):
    rng = np.random.default_rng(2)
    self.images = rng.integers(0, 256, (count, 12, 16, 3), dtype=np.uint8)

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    return {"image": self.images[index], "label": np.int32(index % 2)}


def add_noise(rng, example):
  """A random per-example transform (picklable: module level)."""
  return {**example, "input": example["input"] + rng.normal(size=3)}


def _assert_same(first, second):
  assert jax.tree.structure(first) == jax.tree.structure(second)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _take(iterator, count):
  with iterator:
    return list(itertools.islice(iterator, count))


def test_same_batches_as_the_iterators():
  _assert_same(
      _take(
          loader.grain_batches(
              SOURCE, batch_size=8, seed=3, start_step=2, with_indices=True
          ),
          10,
      ),
      list(
          itertools.islice(
              iterators.batches(
                  SOURCE,
                  batch_size=8,
                  seed=3,
                  start_step=2,
                  with_indices=True,
              ),
              10,
          )
      ),
  )
  _assert_same(
      _take(
          loader.grain_paired_batches(
              SOURCE, TARGET, batch_size=8, seed=4, target_batch_size=5
          ),
          10,
      ),
      list(
          itertools.islice(
              iterators.paired_batches(
                  SOURCE, TARGET, batch_size=8, seed=4, target_batch_size=5
              ),
              10,
          )
      ),
  )
  _assert_same(
      _take(loader.grain_eval_batches(SOURCE, batch_size=8), 10),
      list(iterators.eval_batches(SOURCE, batch_size=8)),
  )


def test_domain_batches_are_each_streams_batches():
  streams = {
      "source": loader.Stream(SOURCE, 8, seed=1, with_indices=True),
      "target": loader.Stream(TARGET, 5, seed=2),
      "unlabeled": loader.Stream(TARGET, 3, seed=3),
  }
  got = _take(loader.grain_domain_batches(streams, start_step=4), 6)
  for name, stream in streams.items():
    expected = itertools.islice(
        iterators.batches(
            stream.source,
            batch_size=stream.batch_size,
            seed=stream.seed,
            start_step=4,
            with_indices=stream.with_indices,
        ),
        6,
    )
    _assert_same([batch[name] for batch in got], list(expected))


def test_resume_at_step_k_equals_uninterrupted():
  def run(start_step, count):
    return _take(
        loader.grain_paired_batches(
            SOURCE,
            TARGET,
            batch_size=8,
            seed=5,
            start_step=start_step,
            transform=add_noise,
        ),
        count,
    )

  uninterrupted = run(0, 9)
  _assert_same(run(6, 3), uninterrupted[6:])
  # A batch is a pure function of (seed, step): again the same numbers.
  _assert_same(run(0, 9), uninterrupted)
  # The two domains' examples draw from different generators.
  first = uninterrupted[0]
  source_noise = (
      first["source"]["input"]
      - SOURCE.get_batch(iterators.batch_indices(37, 8, seed=5, step=0))[
          "input"
      ]
  )
  target_indices = iterators.batch_indices(
      21, 8, seed=iterators.target_stream_seed(5), step=0
  )
  target_noise = (
      first["target"]["input"] - TARGET.get_batch(target_indices)["input"]
  )
  assert not np.allclose(source_noise, target_noise)
  expected = np.random.default_rng([5, 2, 0, 0]).normal(size=3)
  np.testing.assert_allclose(source_noise[0], expected, rtol=1e-6, atol=1e-6)


def test_image_transform_decodes_and_augments_records():
  records = Images(10)
  transform = loader.ImageTransform(augment.TrainAugment(size=8))
  (batch,) = _take(
      loader.grain_batches(records, batch_size=4, seed=0, transform=transform),
      1,
  )
  assert set(batch) == {"input", "label"}
  assert batch["input"].shape == (4, 8, 8, 3)
  assert batch["input"].dtype == np.uint8
  indices = iterators.batch_indices(10, 4, seed=0, step=0)
  np.testing.assert_array_equal(batch["label"], indices % 2)
  # Example i of step 0 is augmented with the generator example_rng(0, 0, i).
  expected = augment.TrainAugment(size=8)(
      loader.example_rng(0, 0, 1), records.images[indices[1]]
  )
  np.testing.assert_array_equal(batch["input"][1], expected)
  evaluation = loader.ImageTransform(augment.EvalAugment(resize=None, crop=10))
  batches = _take(
      loader.grain_eval_batches(records, batch_size=4, transform=evaluation), 5
  )
  assert [b["mask"].sum() for b in batches] == [4, 4, 2]
  assert batches[0]["input"].shape == (4, 10, 10, 3)


def test_a_worker_process_gives_the_same_batches():
  def run(worker_count):
    return _take(
        loader.grain_paired_batches(
            SOURCE,
            Images(9),
            batch_size=4,
            seed=6,
            start_step=3,
            transform=add_noise,
            target_transform=loader.ImageTransform(
                augment.TrainAugment(size=8, brightness=0.4, hue=0.1),
                output="image",
            ),
            worker_count=worker_count,
        ),
        3,
    )

  _assert_same(run(1), run(0))


def test_prefetch_to_the_device():
  batches = loader.grain_batches(SOURCE, batch_size=8, seed=0)
  with iterators.prefetch(batches, size=2) as on_device:
    first = next(on_device)
  batches.close()
  assert isinstance(first["input"], jax.Array)
  _assert_same(first, next(iterators.batches(SOURCE, batch_size=8, seed=0)))
  assert list(batches) == []  # closed


def not_a_dict(rng, example):
  del rng
  return example["input"]


def ragged(rng, example):
  return {"input": np.zeros(rng.integers(1, 4))}


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: loader.grain_batches(SOURCE, batch_size=0, seed=0),
            "batch_size must be an int >= 1",
        ),
        (
            lambda: loader.grain_batches(SOURCE, batch_size=38, seed=0),
            "batch_size=38 exceeds the 37 examples",
        ),
        (
            lambda: loader.grain_batches(SOURCE, batch_size=4, seed=-1),
            "seed",
        ),
        (
            lambda: loader.grain_batches(
                SOURCE, batch_size=4, seed=0, start_step=-2
            ),
            "start_step",
        ),
        (
            lambda: loader.grain_batches(
                SOURCE, batch_size=4, seed=0, worker_count=-1
            ),
            "worker_count",
        ),
        (
            lambda: loader.grain_batches(
                SOURCE, batch_size=4, seed=0, worker_buffer_size=0
            ),
            "worker_buffer_size",
        ),
        (
            lambda: loader.grain_batches(
                SOURCE, batch_size=4, seed=0, transform="flip"
            ),
            "transform must be None or a callable",
        ),
        (
            lambda: loader.grain_batches(
                SOURCE,
                batch_size=4,
                seed=0,
                transform=lambda rng, example: example,
                worker_count=1,
            ),
            "transform must be picklable for worker_count=1",
        ),
        (
            lambda: loader.grain_batches(object(), batch_size=4, seed=0),
            "source must be a source",
        ),
        (
            lambda: loader.grain_paired_batches(
                SOURCE, [1, 2], batch_size=4, seed=0
            ),
            "target_batch_size=4 exceeds the 2 examples",
        ),
        (
            lambda: loader.grain_paired_batches(
                SOURCE, 3, batch_size=4, seed=0
            ),
            "target must be a source",
        ),
        (
            lambda: loader.grain_eval_batches(SOURCE, batch_size=2.5),
            "batch_size",
        ),
        (
            lambda: loader.grain_domain_batches(
                {"target": loader.Stream(TARGET, 22, seed=0)}
            ),
            r"streams\['target'\].batch_size=22 exceeds the 21 examples",
        ),
        (
            lambda: loader.grain_domain_batches(
                {"target": loader.Stream(TARGET, 2, seed=-3)}
            ),
            r"streams\['target'\].seed",
        ),
        (
            lambda: loader.grain_domain_batches({"target": TARGET}),
            r"streams\['target'\] must be a tljax.data.loader.Stream",
        ),
        (
            lambda: loader.grain_domain_batches({}),
            "streams must be a non-empty",
        ),
        (lambda: loader.ImageTransform("crop"), "augment must be a callable"),
        (
            lambda: loader.ImageTransform(augment.EvalAugment(), decode=3),
            "decode",
        ),
        (
            lambda: loader.ImageTransform(augment.EvalAugment(), keep="label"),
            "keep",
        ),
        (
            lambda: next(
                loader.grain_batches(
                    SOURCE,
                    batch_size=4,
                    seed=0,
                    transform=loader.ImageTransform(augment.EvalAugment()),
                )
            ),
            r"the example has no \['image'\]",
        ),
        (
            lambda: next(
                loader.grain_batches(
                    SOURCE, batch_size=4, seed=0, transform=not_a_dict
                )
            ),
            "transform must return a dict",
        ),
        (
            lambda: next(
                loader.grain_batches(
                    SOURCE, batch_size=8, seed=0, transform=ragged
                )
            ),
            "'input' of different shapes",
        ),
    ],
)
def test_bad_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
