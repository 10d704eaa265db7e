"""A recipe registered outside tljax/ trains from the CLI and sweeps its traced hyper-parameter."""

import json

import jax
import jax.numpy as jnp
import optax
import pytest

from tljax import cli
from tljax.methods import Method, register_method, method_settings
from tljax.train.sweep import run_sweep

from configs import moons

NAME = "plugin_entropy"


@register_method(NAME, defaults=dict(weight=0.5, temperature=1.0))
def build_plugin(config, model, *, weight, temperature) -> Method:
  """Source cross-entropy + weight · the entropy of the target predictions."""
  del config

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    source, target = batch["source"], batch["target"]
    inputs = jnp.concatenate([source["input"], target["input"]])
    outputs, model_state = model.apply(
        params, model_state, inputs, train=True, key=key
    )
    logits = outputs.logits.astype(jnp.float32) / temperature
    count = source["input"].shape[0]
    loss = jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(
            logits[:count], source["label"]
        )
    )
    probabilities = jax.nn.softmax(logits[count:])
    entropy = -jnp.mean(
        jnp.sum(probabilities * jnp.log(probabilities + 1e-9), -1)
    )
    return loss + hparams["weight"] * entropy, (
        model_state,
        {"entropy": entropy, "weight": hparams["weight"]},
    )

  return Method(
      name=NAME,
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"weight": weight},
  )


def tiny(workdir):
  return [
      "--config",
      f"configs/moons.py:method={NAME},seeds=1",
      "--set",
      "steps=4",
      "--set",
      "batch_size=32",
      "--set",
      "log_every=2",
      "--set",
      "checkpoint_every=4",
      "--set",
      "progress_bar=false",
      "--set",
      "baselines=()",
      "--workdir",
      str(workdir),
  ]


def test_trains_from_the_cli_with_its_settings(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path.parent)  # configs resolve among the packaged ones
  workdir = tmp_path / "run"
  assert (
      cli.main(
          [
              "train",
              *tiny(workdir),
              "--set",
              "method_kwargs.weight=0.25",
              "--noreport",
          ]
      )
      == 0
  )
  results = json.loads((workdir / "results.json").read_text())
  assert [row["method"] for row in results["table"]] == [NAME]
  metrics = [
      json.loads(line)
      for line in (workdir / NAME / "seed_0" / "metrics.jsonl")
      .read_text()
      .split("\n")
      if line.strip()
  ]
  weights = {round(m["weight"], 6) for m in metrics if "weight" in m}
  assert weights == {0.25}


def test_unknown_setting_is_refused_naming_it_and_the_allowed_ones(
    tmp_path, monkeypatch, capsys
):
  with pytest.raises(
      ValueError,
      match=r"'method_kwargs\.wieght' is unknown "
      r"for method 'plugin_entropy'; allowed keys: "
      r"\['temperature', 'weight'\]",
  ):
    method_settings(NAME, {"wieght": 1.0})
  with pytest.raises(ValueError, match=r"'method_kwargs\.weight'.*type float"):
    method_settings(NAME, {"weight": "high"})
  monkeypatch.chdir(tmp_path.parent)
  status = cli.main(
      [
          "train",
          *tiny(tmp_path / "bad"),
          "--set",
          "method_kwargs.wieght=1.0",
          "--noreport",
      ]
  )
  assert status == 2
  error = capsys.readouterr().err
  assert (
      "method_kwargs.wieght" in error and "['temperature', 'weight']" in error
  )


def test_sweeps_its_traced_hyper_parameter(tmp_path):
  config = moons.get_config(f"method={NAME},seeds=1")
  config.steps, config.batch_size, config.progress_bar = 4, 32, False
  config.log_every, config.checkpoint_every, config.baselines = 2, 4, ()
  config.sweep.hparams.weight = (0.0, 2.0)
  results = run_sweep(config, str(tmp_path / "sweep"))
  members = results["members"]
  assert [m["hparams"] for m in members] == [{"weight": 0.0}, {"weight": 2.0}]
  metrics = [
      json.loads(line)
      for line in (tmp_path / "sweep" / "metrics.jsonl").read_text().split("\n")
      if line.strip()
  ]
  last = metrics[-1]
  for member in members:
    assert last[f"{member['name']}/weight"] == pytest.approx(
        member["hparams"]["weight"]
    )
  assert (
      last[f"{members[0]['name']}/loss"] != last[f"{members[1]['name']}/loss"]
  )


def test_a_sequence_setting_reads_the_command_lines_comma_separated_form():
  # As `--set method_kwargs.losses=kd,rkd` leaves it: a string.
  assert method_settings("distill", {"losses": "kd,rkd"})["losses"] == (
      "kd",
      "rkd",
  )
  assert method_settings("distill", {"losses": "sp"})["losses"] == ("sp",)
  assert method_settings("distill", {"losses": ["kd"]})["losses"] == ("kd",)
  with pytest.raises(ValueError, match="losses.*'kd', 'xx'"):
    method_settings("distill", {"losses": "kd, xx"})
