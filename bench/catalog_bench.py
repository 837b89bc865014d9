"""Catalogue benchmark: item encoding throughput (fp32 vs int8) and HNSW recall@10 on a tenant partition.

    python -m bench.catalog_bench [--n-vectors 20000] [--queries 200] [--encode-items 512]
    (or ``make bench``, which calls ``main(out_dir)``)

1. Encoding, items/s: the encoder engineer's ``bench/encoder_bench.run`` on catalogue texts as
   the catalogue builds them (``title. genres. tags`` of MovieLens movies), fp32 and int8; then
   the whole encode service (read items, encode, write vectors + statuses in one transaction per
   batch) on a real tenant, fp32 and int8.
2. HNSW recall@10 against exact search: 20k synthetic L2-normalised 384-d vectors written into a
   real tenant partition (its own HNSW index, m=16, ef_construction=64), 200 held-out queries;
   exact top-10 by numpy brute force; approximate by ``knn_content``'s SQL at several
   ``hnsw.ef_search`` values, plus a filtered query (10 % category) with iterative scans.
   Two data sets: "clustered" (a mixture of 200 Gaussian clusters, like sentence embeddings,
   whose neighbours are far nearer than random pairs) and "uniform" on the sphere (the worst
   case: in 384-d all points are nearly equidistant).

The benchmark tenant ``bench-catalog`` is reused: its items (and vectors) are replaced each run.
Writes ``catalog.json`` under the output folder (default ``var/bench/``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_SLUG = "bench-catalog"
EF_SEARCH_VALUES = (10, 20, 40, 64, 100, 150, 200)
K = 10


def _setup_django() -> None:
    for path in (str(ROOT / "platform"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()


def _bench_tenant() -> int:
    from apps.catalog.models import Item
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.selectors import tenant_get
    from apps.tenancy.services import tenant_create

    tenant = tenant_get(slug=BENCH_SLUG) or tenant_create(
        slug=BENCH_SLUG, name="catalogue benchmark", actor="bench"
    )
    with tenant_context(tenant.id):
        Item.objects.filter(tenant_id=tenant.id).delete()  # vectors go with them (FK cascade)
    return int(tenant.id)


# --- 1. encoding -----------------------------------------------------------------------------


def movielens_texts(n: int) -> list[tuple[str, str, list[str], str]]:
    """(id, title, genres, tags) of the first n movies, as import_movielens builds items."""
    from apps.catalog.importing import movielens_items

    items = movielens_items(ROOT / "data" / "ml-latest-small")[:n]
    return [(i.external_id, i.title, list(i.categories), i.description) for i in items]


def bench_encoder(texts: list[str], repeats: int) -> dict[str, Any]:
    """Pure encoder speed via bench/encoder_bench.py (shared method: interleaved rounds, best kept)."""
    from bench import encoder_bench

    res = encoder_bench.run(texts, [32], repeats, None, None, ["fp32"])
    return {
        "source": "bench/encoder_bench.run on catalogue texts (title. genres. tags)",
        "fp32_items_per_s": res["fp32"]["items_per_s"],
        "int8_items_per_s": res["int8"]["items_per_s"],
        "int8_impl": res["int8"]["impl"],
        "speedup": res["speedup"],
        "cosine_mean_int8_vs_fp32": res["cosine_mean"],
        "cosine_min_int8_vs_fp32": res["cosine_min"],
    }


def bench_encode_service(
    tenant_id: int, movies: list[tuple[str, str, list[str], str]], precision: str
) -> dict[str, Any]:
    """items_encode end to end (DB read, encode, vectors + statuses written per batch of 64)."""
    from django.conf import settings
    from django.test import override_settings

    from apps.catalog.models import Item
    from apps.catalog.selectors import catalog_status
    from apps.catalog.services import items_encode
    from apps.catalog.validation import content_hash, content_text
    from apps.core.conf import sotto
    from apps.core.tenant_db import tenant_context

    with tenant_context(tenant_id):
        Item.objects.filter(tenant_id=tenant_id).delete()
        rows = Item.objects.bulk_create(
            [
                Item(
                    tenant_id=tenant_id,
                    external_id=ext,
                    title=title,
                    categories=genres,
                    description=tags,
                    content_hash=content_hash(content_text(title, genres, tags)),
                )
                for ext, title, genres, tags in movies
            ]
        )  # created directly, not through items_upsert, so no worker races this process for them
    pks = [row.pk for row in rows]
    with override_settings(SOTTO={**settings.SOTTO, "ENCODER_PRECISION": precision}):
        items_encode(tenant_id=tenant_id, item_pks=pks[:32])  # load the model (excluded)
        with tenant_context(tenant_id):
            Item.objects.filter(tenant_id=tenant_id).update(encoding_status="pending", encoded_hash="")
        batch = sotto().catalog_encode_batch
        started = time.perf_counter()
        for start in range(0, len(pks), batch):
            items_encode(tenant_id=tenant_id, item_pks=pks[start : start + batch])
        seconds = time.perf_counter() - started
    counts = catalog_status(tenant_id=tenant_id)
    assert counts["ready"] == len(pks), counts
    return {
        "items": len(pks),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(pks) / seconds, 1),
        "batch": batch,
        "truncated": counts["truncated"],
    }


# --- 2. HNSW recall ----------------------------------------------------------------------------


def synthetic(kind: str, n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    total = n + n_queries
    if kind == "uniform":
        points = rng.standard_normal((total, 384)).astype(np.float32)
    else:
        centres = rng.standard_normal((200, 384)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        labels = rng.integers(0, len(centres), size=total)
        points = centres[labels] + rng.standard_normal((total, 384)).astype(np.float32) * (0.9 / np.sqrt(384))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:n], points[n:]


def load_vectors(tenant_id: int, vectors: np.ndarray, categories: list[list[str]]) -> float:
    from django.db import connection

    from apps.catalog.models import Item
    from apps.catalog.partitions import vector_partition_analyze
    from apps.catalog.vectors import VectorRow, vectors_write
    from apps.core.tenant_db import tenant_context

    started = time.perf_counter()
    with tenant_context(tenant_id):
        Item.objects.filter(tenant_id=tenant_id).delete()
    for start in range(0, len(vectors), 1000):
        with tenant_context(tenant_id):
            rows = Item.objects.bulk_create(
                [
                    Item(
                        tenant_id=tenant_id,
                        external_id=f"s{i}",
                        title=f"synthetic {i}",
                        categories=categories[i],
                        content_hash="0" * 64,
                        encoded_hash="0" * 64,
                        encoding_status="ready",
                        encoding_model="synthetic",
                    )
                    for i in range(start, min(start + 1000, len(vectors)))
                ]
            )
            vectors_write(
                tenant_id=tenant_id,
                rows=[
                    VectorRow(
                        item_pk=row.pk,
                        external_id=row.external_id,
                        vector=vectors[start + j],
                        available=True,
                        categories=categories[start + j],
                        model="synthetic",
                        content_hash="0" * 64,
                    )
                    for j, row in enumerate(rows)
                ],
            )
    with tenant_context(tenant_id):
        vector_partition_analyze(tenant_id)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM catalog_itemvector WHERE tenant_id = %s", [tenant_id])
            row = cursor.fetchone()
            assert row and row[0] == len(vectors)
    return time.perf_counter() - started


def exact_topk(
    data: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None
) -> list[set[int]]:
    scores = queries @ data.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return [set(row.tolist()) for row in top]


def approx_topk(
    tenant_id: int, queries: np.ndarray, ef: int, category: str | None
) -> tuple[list[set[int]], list[float]]:
    from apps.catalog.vectors import vectors_knn
    from apps.core.tenant_db import tenant_context

    found: list[set[int]] = []
    latencies: list[float] = []
    for query in queries:
        started = time.perf_counter()
        with tenant_context(tenant_id):
            rows = vectors_knn(
                tenant_id=tenant_id, vector=query, k=K, category=category, available_only=False, ef_search=ef
            )
        latencies.append((time.perf_counter() - started) * 1000)
        found.append({int(n.external_id[1:]) for n in rows})
    return found, latencies


def index_used(tenant_id: int, query: np.ndarray, ef: int) -> bool:
    """Does the planner walk the partition's HNSW index at this ef_search (or sort an exact scan)?"""
    from django.db import connection

    from apps.catalog.vectors import vector_literal
    from apps.core.tenant_db import tenant_context

    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
        cursor.execute(
            "EXPLAIN SELECT item_id FROM catalog_itemvector WHERE tenant_id = %s "
            "ORDER BY embedding <=> %s::vector LIMIT %s",
            [tenant_id, vector_literal(query), K],
        )
        plan = " ".join(str(row[0]) for row in cursor.fetchall())
    return "_hnsw" in plan


def bench_recall(tenant_id: int, kind: str, n: int, n_queries: int) -> dict[str, Any]:
    from apps.catalog.partitions import partition_name

    data, queries = synthetic(kind, n, n_queries, seed=20240)
    categories = [["tenth"] if i % 10 == 0 else ["rest"] for i in range(n)]
    load_s = load_vectors(tenant_id, data, categories)
    truth = exact_topk(data, queries, K)
    sweep = []
    for ef in EF_SEARCH_VALUES:
        found, lat = approx_topk(tenant_id, queries, ef, None)
        recall = float(np.mean([len(t & f) / K for t, f in zip(truth, found, strict=True)]))
        sweep.append(
            {
                "ef_search": ef,
                "recall_at_10": round(recall, 4),
                "hnsw_index_used": index_used(tenant_id, queries[0], ef),
                "p50_ms": round(statistics.median(lat), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2),
            }
        )
    mask = np.array([c == ["tenth"] for c in categories])
    truth_f = exact_topk(data, queries, K, mask)
    from apps.core.conf import sotto

    ef_default = sotto().catalog_hnsw_ef_search
    found_f, lat_f = approx_topk(tenant_id, queries, ef_default, "tenth")
    recall_f = float(np.mean([len(t & f) / K for t, f in zip(truth_f, found_f, strict=True)]))
    return {
        "vectors": n,
        "queries": n_queries,
        "partition": partition_name(tenant_id),
        "load_and_index_s": round(load_s, 1),
        "sweep": sweep,
        "filtered_10pct": {
            "ef_search": ef_default,
            "iterative_scan": "relaxed_order",
            "recall_at_10": round(recall_f, 4),
            "p50_ms": round(statistics.median(lat_f), 2),
            "full_results": all(len(f) == K for f in found_f),
        },
    }


def bench_real_recall(slug: str, n_queries: int) -> dict[str, Any]:
    """Recall@10 of similar-items queries (self excluded, iterative scan) on an existing tenant's vectors."""
    from django.db import connection

    from apps.catalog.partitions import vector_partition_analyze
    from apps.catalog.vectors import parse_vector, vectors_knn
    from apps.core.conf import sotto
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.selectors import tenant_get

    tenant = tenant_get(slug=slug)
    if tenant is None:
        return {"skipped": f"no tenant {slug!r}"}
    with tenant_context(tenant.id), connection.cursor() as cursor:
        vector_partition_analyze(tenant.id)
        cursor.execute(
            "SELECT item_id, embedding::text FROM catalog_itemvector WHERE tenant_id = %s ORDER BY item_id",
            [tenant.id],
        )
        rows = cursor.fetchall()
    pks = np.array([int(r[0]) for r in rows])
    data = np.stack([parse_vector(r[1]) for r in rows])
    rng = np.random.default_rng(5)
    picks = rng.choice(len(pks), size=min(n_queries, len(pks)), replace=False)
    truths = []
    for i in picks:
        scores = data @ data[i]
        scores[i] = -np.inf
        truths.append(set(pks[np.argpartition(-scores, K)[:K]].tolist()))
    ef_default = sotto().catalog_hnsw_ef_search
    sweep = []
    for ef in sorted({20, 40, 64, ef_default, 200}):
        recalls, latencies = [], []
        for i, truth in zip(picks, truths, strict=True):
            started = time.perf_counter()
            with tenant_context(tenant.id):
                found = vectors_knn(
                    tenant_id=tenant.id,
                    vector=data[i],
                    k=K,
                    exclude_pks=[int(pks[i])],
                    available_only=False,
                    ef_search=ef,
                )
            latencies.append((time.perf_counter() - started) * 1000)
            recalls.append(len(truth & {n.item_pk for n in found}) / K)
        sweep.append(
            {
                "ef_search": ef,
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "p50_ms": round(statistics.median(latencies), 2),
                "p95_ms": round(float(np.percentile(latencies, 95)), 2),
                "hnsw_index_used": index_used(tenant.id, data[picks[0]], ef),
            }
        )
    return {
        "tenant": slug,
        "vectors": len(pks),
        "queries": len(picks),
        "ef_search_default": ef_default,
        "query": "similar items: the item's own vector, itself excluded (iterative scan)",
        "sweep": sweep,
    }


def table(result: dict[str, Any]) -> str:
    enc = result["encoding"]
    lines = ["catalogue bench"]
    if enc:
        e = enc["encoder"]
        lines += [
            "",
            f"encoder only ({e['int8_impl']} as int8): fp32 {e['fp32_items_per_s']} items/s, int8 "
            f"{e['int8_items_per_s']} items/s (x{e['speedup']}, cosine to fp32 mean "
            f"{e['cosine_mean_int8_vs_fp32']})",
        ]
        for precision in ("fp32", "int8"):
            s = enc[f"service_{precision}"]
            lines.append(
                f"encode service {precision}: {s['items']} items in {s['seconds']} s = {s['items_per_s']} "
                f"items/s (read, encode, write vectors + statuses, batches of {s['batch']})"
            )
    for kind, rec in result["recall"].items():
        lines += [
            "",
            f"HNSW recall@10, {kind}: {rec['vectors']} vectors, {rec['queries']} queries, "
            f"loaded + indexed in {rec['load_and_index_s']} s",
            f"{'ef_search':>10}{'recall@10':>11}{'p50 ms':>9}{'p95 ms':>9}",
        ]
        lines += [
            f"{r['ef_search']:>10}{r['recall_at_10']:>11.4f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
            + ("" if r["hnsw_index_used"] else "  (planner chose an exact scan)")
            for r in rec["sweep"]
        ]
        f = rec["filtered_10pct"]
        lines.append(
            f"filtered (10 % category, ef_search {f['ef_search']}, iterative scan): recall@10 "
            f"{f['recall_at_10']:.4f}, p50 {f['p50_ms']} ms, always {K} results: {f['full_results']}"
        )
    real = result.get("real")
    if real and "sweep" in real:
        lines += [
            "",
            f"HNSW recall@10, real vectors of tenant {real['tenant']} ({real['vectors']} items), "
            f"{real['queries']} similar-items queries (self excluded, iterative scan)",
            f"{'ef_search':>10}{'recall@10':>11}{'p50 ms':>9}{'p95 ms':>9}",
        ]
        lines += [
            f"{r['ef_search']:>10}{r['recall_at_10']:>11.4f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
            + ("" if r["hnsw_index_used"] else "  (planner chose an exact scan)")
            for r in real["sweep"]
        ]
    return "\n".join(lines)


def main(out_dir: Path | str | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n-vectors", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--encode-items", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kinds", default="clustered,uniform")
    parser.add_argument("--skip-encoding", action="store_true", help="only the recall part")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--real-tenant",
        default="movielens-full",
        help="also measure recall on this tenant's real vectors when it exists (import_movielens)",
    )
    args = parser.parse_args(list(argv) if argv is not None else [])
    out = Path(args.out or out_dir or ROOT / "var" / "bench")
    _setup_django()
    tenant_id = _bench_tenant()
    movies = movielens_texts(args.encode_items)
    from apps.catalog.validation import content_text

    texts = [content_text(title, genres, tags) for _, title, genres, tags in movies]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "encoding": None
        if args.skip_encoding
        else {
            "encoder": bench_encoder(texts, args.repeats),
            "service_fp32": bench_encode_service(tenant_id, movies, "fp32"),
            "service_int8": bench_encode_service(tenant_id, movies, "int8"),
        },
        "recall": {
            kind: bench_recall(tenant_id, kind, args.n_vectors, args.queries)
            for kind in args.kinds.split(",")
            if kind
        },
        "real": bench_real_recall(args.real_tenant, args.queries) if args.real_tenant else None,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalog.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"wrote {out / 'catalog.json'}")
    return result


if __name__ == "__main__":
    main(argv=sys.argv[1:])
