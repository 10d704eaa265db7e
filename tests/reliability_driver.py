"""A training run for tests/test_reliability.py to interrupt (not a test module).

Usage: ``python tests/reliability_driver.py WORKDIR DATA_DIR [--step-delay S]
[--hang-saving-step N]``. It trains the run of :func:`driver_config` with
:func:`tljax.train.loop.train_and_evaluate`, printing ``READY`` once the run
is set up. Test-only instruments, none of which changes a computed value:

* ``--step-delay S``: the batch iterator sleeps ``S`` seconds per batch, so
  the steps are slow enough for a signal to land at a random one of them;
* ``--hang-saving-step N``: the checkpoint save of step ``N`` writes every
  file into its temporary directory, creates ``WORKDIR/saving`` and then
  hangs before the rename that completes it, so the test can kill the
  process in the middle of a save.
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import small_config  # noqa: E402  pylint: disable=wrong-import-position


def driver_config(data_dir, **overrides):
  """DANN on an MLP: two data streams, a key per step, SGD momentum and the
  step-dependent reversal coefficient all have to resume exactly."""
  defaults = dict(
      method="dann",
      model__name="mlp",
      model__hidden_dims=(32,),
      steps=40,
      batch_size=16,
      log_every=1,
      checkpoint_every=4,
      keep_checkpoints=2,
      method_kwargs__hidden_dim=16,
  )
  return small_config(data_dir, **{**defaults, **overrides})


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("data_dir")
  parser.add_argument("--step-delay", type=float, default=0.0)
  parser.add_argument("--hang-saving-step", type=int, default=None)
  parser.add_argument("--checkpoint-every", type=int, default=4)
  args = parser.parse_args()

  from tljax.train import loop  # pylint: disable=import-outside-toplevel

  if args.step_delay:
    batches = loop.training_batches

    def slow_batches(*a, **k):
      for batch in batches(*a, **k):
        time.sleep(args.step_delay)
        yield batch

    loop.training_batches = slow_batches

  if args.hang_saving_step is not None:
    from orbax.checkpoint._src.path import atomicity  # pylint: disable=import-outside-toplevel

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def hanging_finalize(self, *a, **k):
      if self.get_final().name == str(args.hang_saving_step):
        with open(
            os.path.join(args.workdir, "saving"), "w", encoding="utf-8"
        ) as stream:
          stream.write(str(self.get()))
        await asyncio.sleep(3600)
      return await finalize(self, *a, **k)

    atomicity.AtomicRenameTemporaryPath.finalize = hanging_finalize

  config = driver_config(args.data_dir, checkpoint_every=args.checkpoint_every)
  domains = loop.load_domains(config)
  print("READY", flush=True)
  loop.train_and_evaluate(
      config, args.workdir, method_name=config.method, domains=domains
  )
  print("DONE", flush=True)


if __name__ == "__main__":
  main()
