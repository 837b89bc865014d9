"""One tenant's DP-SGD on N processes: torch.distributed (gloo, CPU) with Opacus' DPDDP.

Why this engine: it is the one Opacus itself supports for distributed DP-SGD, so the privacy
mechanics stay Opacus' own: each rank holds the same rows (one per user) and Poisson-samples the
users of its shard ``rank::N`` (``DistributedUniformWithReplacementSampler``) at the same rate q,
so every user is sampled with probability q per step exactly as in one process; each rank clips
its users' gradients, rank 0 alone adds the Gaussian noise σ·C, and the all-reduce sums the
shards (``DistributedDPOptimizerFastGradientClipping``). The noisy sum, the steps and q, hence
the accountant's ε, are those of the single-process run (checked, as there, against the plan).

Launcher: PyTorch's own ``torchrun`` (``torch.distributed.run --standalone``), one machine, as a
subprocess of the worker (a Celery prefork child is daemonic and may not fork ranks itself). Ranks
read the job from a private temporary folder and rank 0 writes the result there; the folder goes
when the run ends. Spreading over machines is torchrun's multi-node rendezvous with the same rank
code; this module does not launch that. Each rank holds the full training rows (memory grows with
the process count).
"""

from __future__ import annotations

import json
import os
import pickle  # nosec B403 - only our own temp-dir job files, see the loads below
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .accounting import dp_schedule
from .config import ModelConfig
from .data import Interactions
from .features import FeatureConfig

if TYPE_CHECKING:
    from .tower import TowerRelease

# A rank whose Poisson draw is empty would skip a step the others take (Opacus skips empty
# batches) and the collective would hang; at an expected 64 users per rank and step that has
# probability e^-64 per step. Fewer users per rank is refused.
MIN_USERS_PER_RANK_AND_STEP = 64


@dataclass(frozen=True)
class _Job:
    train: Interactions
    content: np.ndarray
    extras: np.ndarray
    pop_counts: np.ndarray
    config: ModelConfig
    features: FeatureConfig
    noise_multiplier: float
    seed: int
    threads: int


def _per_rank(n_users: int, expected_batch: int, processes: int) -> float:
    _, q, _ = dp_schedule(n_users, expected_batch, 1)
    return q * (n_users // max(1, processes))


def usable_processes(n_users: int, expected_batch: int, wanted: int) -> int:
    """The most processes, up to ``wanted``, whose ranks each expect enough users per step."""
    n = max(1, wanted)
    while n > 1 and _per_rank(n_users, expected_batch, n) < MIN_USERS_PER_RANK_AND_STEP:
        n -= 1
    return n


def check_processes(n_users: int, expected_batch: int, processes: int) -> None:
    """Refuse a process count whose ranks would see too few users per step (see the constant)."""
    if processes < 1 or usable_processes(n_users, expected_batch, processes) < processes:
        raise ValueError(
            f"{processes} training processes leave {_per_rank(n_users, expected_batch, processes):.0f} "
            f"expected users per rank and step (at least {MIN_USERS_PER_RANK_AND_STEP} are needed); "
            "use fewer processes"
        )


PROGRESS = "SOTTO_PROGRESS "


def _rank_main(job_path: str, out_path: str) -> None:
    """One rank, started by torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment)."""
    import torch
    import torch.distributed as dist

    from .tower import fit_tower

    job: _Job = pickle.loads(Path(job_path).read_bytes())  # noqa: S301 # nosec B301 - written by our parent into its 0700 temp dir
    if job.threads > 0:
        torch.set_num_threads(job.threads)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:

        def report(epoch: int, epochs: int, loss: float) -> None:
            sys.stdout.write(PROGRESS + json.dumps([epoch, epochs, loss]) + "\n")
            sys.stdout.flush()

        res = fit_tower(
            job.train,
            job.content,
            job.extras,
            job.pop_counts,
            job.config,
            job.features,
            noise_multiplier=job.noise_multiplier,
            seed=job.seed,
            rank=rank,
            on_progress=report if rank == 0 else None,
        )
        if rank == 0:
            Path(out_path).write_bytes(pickle.dumps(res))
    finally:
        dist.destroy_process_group()


def train_tower_distributed(
    train: Interactions,
    content: np.ndarray,
    extras: np.ndarray,
    pop_counts: np.ndarray,
    config: ModelConfig,
    features: FeatureConfig,
    *,
    noise_multiplier: float | None,
    seed: int,
    on_progress: Any,
    processes: int,
    threads: int = 0,
) -> TowerRelease:
    """Run :func:`tower.fit_tower` on ``processes`` ranks launched by torchrun (a subprocess, so a
    daemonic Celery prefork child may start it); rank 0's result (every rank holds the same weights
    after each step). Progress is rank 0's, relayed to ``on_progress``; if that raises (the run was
    reaped), the ranks are stopped."""
    if noise_multiplier is None:
        raise ValueError("distributed training is DP-SGD only (the non-private tower trains in one process)")
    check_processes(train.n_users, config.expected_batch, processes)
    job = _Job(train, content, extras, pop_counts, config, features, float(noise_multiplier), seed, threads)
    with tempfile.TemporaryDirectory(prefix="sotto-ddp-") as tmp:
        job_path, out_path = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_path.write_bytes(pickle.dumps(job))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            __name__,
            str(job_path),
            str(out_path),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "OMP_NUM_THREADS": str(max(1, threads)),
            "HF_HUB_OFFLINE": "1",
        }
        # fixed argv: this interpreter, torchrun, this module
        with subprocess.Popen(  # noqa: S603
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            errors: list[str] = []
            drain = threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True)
            drain.start()
            try:
                for line in proc.stdout or []:
                    if line.startswith(PROGRESS) and on_progress is not None:
                        on_progress(*json.loads(line[len(PROGRESS) :]))
                proc.wait()
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
            drain.join(5)
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(
                f"distributed training failed (torchrun exit {proc.returncode}): " + "".join(errors)[-2000:]
            )
        result: TowerRelease = pickle.loads(out_path.read_bytes())  # noqa: S301 # nosec B301 - rank 0 wrote it, same temp dir
    return result


if __name__ == "__main__":
    _rank_main(sys.argv[1], sys.argv[2])
