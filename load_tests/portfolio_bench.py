"""Portfolio benchmark: `credit-risk score` Parquet in -> Parquet out, beside the API and Spark
(what it measures: docs/portfolio.md, "Speed and memory").

    python -m load_tests.portfolio_bench [--rows 1000000] [--rss-rows 5000000] [--out reports]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from credit_risk.decision_store import STORE_ENV
from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training.data import load_dataset
from load_tests import bench, harness

BIN: Final = Path(sys.executable).parent
GNU_TIME: Final = "/usr/bin/time"
"""GNU time (Debian package `time`): the job's peak RSS."""
ROW_GROUP: Final = 131_072
"""Rows per Parquet row group in the generated portfolio (a typical writer's default scale)."""
WRITE_CHUNK: Final = 1_000_000
API_CONNECTIONS: Final = 8
API_SECONDS: Final = 15


def build_portfolio(path: Path, rows: int, seed: int = 14) -> None:
    """`rows` applicants resampled from the training data, streamed to Parquet with ids."""
    frame = load_dataset().X
    columns = {n: frame[n].astype(str).tolist() if n in CATEGORIES else frame[n] for n in FEATURES}
    base, rng = pa.table(columns), np.random.default_rng(seed)
    with pq.ParquetWriter(path, base.schema.insert(0, pa.field("account_id", pa.int64()))) as out:
        for start in range(0, rows, WRITE_CHUNK):
            n = min(WRITE_CHUNK, rows - start)
            ids = pa.array(np.arange(start, start + n, dtype=np.int64) + 10_000_000)
            table = base.take(rng.integers(0, len(frame), n)).add_column(0, "account_id", ids)
            out.write_table(table, row_group_size=ROW_GROUP)


def child(what: str, argv: list[str], audit: Path) -> tuple[float, str, dict[str, Any]]:
    """Run a job in a child process: its wall seconds, its stderr, its audit log's last record."""
    began = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall, stderr = time.perf_counter() - began, done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited {done.returncode}: {stderr[-2000:]}")
    return wall, stderr, json.loads(audit.read_text().splitlines()[-1])


def run_job(src: Path, out: Path, tag: str, audit: Path) -> dict[str, Any]:
    """The CLI in a child process: its wall time, peak RSS, CPU time and audit record."""
    # GNU time reports the job's own peak RSS; a child's ru_maxrss seen from here would also
    # count pages it shared with this (large) process before exec
    rss_file = audit.with_name("maxrss.txt")
    argv = [GNU_TIME, "-f", "%M %U %S", "-o", str(rss_file), str(BIN / "credit-risk"), "score"]
    argv += [str(src), str(out), "--model", tag, "--id-column", "account_id"]
    wall, _, record = child("credit-risk score", [*argv, "--audit-log", str(audit)], audit)
    peak_kib, user_s, system_s = rss_file.read_text().split()[-3:]
    cpu_s = float(user_s) + float(system_s)
    return {
        "rows": record["rows_read"],
        "job_seconds": record["seconds"],
        "wall_seconds": round(wall, 3),
        "applicants_per_s": round(record["rows_read"] / record["seconds"]),
        "applicants_per_s_wall": round(record["rows_read"] / wall),
        "peak_rss_mb": round(int(peak_kib) / 1024, 1),
        # CPU time is what a busy machine cannot take away: applicants per CPU-second
        "cpu_seconds": round(cpu_s, 2),
        "applicants_per_cpu_s": round(record["rows_read"] / cpu_s),
        "stage_seconds": record["stage_seconds"],
        "input_mb": round(src.stat().st_size / 2**20, 1),
        "output_mb": round(out.stat().st_size / 2**20, 1),
    }


def run_api(work: Path, tag: str) -> dict[str, Any]:
    """/classify_batch (1,000 applicants per request) under wrk on a real server (its decisions
    stored under `work`)."""
    bodies, port = bench.batch_bodies(work / "batch.json"), harness.free_port()
    argv, url = harness.bentoml_serve("service:CreditRiskService", port), f"http://127.0.0.1:{port}"
    env = {"CREDIT_RISK_MODEL": tag, "CREDIT_RISK_API_TOKENS": "", "CREDIT_RISK_CHALLENGER": "none"}
    env[STORE_ENV] = f"sqlite:///{work / 'decisions.sqlite'}"
    with harness.running(argv, work / "server.log", url=url, env=env):
        bench.run_wrk(url, bodies, "/classify_batch", API_CONNECTIONS, 3)  # warm-up
        result = bench.run_wrk(url, bodies, "/classify_batch", API_CONNECTIONS, API_SECONDS)
    seconds = result["duration_us"] / 1e6
    return {
        "connections": API_CONNECTIONS,
        "seconds": round(seconds, 1),
        "requests": result["requests"],
        "errors": sum(result["errors"].values()),
        "applicants_per_s": round(result["requests"] * bench.BATCH_SIZE / seconds),
    }


def run_spark(src: Path, out: Path, tag: str, rows: int) -> dict[str, Any]:
    """The Spark twin on `local[2]`, in a child process (its JVM and workers included)."""
    audit = out.with_name(f"{out.name}-runs.jsonl")
    argv = [sys.executable, "-m", "credit_risk.portfolio.spark", str(src), str(out)]
    argv += ["--id-column", "account_id", "--model", tag, "--master", "local[2]"]
    wall, stderr, record = child("spark job", [*argv, "--audit-log", str(audit)], audit)
    line = next(ln for ln in reversed(stderr.splitlines()) if ln.startswith("run "))
    scored_s = float(record["stage_seconds"]["score and write"])
    return {
        "rows": rows,
        "session_start_seconds": float(line.rsplit("started in ", 1)[1].split(" s")[0]),
        "account_seconds": record["stage_seconds"]["account"],
        "score_and_write_seconds": scored_s,
        "run_seconds": record["seconds"],
        "wall_seconds": round(wall, 1),
        "applicants_per_s": round(rows / scored_s),
        "applicants_per_s_wall": round(rows / wall),
    }


STAGES: Final = ("load model", "hash input", "read", "validate", "encode", "score", "decide")
STAGES_END: Final = ("write", "ids")  # the job's stages, in their order


def markdown(result: dict[str, Any]) -> str:
    """The report's table, the time split and the comparison."""
    job, big, api, spark = result["job"], result["job_rss"], result["api"], result["spark"]
    stages = {k: job["stage_seconds"][k] for k in STAGES + STAGES_END if k in job["stage_seconds"]}
    total = sum(job["stage_seconds"].values())
    return "\n".join([
        f"# Portfolio scoring benchmark ({result['date']})", "",
        f"`{result['command']}` on {result['machine']['cpus']} CPUs; machine load before the "
        f"run: {result['machine']['load_before']} busy cores. Model `{result['model']}`.", "",
        *harness.md_table(["path", "rows", "applicants/s", "notes"], [
            ["`credit-risk score` Parquet -> Parquet", f"{job['rows']:,}",
             f"{job['applicants_per_s']:,}", f"job clock {job['job_seconds']:.2f} s; "
             f"{job['applicants_per_s_wall']:,}/s including process start "
             f"({job['wall_seconds']:.1f} s)"],
            ["`credit-risk score`, peak RSS", f"{big['rows']:,}", f"{big['applicants_per_s']:,}",
             f"peak RSS {big['peak_rss_mb']:,.0f} MB"],
            ["`credit-risk score`, CPU time (whole process)", f"{job['rows']:,}",
             f"{job['applicants_per_cpu_s']:,} per CPU-second",
             f"{job['cpu_seconds']:.1f} CPU-s (process start and model load included)"],
            [f"`/classify_batch` (1,000 per request, {api['connections']} connections)",
             f"{api['requests'] * 1000:,}", f"{api['applicants_per_s']:,}",
             f"{api['errors']} errors"],
            ["Spark `local[2]` (`mapInArrow`)", f"{spark['rows']:,}",
             f"{spark['applicants_per_s']:,}",
             f"session start {spark['session_start_seconds']:.1f} s; "
             f"{spark['applicants_per_s_wall']:,}/s including it"],
        ]),
        "", f"Where the job's time goes ({job['rows']:,} rows):", "",
        *harness.md_table(["stage", "seconds", "share"],
                          [[k, f"{v:.3f}", f"{v / total:.0%}"] for k, v in stages.items()]),
        "",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Build the portfolios, measure every path, write the reports (`make bench-portfolio`)."""
    options = {"--rows": (int, 1_000_000, "applicants"), "--rss-rows": (int, 5_000_000, "for RSS")}
    args = harness.cli(__doc__, options).parse_args(argv)
    tag = harness.resolve_model_tag()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command or harness.command_line("load_tests.portfolio_bench", argv),
        "model": tag,
        "machine": {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)},
    }
    with tempfile.TemporaryDirectory(prefix="portfolio-bench-") as tmp:
        work = Path(tmp)
        book, big, audit = work / "book.parquet", work / "book-big.parquet", work / "runs.jsonl"
        build_portfolio(book, args.rows)
        build_portfolio(big, args.rss_rows)
        steps = {
            "job": lambda: run_job(book, work / "out.parquet", tag, audit),
            "job_rss": lambda: run_job(big, work / "out-big.parquet", tag, audit),
            "api": lambda: run_api(work, tag),
            "spark": lambda: run_spark(book, work / "spark-out", tag, args.rows),
        }
        for name, step in steps.items():
            print(f"[portfolio-bench] {name}", file=sys.stderr, flush=True)
            result[name] = step()
            print(f"[portfolio-bench] {json.dumps(result[name])}", file=sys.stderr, flush=True)
    result["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    harness.write_report(args.out, "portfolio-bench", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
