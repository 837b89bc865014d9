"""Scale benchmark of the private model: one training run at a real tenant's size.

    python -m bench.model_scale --users 100000 --items 50000 --events 5000000 [--epsilon 8] [--design auto]
    (``make bench`` runs it at that size; smaller sizes by flag)

Data: ``apps.modeling.ml.synthetic.synthetic_tenant`` (taste clusters grouped into genres, content
vectors that know the genre well and the cluster faintly, Zipf popularity, log-normal activity).
The run is the worker's pure part, ``apps.modeling.training.train_tenant``, with the product's own
``run_config.run_config`` for the tenant's size (``--design auto``: the Opacus tower from 5,000 users):
holdout split, DP releases, training, holdout metrics of the model and of DP popularity on the same
(sampled) users. Not timed: the PostgreSQL snapshot read and the served vectors' upsert + HNSW build.

Goals (issue 14): ``seconds`` < 1800 and ``peak_rss_mib`` < 8192 on 2 cores at ε = 8, and
``recall@20_capped`` ≥ 1.3 x ``dp_popularity_recall@20_capped``. Prints progress, then one JSON line
last, and writes ``var/bench/model_scale.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _setup(processes: int = 1) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if processes > 1:  # DP-SGD on N torch.distributed processes, the cores shared among them
        os.environ["SOTTO_MODELING_TRAIN_PROCESSES"] = str(processes)
        os.environ.setdefault("SOTTO_MODELING_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("SOTTO_MODELING_TORCH_THREADS", "0")  # a worker's training takes the whole machine
    import django

    django.setup()


def run(users: int, items: int, events: int, epsilon: float, design: str, seed: int) -> dict[str, Any]:
    import math

    import numpy as np

    from apps.modeling import training
    from apps.modeling.ml.synthetic import synthetic_tenant
    from apps.modeling.run_config import run_config
    from apps.modeling.tenant_data import TenantData
    from apps.profiles.selectors import feature_config

    t0 = time.perf_counter()
    st = synthetic_tenant(users, items, events, seed=seed)
    data = TenantData(
        item_pks=st.item_ids, content=st.content, user=st.user, item=st.item, value=st.value, ts=st.ts
    )
    n_users = len(np.unique(st.user))
    settings = {} if design == "auto" else {"dp_design": design}
    config = run_config(settings, epsilon if math.isfinite(epsilon) else None, n_users)
    config["holdout_fraction"] = 0.1
    t_data = time.perf_counter() - t0
    print(
        f"data: {n_users} users, {items} items, {len(st.user)} events in {t_data:.1f}s; design {config['dp_design']}",
        flush=True,
    )
    t1 = time.perf_counter()

    def progress(epoch: int, epochs: int, loss: float) -> None:
        print(f"  epoch {epoch}/{epochs} loss {loss:.4f} at {time.perf_counter() - t1:.0f}s", flush=True)

    trained = training.train_tenant(
        data=data,
        config=config,
        epsilon=epsilon,
        delta=1.0 / n_users,
        seed=seed,
        features=feature_config(),
        on_epoch=progress,
    )
    seconds = time.perf_counter() - t1
    m = trained.metrics
    rel = trained.released.record
    return {
        "users": n_users,
        "items": items,
        "events": len(st.user),
        "epsilon": epsilon,
        "epsilon_spent": trained.released.epsilon_spent,
        "delta": trained.delta,
        "design": trained.design,
        "mechanism": rel.get("mechanism"),
        "accountant": rel.get("accountant"),
        "noise_multiplier": rel.get("noise_multiplier"),
        "sample_rate": rel.get("sample_rate"),
        "steps": rel.get("steps"),
        "epochs": rel.get("epochs"),
        "seconds": round(seconds, 1),
        "data_seconds": round(t_data, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # the largest training process when DP-SGD ran on several (each holds the rows)
        "peak_rss_mib_rank": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "processes": rel.get("processes", 1),
        "engine": rel.get("engine"),
        "recall@20_capped": m.get("recall@20_capped"),
        "ndcg@10": m.get("ndcg@10"),
        "dp_popularity_recall@20_capped": m.get("dp_popularity_recall@20_capped"),
        "users_evaluated": m.get("users_evaluated"),
        "ratio_to_dp_popularity": (
            m["recall@20_capped"] / m["dp_popularity_recall@20_capped"]
            if m.get("dp_popularity_recall@20_capped")
            else None
        ),
        "gate": training.gate_decision(m, 0.0)["reason"],
        "threads": int(__import__("torch").get_num_threads()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--design", choices=["auto", "tower", "factors"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="DP-SGD on this many torch.distributed (gloo) processes (SOTTO_MODELING_TRAIN_PROCESSES)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "model_scale.json")
    args = parser.parse_args(argv)
    if args.users < 2 or args.items < 2 or args.events < args.users:
        parser.error("need at least 2 users, 2 items and one event per user")
    _setup(args.processes)
    result = run(args.users, args.items, args.events, args.epsilon, args.design, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
