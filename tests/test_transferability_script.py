"""scripts/transferability.py: its zoo trains the runs it then ranks."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a child process: the script defines absl flags, which are global to a
# process (another test's script could define the same names).
CHECK = textwrap.dedent("""
    import importlib.util, sys
    from absl import flags
    spec = importlib.util.spec_from_file_location("script", sys.argv[1])
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    flags.FLAGS(["transferability.py"])
    for name, (transform, _) in script.ZOO.items():
      config = script.zoo_config(name)
      got = config.source.kwargs.get("transform")
      print(name, config.method, tuple(config.baselines), tuple(config.seeds),
            config.steps == script._ZOO_STEPS.value,
            (dict(got) if got else None) == (dict(transform) if transform
                                             else None))
""")


def test_every_zoo_member_is_a_source_only_run_of_the_digits_recipe():
  completed = subprocess.run(
      [
          sys.executable,
          "-c",
          CHECK,
          os.path.join(REPO, "scripts", "transferability.py"),
      ],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  lines = completed.stdout.split("\n")
  members = [line.split(" ", 1) for line in lines if line]
  assert len(members) == 7
  # main() ranks run_dir(zoo/<name>, "source_only", 0): the zoo must be
  # source_only runs, seed 0, no baselines (not the digits config's JAN),
  # each on its own variant of the source.
  for name, rest in members:
    assert rest == "source_only () (0,) True True", (name, rest)
