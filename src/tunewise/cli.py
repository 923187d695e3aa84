"""The command line: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import functools
import signal
import sqlite3
import sys
from pathlib import Path

import click

from .errors import Interrupted, TunewiseError

HOME_OPTION = click.option("--home", default=".tunewise", show_default=True, type=click.Path(),
                           callback=lambda ctx, param, value: _not_empty(value),
                           help="Directory of the results store and reports.")


def _not_empty(home: str) -> str:
    if not home.strip():  # "" would put the store in the current folder without a word
        raise click.BadParameter("is empty; name a directory (the default is .tunewise)")
    return home


def friendly(command):
    """One-line errors: exit code 2 for bad input, 1 for a failure at run time; a traceback only with
    --debug. Ctrl-C and SIGTERM stop the command through `Interrupted` (work in flight is finished and
    saved) and exit with 130 or 143."""
    @functools.wraps(command)
    def wrapper(*args, debug: bool = False, **kwargs):
        for sig in (signal.SIGINT, signal.SIGTERM):  # `kill` stops a run as Ctrl-C does: finished work saved
            signal.signal(sig, _interrupt)
        if not debug:
            _quiet_libraries()
        try:
            try:
                return command(*args, **kwargs)
            except sqlite3.Error as err:  # a store damaged inside, a read-only disk, another writer
                from .store.sqlite import store_error
                raise store_error(Path(kwargs.get("home") or ".tunewise") / "tunewise.db", err) from err
        except TunewiseError as err:
            if debug:
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt as err:
            click.echo("\ninterrupted: finished work is saved; run the same command again to resume.", err=True)
            sys.exit(128 + getattr(err, "signum", signal.SIGINT))  # the shell's convention: 130, or 143
        except Exception as err:  # noqa: BLE001  a failure nobody foresaw: still one line, exit 1
            if debug:
                raise
            click.echo(f"error: {_unexpected(err)}", err=True)
            sys.exit(1)
    return click.option("--debug", is_flag=True, help="Show full tracebacks.")(wrapper)


def _quiet_libraries() -> None:
    """Deprecation notices from torch, transformers and peft are for tunewise's authors, not its users."""
    import warnings
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def _unexpected(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        text = f"{where}{err.strerror}"
    else:
        text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    return f"{text} (unexpected; run again with --debug for the traceback)"


def _interrupt(signum, frame):
    raise Interrupted(signum)


class OneLineUsage(click.Group):
    """Click's own usage errors (an unknown option or command, a missing argument) in one line, like
    tunewise's errors: what is wrong and where the help is; exit code 2."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx else "tunewise"
            click.echo(f"error: {err.format_message().rstrip('.')}; see '{where} --help'", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:  # a bad file argument, for one
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)


@click.group(cls=OneLineUsage)
@click.version_option(package_name="tunewise")
def main() -> None:
    """Prompt engineering, fine-tuning, or both? Measured on your own task."""


def _seed_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        seeds = [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of seeds, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: seeds are distinct numbers, 0 or more")
    return seeds


def executor_options(command):
    """--executor, --address and --seeds: where the units run, and the re-splits to repeat the comparison on."""
    command = click.option("--seeds", callback=_seed_list,
                           help="Repeat the comparison on these split seeds, e.g. 0,1,2 (splits.seeds).")(command)
    command = click.option("--address", help="The Ray cluster for --executor ray (default: a local Ray).")(command)
    return click.option("--executor", type=click.Choice(["local", "ray"]),
                        help="Run arms, curve points and seeds here (local) or as Ray tasks (executor:).")(command)


def _with_options(task, executor: str | None, address: str | None, seeds: list[int] | None):
    """The task with the command line's executor and seeds in place of the file's."""
    update = {}
    if executor or address:
        update["executor"] = task.executor.model_copy(update={k: v for k, v in
                                                              (("type", executor), ("address", address)) if v})
    if seeds:
        update["splits"] = task.splits.model_copy(update={"seeds": seeds, "seed": seeds[0]})
    return task.model_copy(update=update) if update else task


def _budget(ctx, param, value: str | None):
    """--budget 20m, 20min, minutes=20, money=5, or both: minutes=20,money=5."""
    if value is None:
        return None
    from .task.schema import Budget
    limits = {}
    for part in value.replace(" ", "").split(","):
        name, _, number = part.rpartition("=")
        if not name:
            name, number = ("minutes", number.removesuffix("min").removesuffix("m")) \
                if number.endswith(("m", "min")) else ("money", number)
        try:
            limits[name] = float(number)
        except ValueError:
            raise click.BadParameter(f"{value!r}: give minutes=N, money=N, or Nm (e.g. 20m)") from None
    try:
        return Budget(**limits)
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: {str(err).splitlines()[-1].strip()}") from None


def plan_options(command):
    """--plan, --yes and --budget: the run's cost before it is spent, and a limit it is cut to fit."""
    command = click.option("--budget", callback=_budget, help="Cut the plan to fit: 20m, minutes=20, money=5 "
                                                             "(budget: in the task file).")(command)
    command = click.option("--yes", is_flag=True, help="With --plan: run without asking.")(command)
    return click.option("--plan", "show_plan", is_flag=True,
                        help="Print the run's plan (requests, tokens, seconds, money per unit) and ask to "
                             "continue.")(command)


@main.command("plan")
@click.argument("task_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--budget", callback=_budget, help="Cut the plan to fit: 20m, minutes=20, money=5.")
@executor_options
@friendly
def plan_command(task_file: Path, budget, executor: str | None, address: str | None, seeds: list[int] | None) -> None:
    """Print what running TASK_FILE would send and spend, unit by unit; its last line is the total."""
    from .execution.plan import plan_text
    from .execution.runner import make_plan
    from .task import load_task
    task = _with_options(load_task(task_file), executor, address, seeds)
    _, plan = make_plan(task, task_file=str(task_file), budget=budget,
                        log=lambda msg: click.echo(msg, err=True))
    click.echo("\n".join(plan_text(plan)))


@main.command("run")
@click.argument("task_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Treat leakage between splits as an error.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@plan_options
@executor_options
@HOME_OPTION
@friendly
def run_command(task_file: Path, strict: bool, no_progress: bool, show_plan: bool, yes: bool, budget,
                executor: str | None, address: str | None, seeds: list[int] | None, home: str) -> None:
    """Run every arm of TASK_FILE and print the comparison table."""
    from .task import load_task
    task = _with_options(load_task(task_file), executor, address, seeds)
    _run_and_show(task, str(task_file), home, strict, not no_progress, (show_plan, yes, budget))


@main.command("demo")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--quick", is_flag=True, help="Prompting arms only: no fine-tuning, no learning curve.")
@click.option("--write-task", type=click.Path(file_okay=False, path_type=Path),
              help="Only write the demo's task file and data here, to edit and run yourself.")
@click.option("--task", "which", type=click.Choice(["word_sentiment", "explain", "support"]),
              default="word_sentiment", show_default=True,
              help="word_sentiment: classification, prompting against fine-tuning; explain: open-ended "
                   "explanations scored by assertions (needs tunewise[assert]); support: customer-support "
                   "conversations, prompting and retrieval against LoRA and a LoRA + retrieval hybrid.")
@plan_options
@executor_options
@HOME_OPTION
@friendly
def demo_command(no_progress: bool, quick: bool, write_task: Path | None, which: str, show_plan: bool, yes: bool,
                 budget, executor: str | None, address: str | None, seeds: list[int] | None, home: str) -> None:
    """Run a bundled example on the embedded model (word sentiment unless --task says otherwise)."""
    from .demo import DEMOS, demo_task
    if write_task:
        click.echo(f"wrote {DEMOS[which](write_task, overwrite=False)}")
        return
    folder = "demo" if which == "word_sentiment" else f"demo-{which}"
    task, task_file = demo_task(Path(home) / folder, quick=quick, name=which)
    task = _with_options(task, executor, address, seeds)
    _run_and_show(task, str(task_file), home, False, not no_progress, (show_plan, yes, budget))


@main.command("show")
@click.argument("run_id", default="latest")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table")
@HOME_OPTION
@friendly
def show_command(run_id: str, fmt: str, home: str) -> None:
    """Print a stored run's table (RUN_ID, a unique prefix, or 'latest')."""
    from .reports import to_json
    from .reports.markdown import to_markdown
    from .reports.terminal import print_table
    report = _report(_open_store(home), run_id)
    if fmt == "json":
        click.echo(to_json(report))
    elif fmt == "markdown":
        click.echo(to_markdown(report))
    else:
        print_table(report)


@main.command("report")
@click.argument("run_id", default="latest")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory (default: the run's).")
@click.option("--open", "open_it", is_flag=True, help="Open the HTML report in a browser.")
@HOME_OPTION
@friendly
def report_command(run_id: str, out: Path | None, open_it: bool, home: str) -> None:
    """Write a run's HTML, Markdown and JSON reports from the store."""
    from .reports import write_reports
    report = _report(_open_store(home), run_id)
    paths = write_reports(report, out or Path(home) / "runs" / report.run_id, checked=out is not None)
    click.echo(f"wrote {paths['html']}, {paths['markdown'].name} and {paths['json'].name}")
    if open_it:
        import webbrowser
        webbrowser.open(paths["html"].resolve().as_uri())


@main.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@HOME_OPTION
@friendly
def compare_command(run_a: str, run_b: str, home: str) -> None:
    """Compare two runs arm by arm."""
    from .reports.terminal import print_comparison
    store = _open_store(home)
    print_comparison(_report(store, run_a), _report(store, run_b))


@main.command("runs")
@HOME_OPTION
@friendly
def runs_command(home: str) -> None:
    """List stored runs, newest first."""
    import datetime
    for run in _open_store(home).list_runs():
        when = datetime.datetime.fromtimestamp(run["created_at"]).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{run['id']}  {when}  {run['status']:<11} {run['task_name']}")


@main.command("export")
@click.argument("run_id")
@click.argument("arm", required=False)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="A new directory.")
@click.option("--merge", is_flag=True, help="LoRA arms: also write the adapter merged into the base model.")
@click.option("--gguf", "gguf", is_flag=False, flag_value="f16", default=None,
              type=click.Choice(["f16", "q8_0", "bf16", "f32"]),
              help="Also write the model as model.gguf (llama.cpp's converter; f16 unless a type is given) and "
                   "an Ollama Modelfile; with llama-cpp-python installed, the test answers are checked on it.")
@HOME_OPTION
@friendly
def export_command(run_id: str, arm: str | None, out: Path, merge: bool, gguf: str | None, home: str) -> None:
    """Write a run's ARM (default: the recommended one) as a bundle that predict and serve answer with."""
    from .ship.export import export
    path = export(_open_store(home), run_id, out, arm, merge=merge, gguf=gguf,
                  log=lambda msg: click.echo(msg, err=True))
    click.echo(f"wrote {path} (manifest.json, prompt.json, README.md"
               f"{''.join(', ' + p.name + '/' for p in sorted(path.iterdir()) if p.is_dir())})")


@main.command("predict")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL answers: a new file, or one predict wrote (resumed).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Rows answered (and saved) together.")
@click.option("--id-field", default="id", show_default=True, help="The field naming each row (else its line).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@friendly
def predict_command(bundle: Path, input_file: Path, out: Path, batch_size: int, id_field: str, device: str,
                    no_progress: bool) -> None:
    """Answer every row of INPUT (JSONL, CSV, Parquet) with BUNDLE; a rerun skips rows already in --out."""
    from .backends.models import progress_bars
    from .ship.bundle import Bundle
    from .ship.predict import predict_file
    with progress_bars(not no_progress):
        loaded = Bundle.load(bundle, device=device)
        result = predict_file(loaded, input_file, out, batch_size=batch_size, id_field=id_field,
                              progress=not no_progress, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"wrote {result.written} answers to {result.out}" +
               (f" ({result.skipped} already there)" if result.skipped else ""))
    for name, m in (result.summary or {}).get("metrics", {}).items():
        click.echo(f"{name}: {m['value']:.3f} (95% CI {m['low']:.3f}–{m['high']:.3f}, n={result.summary['n']})")


@main.command("serve")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 exposes it to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", envvar="TUNEWISE_API_KEY", help="Required bearer token (or TUNEWISE_API_KEY).")
@click.option("--model-name", help="The model id clients send (default: the bundle's name).")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(min=1),
              help="Requests answered in one engine call; 1 answers one at a time.")
@click.option("--batch-window-ms", default=5.0, show_default=True, type=click.FloatRange(min=0, max=10_000),
              callback=lambda ctx, param, value: _a_number(param, value),
              help="How long a request waits for others to batch with.")
@click.option("--max-tokens", default=1024, show_default=True, type=click.IntRange(min=1),
              help="The most tokens a request may ask for.")
@click.option("--max-body-bytes", default=1_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--max-messages", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--read-timeout-s", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              callback=lambda ctx, param, value: _a_number(param, value),
              help="A request whose body takes longer to arrive is dropped (408), with one log line.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@friendly
def serve_command(bundle: Path, device: str, **options) -> None:
    """Answer as BUNDLE over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from .ship.bundle import Bundle
    from .ship.serve import ServeSettings, require, serve
    require()
    settings = ServeSettings(**options)
    loaded = Bundle.load(bundle, device=device)
    serve(loaded, settings, log_line=lambda msg: click.echo(msg, err=True))


def _a_number(param, value: float) -> float:
    if value != value:  # click's ranges let NaN through: every comparison with it is false
        raise click.BadParameter("is not a number", param=param)
    return value


def _open_store(home: str):
    """The store, read-only: reading commands write nothing, so they work on a read-only home."""
    from .store.sqlite import Store
    path = Path(home) / "tunewise.db"
    if Path(home).exists() and not Path(home).is_dir():
        raise TunewiseError("--home: is a file, not a directory", file=home)
    if not path.is_file():
        raise TunewiseError(f"no results store at {path}; run a task first")
    return Store(path, readonly=True)


def _report(store, run_id: str):
    from .analysis.build import build_report
    from .errors import RunError
    try:
        if store.get_run(run_id) is None:
            raise TunewiseError(f"no run {run_id!r} in {store.path}; tunewise runs lists them")
        return build_report(store, run_id)
    except (TunewiseError, sqlite3.DatabaseError):
        raise
    except Exception as err:  # one damaged run must not look like a broken store
        raise RunError(f"run {run_id!r} cannot be analysed ({type(err).__name__}: {err}); the other runs are "
                       f"unaffected (tunewise runs lists them)") from err


def _run_and_show(task, task_file: str, home: str, strict: bool, progress: bool, planning=(False, False, None)):
    import time

    from .execution.runner import backends_for, make_plan, run
    from .reports.terminal import print_table
    show_plan, yes, budget = planning
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    start = time.perf_counter()
    make, plan = backends_for(task), None
    if show_plan or budget:
        task, plan = make_plan(task, backend_factory=make, task_file=task_file, budget=budget, log=log)
    if show_plan:
        from .execution.plan import plan_text
        click.echo("\n".join(plan_text(plan)))
        if not yes and not click.confirm("continue?", default=True, err=True):
            click.echo("nothing run", err=True)
            return
    result = run(task, home=home, strict=strict, progress=progress, task_file=task_file, log=log,
                 backend_factory=make, plan=plan)
    print_table(result.report)
    click.echo(f"run {result.run_id} in {time.perf_counter() - start:.1f} s; "
               f"report: {result.report_paths['html']} (also {result.report_paths['markdown'].name}, "
               f"{result.report_paths['json'].name})")


if __name__ == "__main__":
    main()
