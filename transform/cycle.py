"""One transform cycle in one Python process: the PSD history (history.py), then `sqlmesh plan
--auto-apply`, then `sqlmesh janitor`.

The transform step (crates/transform) runs this with the virtualenv's Python rather than
`sqlmesh` commands: SQLMesh's start-up (imports, project load, state) is about two seconds and
is paid once per cycle (twice when an incremental cycle meets a file out of release order and
turns into a full rebuild). Same settings as the CLI commands: unit tests and the linter are
skipped at run time (`make test` runs the tests), logs go to LOG_DIR, progress to stdout.

First the history: decide incremental or full (history.decide), stage the files to read, apply
them in one DuckDB transaction (history.apply). Then the plan builds the models on top of the
history. RESULT_JSON receives {"mode", "full_reason", "files_applied", "rows_read",
"changes_stored", "history_rows", "append_secs", "plan_secs"} once the history is committed.

Usage: python cycle.py LOG_DIR [RESULT_JSON]
Exit: 0 built (a janitor failure is a warning: superseded tables stay until the next cycle);
1 failed, with one `error:` line last.
"""

import json
import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent


def main() -> int:
    log_dir = sys.argv[1]
    result_path = sys.argv[2] if len(sys.argv) > 2 else None
    sys.path.insert(0, str(PROJECT))
    import history
    from config import DUCKDB_PATH, MANIFEST
    from sqlmesh import configure_logging, remove_excess_logs
    from sqlmesh.core.config import load_configs
    from sqlmesh.core.console import configure_console
    from sqlmesh.core.context import Context

    configure_logging(False, False, log_file_dir=log_dir, ignore_warnings=False)
    configure_console(ignore_warnings=False)

    def context_for(decision) -> Context:
        # config.py reads the staged files and the history's build when SQLMesh loads it.
        os.environ["MATERIA_STAGE_FILES"] = json.dumps(decision.stage)
        os.environ["MATERIA_HISTORY_BUILD"] = decision.build
        os.environ["MATERIA_HISTORY_SEQUENCE"] = str(decision.sequence)
        configs = load_configs(None, Context.CONFIG_TYPE, [str(PROJECT)])
        remove_excess_logs(log_dir, list(configs.values())[0].log_limit)
        return Context(paths=[str(PROJECT)], config=configs)

    context = None
    try:
        files = MANIFEST.get("psd", [])
        requested, digest, landed = history.request_from_env()
        lakehouse = DUCKDB_PATH.resolve()
        decision = history.decide(lakehouse, files, digest, requested)
        if decision.mode == "full":
            print(f"history: full rebuild of {len(files)} landing files: {decision.reason}", flush=True)
        else:
            print(f"history: incremental, {len(decision.stage)} new landing files", flush=True)
        context = context_for(decision)
        try:
            result = history.apply(context, decision, files, digest, landed)
        except history.OutOfOrder as e:
            print(f"history: full rebuild of {len(files)} landing files: {e.reason}", flush=True)
            context.close()
            decision = history.Decision(
                "full", e.reason, list(files), history.new_build(), len(files)
            )
            context = context_for(decision)
            result = history.apply(context, decision, files, digest, landed)
        if decision.mode == "incremental" and not decision.stage:
            print(
                "history: holds every landing file already; building the models on top "
                "(continuing an interrupted cycle, or forced)",
                flush=True,
            )
        history.kill_point("plan")
        started = time.monotonic()
        context.plan(auto_apply=True, no_prompts=True, skip_tests=True, skip_linter=True)
        result["plan_secs"] = round(time.monotonic() - started, 3)
        if result_path:
            with open(result_path, "w", encoding="utf-8") as f:
                json.dump(result, f)
        try:
            context.run_janitor(ignore_ttl=False)
        except Exception as e:  # noqa: BLE001 - the build itself succeeded
            print(f"warning: janitor failed, superseded tables stay until the next cycle: {e}")
    except Exception as e:  # noqa: BLE001 - reported to the transform step on one line
        message = " ".join(str(e).split())
        print(f"error: {type(e).__name__}: {message}", flush=True)
        return 1
    finally:
        if context is not None:
            context.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
