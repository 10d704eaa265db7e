"""Runs one command as N processes of a multi-process JAX job on this machine.

  python scripts/launch_local.py -n 2 --devices_per_process 2 -- \\
      tljax train --config configs/moons.py --workdir workdirs/moons2 \\
      --set parallel.data_parallel=true

Process i of N gets the environment a host of a multi-host run gets
(see docs/multihost.md): ``TLJAX_DISTRIBUTED=1``,
``JAX_COORDINATOR_ADDRESS=127.0.0.1:<a free port>`` (the coordinator listens
on that address only), ``JAX_NUM_PROCESSES=N`` and ``JAX_PROCESS_ID=i``;
with ``--devices_per_process K`` also ``JAX_PLATFORMS=cpu`` and K fake CPU
devices (``--xla_force_host_platform_device_count``); with ``--gpu_each``
process i uses GPU i alone (``JAX_LOCAL_DEVICE_IDS=i``). Their output lines
are printed with a ``[i]`` prefix. It first prints ``launch_local: process i
pid P`` for each process, and exits with the first non-zero exit status
among them (0 if all succeed; 128 + s for a process ended by signal s).
When one process dies the others stop by themselves: their next collective
fails, or the coordinator stops hearing the dead one's heartbeats
(``--timeout`` seconds, ``TLJAX_DISTRIBUTED_TIMEOUT``). SIGINT and SIGTERM
are passed on to every process.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading


def free_port() -> int:
  """A TCP port free on 127.0.0.1 now (the OS picks it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def process_environment(
    index: int,
    processes: int,
    port: int,
    *,
    devices_per_process: int | None = None,
    gpu_each: bool = False,
    timeout: int | None = None,
    base: dict | None = None,
) -> dict:
  """The environment of process ``index`` of ``processes``."""
  env = dict(os.environ if base is None else base)
  env.update(
      TLJAX_DISTRIBUTED="1",
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES=str(processes),
      JAX_PROCESS_ID=str(index),
      PYTHONUNBUFFERED="1",
  )
  if devices_per_process is not None:
    env["JAX_PLATFORMS"] = "cpu"
    flags = [
        flag
        for flag in env.get("XLA_FLAGS", "").split()
        if not flag.startswith("--xla_force_host_platform_device_count")
    ]
    flags.append(
        f"--xla_force_host_platform_device_count={devices_per_process}"
    )
    env["XLA_FLAGS"] = " ".join(flags)
  if gpu_each:
    env["JAX_LOCAL_DEVICE_IDS"] = str(index)
  if timeout is not None:
    env["TLJAX_DISTRIBUTED_TIMEOUT"] = str(timeout)
  return env


def _relay(index: int, stream, lock: threading.Lock) -> None:
  for line in iter(stream.readline, ""):
    with lock:
      sys.stdout.write(f"[{index}] {line}")
      sys.stdout.flush()
  stream.close()


def launch(
    command: list[str],
    num_processes: int,
    *,
    devices_per_process: int | None = None,
    gpu_each: bool = False,
    timeout: int | None = None,
) -> int:
  """Runs ``command`` as ``num_processes`` processes; the first non-zero exit status, or 0."""
  if num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}")
  if timeout is not None and timeout < 1:
    raise ValueError(f"timeout must be >= 1 (seconds), got {timeout}")
  if devices_per_process is not None and devices_per_process < 1:
    raise ValueError(
        f"devices_per_process must be >= 1, got {devices_per_process}"
    )
  if not command:
    raise ValueError("command is empty: give it after --")
  port = free_port()
  lock = threading.Lock()
  children, relays = [], []
  for index in range(num_processes):
    child = subprocess.Popen(
        command,
        env=process_environment(
            index,
            num_processes,
            port,
            devices_per_process=devices_per_process,
            gpu_each=gpu_each,
            timeout=timeout,
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    with lock:
      print(f"launch_local: process {index} pid {child.pid}", flush=True)
    relay = threading.Thread(
        target=_relay, args=(index, child.stdout, lock), daemon=True
    )
    relay.start()
    children.append(child)
    relays.append(relay)

  def forward(signum, frame):
    del frame
    for child in children:
      if child.poll() is None:
        child.send_signal(signum)

  previous = {
      signum: signal.signal(signum, forward)
      for signum in (signal.SIGINT, signal.SIGTERM)
  }
  try:
    statuses = [child.wait() for child in children]
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  for relay in relays:
    relay.join()
  for index, status in enumerate(statuses):
    if status > 0:
      print(
          f"launch_local: process {index} exited with status {status}",
          flush=True,
      )
    elif status < 0:
      print(
          f"launch_local: process {index} was ended by "
          f"{signal.Signals(-status).name}",
          flush=True,
      )
  # A process ended by signal s counts as status 128 + s, as in a shell.
  return next((128 - s if s < 0 else s for s in statuses if s), 0)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n", 1)[0],
      epilog="Everything after -- is the command each process runs.",
  )
  parser.add_argument(
      "-n",
      "--num_processes",
      type=int,
      required=True,
      help="how many processes",
  )
  parser.add_argument(
      "--devices_per_process",
      type=int,
      default=None,
      metavar="K",
      help="run on the CPU, K fake devices per process",
  )
  parser.add_argument(
      "--gpu_each",
      action="store_true",
      help="process i uses GPU i only",
  )
  parser.add_argument(
      "--timeout",
      type=int,
      default=None,
      metavar="SECONDS",
      help="heartbeat timeout: how long the others wait for a process that "
      "stopped answering (default: JAX's, 100)",
  )
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  try:
    return launch(
        command,
        args.num_processes,
        devices_per_process=args.devices_per_process,
        gpu_each=args.gpu_each,
        timeout=args.timeout,
    )
  except ValueError as error:
    parser.error(str(error))


if __name__ == "__main__":
  sys.exit(main())
