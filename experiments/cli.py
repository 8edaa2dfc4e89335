"""The `aif` command line: simulate reference policies, train, reproduce the paper, plot and diagnose.

Each command is a thin shell over a function in `experiments`; heavy imports happen inside commands.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup


def _without_flag_types(params: list[Any]) -> list[Any]:
    # typer's rich help shows "<bool>" beside every flag (--help, --version, --no-progress) as
    # if it took a value; an empty metavar shows nothing there and changes nothing else.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    """A command whose help shows no value type beside its flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class _Group(TyperGroup):
    """The top-level group, with no value type beside its flags either."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


app = typer.Typer(
    name="aif",
    cls=_Group,
    help="Active inference for cloud-edge LLM offloading: simulate, train, reproduce, report, plot, diagnose.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    """Print the installed version and exit: the eager ``--version`` option."""
    if value:
        import importlib.metadata

        typer.echo(f"aif-offload {importlib.metadata.version('aif-offload')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    # Options that apply before any command; --version acts in its callback.
    pass


#: The most seeds one command takes (one run each); a longer list is a typo, not a plan.
MAX_SEEDS = 10_000
#: What `aif diagnose --model` and `aif reproduce --figure/--profile` take, known here so that a bad
#: option is answered before the seconds of importing the code behind them (a test keeps these
#: equal to ``experiments.diagnose.MODELS``, ``experiments.reproduce.FIGURES`` and ``PROFILES``).
DIAGNOSE_MODELS: tuple[str, ...] = ("server-states", "random", "gaussian")
REPRODUCE_FIGURES: tuple[int, ...] = (3, 4, 5)
REPRODUCE_PROFILES: tuple[str, ...] = ("quick", "paper")
REPRODUCE_SUITES: tuple[str, ...] = ("fair-quick", "fair")


def _parse_seeds(seeds: str) -> list[int]:
    """Parse "0,1,2" or "0-4" into a list of seeds (integers >= 0), or a one-line error."""
    out: list[int] = []
    for part in seeds.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                if len(out) + hi - lo + 1 > MAX_SEEDS:
                    _fail(f"--seeds {seeds!r}: more than {MAX_SEEDS} seeds")
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            _fail(
                f"--seeds {seeds!r}: {part!r} is not a seed (an integer >= 0) or a range like 0-4"
            )
        if out and min(out) < 0:
            _fail(f"--seeds {seeds!r}: seeds must be >= 0, got {min(out)}")
    if not out:
        _fail(f"--seeds {seeds!r} holds no seed; give e.g. 0,1,2 or 0-4")
    if len(out) > MAX_SEEDS:
        _fail(f"--seeds {seeds!r}: more than {MAX_SEEDS} seeds")
    return out


def _fail(message: str) -> NoReturn:
    """Print a one-line error to stderr and exit with code 2 (bad usage), without a traceback."""
    typer.echo(f"aif: error: {message}", err=True)
    raise typer.Exit(code=2)


def _check_out(option: str, path: Path, folder: bool = False) -> None:
    """A one-line error unless results can be written at ``path`` (a file, or a folder)."""
    from experiments.atomic import check_writable

    try:
        check_writable(path, folder=folder)
    except ValueError as err:
        _fail(f"{option} {err}")


#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130
_interrupt_reported = False


@contextmanager
def _interruptible(kept: str) -> Iterator[None]:
    """Turn Ctrl-C into one line on stderr (what is kept) and exit code 130, with no traceback.

    The line is printed at once, before the work unwinds (closing a Dask cluster takes seconds).
    """
    global _interrupt_reported

    def report() -> None:
        global _interrupt_reported
        if not _interrupt_reported:
            typer.echo(f"\naif: interrupted; {kept}", err=True)
            _interrupt_reported = True

    def on_sigint(signum: int, frame: Any) -> None:
        report()
        # A second Ctrl-C interrupts the clean-up itself.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Worker processes (a local Dask cluster's) would finish their task before closing; what
        # they finished is on disk already, and their writes are atomic.
        for child in multiprocessing.active_children():
            child.kill()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        report()
        # Ctrl-C while the process ends would only add tracebacks.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise typer.Exit(INTERRUPTED) from None
    signal.signal(signal.SIGINT, previous)


#: Run in every worker process of a local Dask cluster: Ctrl-C in a terminal reaches the whole
#: process group, and it is this process's to handle (it ends the workers); without this, every
#: worker prints its own KeyboardInterrupt traceback.
_WORKER_IGNORES_CTRL_C = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)"


def _workers_leave_ctrl_c_here() -> None:
    """Make the worker processes of Dask clusters started from here ignore Ctrl-C."""
    import dask

    preload = list(dask.config.get("distributed.worker.preload", default=[]) or [])
    dask.config.set({"distributed.worker.preload": [*preload, _WORKER_IGNORES_CTRL_C]})


def _scenario_from_file(path: Path | None) -> Any:
    """The ScenarioConfig of ``--scenario-file`` (None without one), or a one-line error."""
    if path is None:
        return None
    from experiments.runconfig import load_scenario_file

    try:
        return load_scenario_file(path)
    except ValueError as err:
        _fail(f"--scenario-file: {err}")


@app.command(cls=_Command)
def simulate(
    policy: Annotated[
        str, typer.Option(help="Reference policies: 'all' or a comma list, e.g. cloud,edge_first.")
    ] = "all",
    scenario: Annotated[
        str, typer.Option(help="Scenario preset (`aif scenarios` lists them).")
    ] = "paper",
    tmax: Annotated[
        float | None, typer.Option(help="Task deadline t_max in seconds (default: the preset's).")
    ] = None,
    episodes: Annotated[int, typer.Option(help="Episodes per policy.")] = 5,
    seed: Annotated[int, typer.Option(help="Base seed (>= 0); episode k uses seed + k.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the metrics to this netCDF file when every policy has run; missing "
            "folders are created."
        ),
    ] = None,
    scenario_file: Annotated[
        Path | None,
        typer.Option(
            help="A scenario as JSON or YAML (ScenarioConfig fields); replaces --scenario."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Evaluate reference policies on a scenario and print the metrics table with a legend."""
    if tmax is not None and not 0 < tmax <= 3600:
        _fail(f"--tmax {tmax} must lie in (0, 3600] seconds")
    if episodes < 1:
        _fail(f"--episodes {episodes} must be >= 1")
    if seed < 0:
        _fail(f"--seed {seed} must be >= 0 (episode k plays env seed SEED + k)")
    if out is not None:
        _check_out("--out", out)
    from baselines import policy_names
    from environments import PRESETS

    known = policy_names()
    names = known if policy == "all" else [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        _fail(f"--policy {policy!r}: expected 'all' or names from {known}")
    if scenario not in PRESETS:
        _fail(f"--scenario {scenario!r} is unknown; expected one of {list(PRESETS)}")
    config = _scenario_from_file(scenario_file)
    if tmax is None:
        from environments import ScenarioConfig

        tmax = float((config or ScenarioConfig.preset(scenario)).t_max)
    from experiments.simulate import main

    with _interruptible("nothing was written (--out is written when every policy has run)"):
        main(
            policy=names,
            scenario=scenario if config is None else config,
            tmax=tmax,
            episodes=episodes,
            seed=seed,
            out=out,
            show_progress=progress,
        )


@app.command(cls=_Command)
def diagnose(
    model: Annotated[
        str, typer.Option(help="Built-in model: server-states, random or gaussian.")
    ] = "server-states",
    run: Annotated[
        Path | None,
        typer.Option(help="An `aif train` run folder of a structured agent: show its beliefs."),
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Folder for the DataTree and figures.")] = Path(
        "runs/diagnose"
    ),
    seed: Annotated[int, typer.Option(help="Seed (with --run: which seed's checkpoint).")] = 0,
    steps: Annotated[int, typer.Option(help="SVI steps.")] = 500,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Free-energy diagnostics of a built-in model, or the posterior beliefs of a trained agent."""
    _check_out("--out-dir", out_dir, folder=True)
    if seed < 0:
        _fail(f"--seed {seed} must be >= 0")
    kept = f"files already in {out_dir} are whole (each is written atomically)"
    if run is not None:
        if not (run / "run.json").is_file():
            _fail(f"--run {run} holds no run.json: give the --out folder of `aif train`")
        from experiments.agent_diagnose import diagnose_run

        try:
            with _interruptible(kept):
                result = diagnose_run(run, seed, out_dir)
        except ValueError as err:
            _fail(str(err))
        from rich.console import Console

        Console(width=160).print(result.summary.to_string())
        for path in result.files:
            typer.echo(f"wrote {path}")
        return
    if model not in DIAGNOSE_MODELS:
        _fail(f"--model {model!r} is unknown; expected one of {list(DIAGNOSE_MODELS)}")
    if steps < 1:
        _fail(f"--steps {steps} must be >= 1")
    with _interruptible(kept):
        from experiments.diagnose import main

        main(model=model, out_dir=out_dir, seed=seed, steps=steps, progress=progress)


@app.command(cls=_Command)
def train(
    agent: Annotated[
        str, typer.Option(help="Learner: run `aif agents` for the list (aif, aif-paper, ppo, ...).")
    ] = "aif",
    scenario: Annotated[
        str, typer.Option(help="Scenario preset (`aif scenarios` lists them).")
    ] = "paper",
    tmax: Annotated[
        float | None, typer.Option(help="Task deadline t_max in seconds (default: the preset's).")
    ] = None,
    episodes: Annotated[int, typer.Option(help="Training episodes per seed.")] = 100,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. '0,1,2' or '0-4'.")] = "0,1,2",
    tasks: Annotated[
        int | None, typer.Option(help="Tasks per episode (default: the preset's).")
    ] = None,
    eval_every: Annotated[
        int, typer.Option(help="Evaluate on held-out env seeds every N episodes (0: never).")
    ] = 10,
    eval_episodes: Annotated[int, typer.Option(help="Held-out episodes per evaluation.")] = 5,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Learner setting key=value (repeatable), e.g. --set learning_rate=3e-4."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu or cuda.")] = "cpu",
    obs_noise: Annotated[
        float, typer.Option(help="Noise std of server readings, in [0, 1] (0: exact).")
    ] = 0.0,
    workers: Annotated[
        int, typer.Option(help="Seeds trained at once (a Dask LocalCluster when > 1).")
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler to use instead.")
    ] = None,
    references: Annotated[
        str, typer.Option(help="Reference policies on the same env seeds ('all', '' or a list).")
    ] = "all",
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: run.json, checkpoints/, results.nc (created with missing folders)."
        ),
    ] = Path("runs/train"),
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    scenario_file: Annotated[
        Path | None,
        typer.Option(
            help="A scenario as JSON or YAML (ScenarioConfig fields); replaces --scenario."
        ),
    ] = None,
) -> None:
    """Train a learner (active inference or deep RL); resumable from the run folder's checkpoints."""
    for name, value, low in (("--episodes", episodes, 1), ("--workers", workers, 1)):
        if value < low:
            _fail(f"{name} {value} must be >= {low}")
    seed_list = _parse_seeds(seeds)
    _check_out("--out", out, folder=True)
    from experiments.runconfig import TrainConfig, parse_setting
    from learners import learner_names

    if agent not in learner_names():
        _fail(f"--agent {agent!r} is unknown; expected one of {learner_names()}")
    from baselines import policy_names

    if references == "all":
        refs = policy_names()
    else:
        refs = [r.strip() for r in references.split(",") if r.strip()]
        unknown = [r for r in refs if r not in policy_names()]
        if unknown:
            _fail(
                f"--references {unknown} unknown; expected 'all', '' or names from {policy_names()}"
            )
    scenario_json = None
    loaded = _scenario_from_file(scenario_file)
    if loaded is not None:
        scenario_json, scenario = loaded.model_dump_json(), loaded.name
    if tmax is None:
        from environments import PRESETS, ScenarioConfig

        if loaded is not None:
            tmax = float(loaded.t_max)
        elif scenario in PRESETS:
            tmax = float(ScenarioConfig.preset(scenario).t_max)
        else:
            _fail(f"--scenario {scenario!r} is unknown; expected one of {list(PRESETS)}")
    try:
        settings = tuple(parse_setting(text) for text in (setting or []))
        cfg = TrainConfig(
            agent=agent,
            scenario_json=scenario_json,
            scenario=scenario,
            t_max=tmax,
            episodes=episodes,
            seeds=tuple(seed_list),
            tasks_per_episode=tasks,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            device=device,
            obs_noise=obs_noise,
            settings=settings,
        )
    except ValueError as err:
        _fail(str(err))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail(f"--device {device}: no CUDA device is available here; use --device cpu")
    from experiments.report import print_training_summary
    from experiments.train import RunMismatchError, _check_run_folder, check_rounds, run_training
    from learners import build_learner

    kept = (
        f"the checkpoints in {out / 'checkpoints'} are kept; run the same command again to resume"
    )
    if workers > 1 and scheduler is None:
        _workers_leave_ctrl_c_here()
    try:
        with _interruptible(kept):
            # Rejects bad settings and budgets off the learner's rounds before any training.
            check_rounds(cfg, build_learner(cfg.context(), seed_list[0]))
            _check_run_folder(cfg, out)
            tree = run_training(
                cfg, out, references=refs, progress=progress, workers=workers, scheduler=scheduler
            )
    except RunMismatchError as err:
        _fail(str(err))
    except ValueError as err:
        _fail(f"--set: {err}" if setting else str(err))
    print_training_summary(tree)
    typer.echo(f"results: {out / 'results.nc'}")


def _parse_figures(text: str) -> list[int]:
    """Parse ``3``, ``3,5`` or ``all`` into figure numbers, with a one-line error otherwise."""
    if text.strip() == "all":
        return list(REPRODUCE_FIGURES)
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part not in {str(f) for f in REPRODUCE_FIGURES}:
            _fail(
                f"--figure {text!r}: expected 'all' or figure numbers from "
                f"{list(REPRODUCE_FIGURES)}"
            )
        out.append(int(part))
    return out


@app.command(cls=_Command)
def reproduce(
    figure: Annotated[
        str, typer.Option(help="Figures to reproduce: 3, 4, 5, a comma list, or 'all'.")
    ] = "all",
    profile: Annotated[
        str,
        typer.Option(
            help="quick (minutes on 2 cores, tiny budgets) or paper (the full experiment)."
        ),
    ] = "quick",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run folder (default runs/reproduce-PROFILE): cells/, checkpoints/, results.nc, "
            "report.md, figures."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes of a local Dask cluster (default: CPUs).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of a running Dask scheduler (tcp://host:8786) instead."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Learners, comma separated (default: the profile's aif, rainbow, ppo, sac that "
            "are registered)."
        ),
    ] = None,
    docs: Annotated[
        Path | None,
        typer.Option(
            help="Also write the results into this page's generated section (docs/reproduction.md)."
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            help="Run a suite of worlds instead of the paper's figures: fair-quick (minutes) or "
            "fair (the fair test, about an hour on 2 cores); --docs takes docs/benchmark.md."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress and the dashboard address.")] = True,
) -> None:
    """Reproduce the paper's Figs. 3-5 and a summary table, one Dask task per (method, seed, setting).

    Finished cells are kept under OUT/cells and skipped when the command runs again.

    With --suite, run a suite of worlds (every learner against the upper bound) the same way.
    """
    if suite is not None:
        _reproduce_suite(suite, out, workers, scheduler, docs, progress)
        return
    figures = _parse_figures(figure)
    if profile not in REPRODUCE_PROFILES:
        _fail(f"--profile {profile!r} is unknown; expected one of {list(REPRODUCE_PROFILES)}")
    if workers is not None and workers < 1:
        _fail(f"--workers {workers} must be >= 1")
    if workers is not None and scheduler is not None:
        _fail("--workers and --scheduler exclude each other: give one")
    method_list = None
    if methods is not None:
        from learners import learner_names

        method_list = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in method_list if m not in learner_names()]
        if unknown or not method_list:
            _fail(f"--methods {methods!r}: expected names from {learner_names()}")
    folder = out if out is not None else Path("runs") / f"reproduce-{profile}"
    _check_out("--out", folder, folder=True)
    if docs is not None:
        if not docs.is_file():
            _fail(f"--docs {docs} is not a file; give the page to update (docs/reproduction.md)")
        if "<!-- generated:reproduction -->" not in docs.read_text():
            _fail(f"--docs {docs} has no '<!-- generated:reproduction -->' section to replace")
        _check_out("--docs", docs)
    kept = (
        f"the finished cells in {folder / 'cells'} are kept; run the same command again to "
        "compute only the rest"
    )
    from experiments.reproduce import (
        PROFILES,
        ReproductionError,
        make_plan,
        run_reproduction,
        update_docs_page,
    )

    if scheduler is None:
        _workers_leave_ctrl_c_here()
    try:
        with _interruptible(kept):
            make_plan(PROFILES[profile], figures, method_list)
            result = run_reproduction(
                profile,
                folder,
                figures=figures,
                methods=method_list,
                workers=workers,
                scheduler=scheduler,
                progress=progress,
                log=typer.echo,
            )
    except (ReproductionError, ValueError) as err:
        _fail(str(err))
    from experiments.reproduce import summary_table

    typer.echo(f"cells: {result.computed} computed, {result.reused} reused")
    typer.echo(summary_table(result.tree))
    if docs is not None:
        parts = [f"--figure {figure}"] if figure != "all" else []
        parts += [f"--methods {methods}"] if methods else []
        command = " ".join(["aif reproduce", f"--profile {profile}", *parts])
        for path in update_docs_page(result.results, docs, command):
            typer.echo(f"wrote {path}")
    typer.echo(f"results: {result.results}")
    typer.echo(f"report: {result.report}")


def _reproduce_suite(
    name: str,
    out: Path | None,
    workers: int | None,
    scheduler: str | None,
    docs: Path | None,
    progress: bool,
) -> None:
    """`aif reproduce --suite NAME`: run a suite on Dask, write its report (and docs section)."""
    if name not in REPRODUCE_SUITES:
        _fail(f"--suite {name!r} is unknown; expected one of {list(REPRODUCE_SUITES)}")
    if workers is not None and workers < 1:
        _fail(f"--workers {workers} must be >= 1")
    if workers is not None and scheduler is not None:
        _fail("--workers and --scheduler exclude each other: give one")
    folder = out if out is not None else Path("runs") / f"suite-{name}"
    _check_out("--out", folder, folder=True)
    mark = f"<!-- generated:suite-{name} -->"
    if docs is not None:
        if not docs.is_file():
            _fail(f"--docs {docs} is not a file; give the page to update (docs/benchmark.md)")
        if mark not in docs.read_text():
            _fail(f"--docs {docs} has no '{mark}' section to replace")
        _check_out("--docs", docs)
    kept = (
        f"the finished cells under {folder} are kept; run the same command again to compute "
        "only the rest"
    )
    from experiments.reproduce import ReproductionError
    from experiments.reproduce.suite import run_suite
    from experiments.reproduce.suite_report import render_suite_report, update_suite_page

    if scheduler is None:
        _workers_leave_ctrl_c_here()
    try:
        with _interruptible(kept):
            result = run_suite(
                name, folder, workers=workers, scheduler=scheduler, progress=progress,
                log=typer.echo,
            )  # fmt: skip
            report = render_suite_report(result.results)
            if docs is not None:
                for path in update_suite_page(
                    result.results, docs, f"aif reproduce --suite {name}"
                ):
                    typer.echo(f"wrote {path}")
    except (ReproductionError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"cells: {result.computed} computed, {result.reused} reused")
    typer.echo(f"results: {result.results}")
    typer.echo(f"report: {report}")


@app.command(cls=_Command)
def bound(
    scenario: Annotated[
        str, typer.Option(help="Scenario preset (`aif scenarios` lists them).")
    ] = "paper",
    tmax: Annotated[
        float | None, typer.Option(help="Task deadline t_max in seconds (default: the preset's).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Env seeds of the episodes: 0,1,2 or 0-4.")] = "0",
    tasks: Annotated[
        int | None, typer.Option(help="Tasks per episode (default: the preset's).")
    ] = None,
    dt: Annotated[
        float, typer.Option(help="Slot length (s) of the relaxation; smaller is tighter, slower.")
    ] = 0.5,
    scenario_file: Annotated[
        Path | None,
        typer.Option(
            help="A scenario as JSON or YAML (ScenarioConfig fields); replaces --scenario."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Print an upper bound on any policy's total rg and completion, per episode (HiGHS LP).

    An LP relaxation of the realised episode that no policy can exceed (docs/bound.md).

    A paper episode (100 tasks) takes about a minute on a 2-core laptop.
    """
    if tmax is not None and not 0 < tmax <= 3600:
        _fail(f"--tmax {tmax} must lie in (0, 3600] seconds")
    if tasks is not None and not 1 <= tasks <= 100_000:
        _fail(f"--tasks {tasks} must lie in [1, 100000]")
    if not 0 < dt <= 60:
        _fail(f"--dt {dt} must lie in (0, 60] seconds")
    seed_list = _parse_seeds(seeds)
    from environments import PRESETS

    if scenario not in PRESETS:
        _fail(f"--scenario {scenario!r} is unknown; expected one of {list(PRESETS)}")
    config = _scenario_from_file(scenario_file)
    from experiments.bounds import bound_table

    with _interruptible("nothing is kept (the table is printed when every episode is bounded)"):
        try:
            text = bound_table(
                scenario if config is None else config,
                seed_list,
                t_max=tmax,
                tasks=tasks,
                dt=dt,
                progress=progress,
            )
        except ValueError as err:
            _fail(str(err))
    typer.echo(text)


@app.command(cls=_Command)
def scenarios() -> None:
    """List the scenario presets with their tasks per episode, t_max and a line each."""
    from experiments.bounds import scenario_lines

    for line in scenario_lines():
        typer.echo(line)


@app.command(cls=_Command)
def agents() -> None:
    """List the learners `aif train --agent` takes, with their family and a line each."""
    from learners import learner_names, learner_spec

    for name in learner_names():
        spec = learner_spec(name)
        typer.echo(f"{name:28s} {spec.family:17s} {spec.description}")


@app.command(cls=_Command)
def plot(
    results: Annotated[
        list[Path],
        typer.Argument(help="results.nc files of `aif train` (or one of `aif reproduce`)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Figure file; the suffix picks the format (.png, .pdf, .svg, ...). Missing "
            "folders are created."
        ),
    ] = Path("runs/fig3.png"),
    smooth: Annotated[int, typer.Option(min=1, help="Moving-average width over episodes.")] = 1,
) -> None:
    """Render the paper's Fig. 3 panels (training curves, 95% intervals over seeds) from result files."""
    _check_out("--out", out)
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if out.suffix.lstrip(".").lower() not in formats:
        _fail(
            f"--out {out}: {repr(out.suffix) if out.suffix else 'no suffix'} names no image "
            f"format; give a file ending in one of {', '.join('.' + f for f in formats)}"
        )
    trees = [_open_results(path, reproduction=len(results) == 1) for path in results]
    for tree in trees:
        tree.close()
    from experiments.plot import plot_training

    try:
        figure = plot_training(results, out, smooth)
    except KeyError as err:
        _fail(f"result files {[str(p) for p in results]} lack {err} for Fig. 3")
    typer.echo(f"figure: {figure}")


@app.command(cls=_Command)
def report(
    results: Annotated[Path, typer.Argument(help="results.nc from `aif train`.")],
    window: Annotated[int, typer.Option(min=1, help="Final episodes averaged.")] = 10,
) -> None:
    """Print the agent's final metrics beside the reference policies, and its convergence speed."""
    from experiments.report import print_training_summary

    tree = _open_results(results)
    if window < 1:
        _fail(f"--window {window} must be >= 1")
    print_training_summary(tree, window)


def _open_results(path: Path, reproduction: bool = False) -> Any:
    """The results DataTree of `aif train` at ``path`` (or, with ``reproduction``, of
    `aif reproduce`), or a one-line error (exit 2).

    The file is first read whole in a child process (``experiments.report.check_readable``): a
    damaged file can send the HDF5 library into a loop that ignores Ctrl-C.
    """
    if path.is_dir():
        inside = path / "results.nc"
        hint = f"; {inside} is there" if inside.is_file() else ""
        _fail(f"result file {path} is a folder; give the results.nc of `aif train`{hint}")
    if not path.is_file():
        _fail(f"result file {path} does not exist (give the results.nc of `aif train`)")
    import xarray as xr

    from experiments.report import ResultsFileError, check_readable

    try:
        check_readable(path)
        tree = xr.open_datatree(path, engine="h5netcdf")
    except ResultsFileError as err:
        _fail(str(err))
    except Exception as err:  # netCDF readers raise many kinds for a damaged file
        _fail(f"result file {path} cannot be read as netCDF ({type(err).__name__})")
    if reproduction and tree.attrs.get("kind") == "reproduction":
        if "training" not in tree.children:
            _fail(f"result file {path} is a reproduction without Fig. 3 (no /training group)")
        return tree
    if "episodes" not in tree.children:
        what = "of `aif train`" + (" or `aif reproduce`" if reproduction else "")
        _fail(f"result file {path} is not a results file {what} (no /episodes group)")
    return tree


def main() -> None:
    """Console-script entry point: usage errors are one line on stderr with exit code 2."""
    # Click's UsageError (bad or missing options, arguments or commands), reached through
    # typer's BadParameter, whichever click typer is built on.
    usage_error = typer.BadParameter.__base__
    try:
        code = app(standalone_mode=False)
    except usage_error as err:  # type: ignore[misc]
        message = err.format_message()
        if message:  # empty when no command was given: the help was printed
            typer.echo(f"aif: error: {message}", err=True)
        raise SystemExit(2) from None
    except typer.Abort:
        typer.echo("aif: aborted", err=True)
        raise SystemExit(INTERRUPTED) from None
    except KeyboardInterrupt:
        code = INTERRUPTED
    if code == INTERRUPTED and not _interrupt_reported:
        # Ctrl-C outside a command's own handler (typer turns it into a silent exit 130).
        typer.echo("\naif: interrupted", err=True)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
