"""``manage.py evaluate``: protocol P1 (baselines and Sotto at each ε) on a MovieLens folder.

    python manage.py evaluate --dataset data/ml-latest-small --epsilons 1,2,4,8,inf \\
        --json docs/results/p1.json --plot docs/results/p1.png --markdown docs/results/p1.md

Content vectors: with ``--tenant SLUG`` the tenant's stored content vectors of the items whose
ids are the dataset's movieIds (import them with ``import_movielens`` and let them encode first);
otherwise the dataset's items are encoded here with the catalogue's encoder and the text the
catalogue would build (``movielens_items`` → ``content_text``), cached under
``var/cache/`` keyed by encoder model + precision + dataset file hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.modeling.ml.data import load_movielens
from apps.modeling.ml.evaluate import SOTTO_MODELS

CACHE_RECIPE = "p1-content-v1"  # bump when the text recipe changes


def parse_epsilons(raw: str) -> list[float]:
    out: list[float] = []
    for part in raw.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            value = math.inf if part in {"inf", "infinity"} else float(part)
        except ValueError:
            raise CommandError(f"--epsilons: {part!r} is not a number or 'inf'") from None
        if not value > 0 or math.isnan(value):
            raise CommandError(f"--epsilons: {part!r} must be positive")
        out.append(value)
    if not out:
        raise CommandError("--epsilons: give at least one value")
    return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def encode_dataset(dataset: Path, item_ids: np.ndarray, write: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Content vectors of the dataset's items (ascending movieId), from the cache when possible."""
    from apps.catalog.encoder import get_encoder
    from apps.catalog.importing import movielens_items
    from apps.catalog.validation import content_text
    from apps.core.conf import sotto

    encoder = get_encoder(sotto().encoder_model_path, sotto().encoder_precision)
    key = hashlib.sha256(
        "|".join(
            [
                CACHE_RECIPE,
                encoder.model_id,
                _file_digest(dataset / "movies.csv"),
                _file_digest(dataset / "tags.csv"),
            ]
        ).encode()
    ).hexdigest()[:16]
    cache = Path(settings.VAR_DIR) / "cache" / f"p1_content_{key}.npz"
    # the record names the cache relative to the checkout (a results file carries no machine's paths)
    shown = (
        cache.relative_to(settings.BASE_DIR) if cache.is_relative_to(settings.BASE_DIR) else Path(cache.name)
    )
    meta = {"source": "encoded in process", "model": encoder.model_id, "cache": str(shown)}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            if np.array_equal(npz["item_ids"], item_ids):
                write(f"content vectors: cached {cache}")
                return npz["vectors"].astype(np.float32), meta
    items = {int(item.external_id): item for item in movielens_items(dataset)}
    missing = [int(i) for i in item_ids if int(i) not in items]
    if missing:
        raise CommandError(f"{len(missing)} rated items are not in movies.csv (e.g. {missing[:5]})")
    texts = [
        content_text(items[int(i)].title, items[int(i)].categories, items[int(i)].description)
        for i in item_ids
    ]
    write(f"encoding {len(texts)} items with {encoder.model_id} (cached afterwards under {cache.parent})")
    t0 = time.perf_counter()
    vectors = np.concatenate([encoder.encode(texts[s : s + 512]).vectors for s in range(0, len(texts), 512)])
    write(f"encoded in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, item_ids=item_ids, vectors=vectors)
    return vectors, meta


def tenant_vectors(slug: str, item_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    from apps.catalog.management.commands._common import tenant_by_slug
    from apps.catalog.selectors import content_vectors, item_pks_by_external_ids

    tenant = tenant_by_slug(slug)
    ids = [str(int(i)) for i in item_ids]
    pks = item_pks_by_external_ids(tenant.pk, ids)
    vectors = content_vectors(tenant.pk, pks.values())
    missing = [i for i in ids if i not in pks or pks[i] not in vectors]
    if missing:
        raise CommandError(
            f"{len(missing)} of {len(ids)} dataset items have no content vector in tenant {slug!r} "
            f"(e.g. {missing[:5]}): import the catalogue and wait for encoding"
        )
    return np.stack([vectors[pks[i]] for i in ids]).astype(np.float32), {"source": f"tenant {slug}"}


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def results_table(result: dict[str, Any]) -> list[str]:
    rows = [
        "| model | ε | recall@20 | recall@20 (capped) | NDCG@10 | ε accounted (all releases composed) "
        "| DP-SGD sigma | DP-SGD q | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        eps = r["epsilon"]
        private = r["model"] in SOTTO_MODELS and eps is not None
        sgd = private and bool(r.get("steps"))  # DP-SGD ran (the factor design takes no step)
        eps_s = "∞ (non-private)" if r["model"] in SOTTO_MODELS and eps is None else _fmt(eps)
        rows.append(
            f"| {r['model']} | {eps_s} | {r['recall@20']:.4f} | {r['recall@20_capped']:.4f} | {r['ndcg@10']:.4f} | "
            f"{_fmt(r.get('epsilon_total')) if private else '-'} | {_fmt(r.get('noise_multiplier')) if sgd else '-'} | "
            f"{_fmt(r.get('sample_rate')) if sgd else '-'} | {_fmt(r.get('epochs')) if r.get('epochs') else '-'} |"
        )
    return rows


class Command(BaseCommand):
    help = "Protocol P1: popularity, ItemKNN, EASE, seed-literal and Sotto at each ε; JSON, table, plot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dataset", required=True, help="MovieLens folder (ratings.csv, movies.csv[, tags.csv])"
        )
        parser.add_argument(
            "--epsilons", default="1,2,4,8,inf", help="comma-separated total ε values; inf = non-private"
        )
        parser.add_argument("--json", dest="json_out", required=True, help="where to write the results JSON")
        parser.add_argument("--plot", help="privacy-utility PNG to write")
        parser.add_argument("--markdown", help="Markdown table (with the command line) to write")
        parser.add_argument("--tenant", help="take content vectors from this tenant's catalogue")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
        parser.add_argument("--no-baselines", action="store_true", help="only the Sotto rows")

    def handle(self, *args: Any, **opts: Any) -> None:
        import torch

        from apps.modeling.ml.evaluate import default_p1_config, plot_privacy_utility, run_p1

        torch.set_num_threads(max(1, int(opts["threads"])))
        dataset = Path(opts["dataset"])
        if not (dataset / "ratings.csv").is_file():
            raise CommandError(f"{dataset}/ratings.csv not found")
        epsilons = parse_epsilons(opts["epsilons"])
        command = command_line(opts)
        write = self.stdout.write
        item_ids = load_movielens(str(dataset)).item_ids
        if opts["tenant"]:
            content, content_meta = tenant_vectors(opts["tenant"], item_ids)
        else:
            content, content_meta = encode_dataset(dataset, item_ids, write)

        def progress(label: str, epoch: int, epochs: int, loss: float) -> None:
            write(f"  {label}: epoch {epoch}/{epochs} loss {loss:.4f}")

        config = default_p1_config()
        config.baselines = not opts["no_baselines"]
        t0 = time.perf_counter()
        result = run_p1(
            str(dataset), epsilons, content, config=config, seed=int(opts["seed"]), on_progress=progress
        )
        result.update(
            {
                "command": command,
                "dataset": str(dataset),
                "content": content_meta,
                "seconds": round(time.perf_counter() - t0, 1),
                "epsilons": [str(e) for e in epsilons],
            }
        )
        table = results_table(result)
        write("\n".join(table))
        out = Path(opts["json_out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        write(f"wrote {out}")
        if opts["plot"]:
            plot_privacy_utility(result, opts["plot"])
            write(f"wrote {opts['plot']}")
        if opts["markdown"]:
            Path(opts["markdown"]).write_text(markdown(result, table))
            write(f"wrote {opts['markdown']}")


def command_line(opts: dict[str, Any]) -> str:
    """The command that reproduces this run (from the parsed options, not argv)."""
    parts = [
        "python",
        "manage.py",
        "evaluate",
        "--dataset",
        str(opts["dataset"]),
        "--epsilons",
        str(opts["epsilons"]),
        "--json",
        str(opts["json_out"]),
    ]
    for flag, key in (("--plot", "plot"), ("--markdown", "markdown"), ("--tenant", "tenant")):
        if opts.get(key):
            parts += [flag, str(opts[key])]
    if int(opts.get("seed") or 0) != 0:
        parts += ["--seed", str(opts["seed"])]
    if opts.get("no_baselines"):
        parts.append("--no-baselines")
    return " ".join(shlex.quote(p) for p in parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _shape(config: dict[str, Any]) -> str:
    if int(config.get("factor_rank") or 0) <= 0:
        return ""
    return f" (r={config['factor_rank']}, M={config.get('factor_items')}, pop weight {config.get('init_pop_weight')})"


def markdown(result: dict[str, Any], table: list[str]) -> str:
    pop = next((r for r in result["results"] if r["model"] == "popularity"), None)
    lines = [
        "# P1 results (produced by `manage.py evaluate`)",
        "",
        "Reproduce:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"Dataset `{result['dataset']}`: {result['n_users']} users, {result['n_items']} items; seed {result['seed']}; "
        f"content vectors: {result['content'].get('source')} ({result['content'].get('model', '')}); "
        f"{result['seconds']:.0f} s.",
        "Recall@20 is the standard |hits|/|test|; the capped column divides by min(|test|, 20) (the scale of the "
        "P1 reference numbers). ε is the total user-level budget, δ = 1/N_users. Two private designs, each the "
        "product's `dp_design` of that name (`auto` picks `factors` below 5,000 users, `tower` from there; "
        "docs/decisions/0003). `sotto-two-tower` rows: dp_design `factors` (epochs 0), two Gaussian releases, "
        "DP popularity and the DP item-item Gram over the M most popular items (rank-r factors; r, M and the "
        "popularity weight follow ε, `ml.dp_factors.FACTOR_SCHEDULE`), composed exactly (GDP) to the whole "
        "(ε, δ); every other item gets factors projected from its public content at half weight "
        "(post-processing); no DP-SGD (its σ/q columns show -). Its non-private row is the same design without "
        "noise plus the user's recency-weighted last items over the Gram's EASE operator (`ml.history`), an "
        "evaluation reference that no tenant is served (under DP it lost, docs/results/p1-experiments.md round 5). "
        "`sotto-tower` rows: dp_design `tower`, Opacus DP-SGD on the MLP user tower over public content "
        "features + DP popularity, composed by the RDP accountant (ε, σ, q, epochs in the columns). "
        "Noise and shape per factors release: "
        + "; ".join(
            f"ε={r['epsilon']:g}: sigma_pop={r.get('sigma_pop', 0):.3f}, sigma_gram={r.get('sigma_gram') or 0:.3f}"
            + _shape(r.get("config") or {})
            for r in result["results"]
            if r["model"] == "sotto-two-tower" and r["epsilon"] is not None
        )
        + ".",
        "",
        *table,
        "",
    ]
    if pop is not None:
        for r in result["results"]:
            if r["model"] in SOTTO_MODELS:
                eps = "non-private" if r["epsilon"] is None else f"ε={r['epsilon']:g}"
                verdict = "beats" if r["recall@20"] > pop["recall@20"] else "does NOT beat"
                lines.append(
                    f"- Sotto {SOTTO_MODELS[r['model']]} {eps} {verdict} popularity on recall@20 "
                    f"({r['recall@20']:.4f} vs {pop['recall@20']:.4f})."
                )
    lines += ["", "![privacy-utility](p1.png)", ""]
    return "\n".join(lines)
