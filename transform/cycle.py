"""One transform cycle in one Python process: `sqlmesh plan --auto-apply`, then `sqlmesh janitor`.

The transform step (crates/transform) runs this with the virtualenv's Python rather than two
`sqlmesh` commands: SQLMesh's start-up (imports, project load, state) is about two seconds and
is paid once per cycle. Same settings as the CLI commands: unit tests and the linter are skipped
at run time (`make test` runs the tests), logs go to LOG_DIR, progress to stdout.

Usage: python cycle.py LOG_DIR
Exit: 0 built (a janitor failure is a warning: superseded tables stay until the next cycle);
1 failed, with one `error:` line last.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent


def main() -> int:
    log_dir = sys.argv[1]
    from sqlmesh import configure_logging, remove_excess_logs
    from sqlmesh.core.config import load_configs
    from sqlmesh.core.console import configure_console
    from sqlmesh.core.context import Context

    configure_logging(False, False, log_file_dir=log_dir, ignore_warnings=False)
    configure_console(ignore_warnings=False)
    context = None
    try:
        configs = load_configs(None, Context.CONFIG_TYPE, [str(PROJECT)])
        remove_excess_logs(log_dir, list(configs.values())[0].log_limit)
        context = Context(paths=[str(PROJECT)], config=configs)
        context.plan(auto_apply=True, no_prompts=True, skip_tests=True, skip_linter=True)
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
