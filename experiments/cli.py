"""The `aif` command line: simulate reference policies, train the agent, plot and diagnose.

Each command is a thin shell over a function in `experiments`; heavy imports happen inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="aif",
    help="Active inference for cloud-edge LLM offloading: simulate, train, plot, diagnose.",
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


def _parse_seeds(seeds: str) -> list[int]:
    """Parse "0,1,2" or "0-4" into a list of ints, with a clear error on bad input."""
    out: list[int] = []
    for part in seeds.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise typer.BadParameter(
                f"seed list {seeds!r}: {part!r} is not an integer or a range like 0-4"
            ) from None
    if not out:
        raise typer.BadParameter(f"seed list {seeds!r} is empty")
    return out


@app.command()
def simulate(
    policy: Annotated[str, typer.Option(help="Reference policy name, or 'all'.")] = "all",
    scenario: Annotated[str, typer.Option(help="Scenario preset: paper or large.")] = "paper",
    tmax: Annotated[float, typer.Option(help="Task deadline t_max in seconds.")] = 15.0,
    episodes: Annotated[int, typer.Option(min=1, help="Episodes per policy.")] = 5,
    seed: Annotated[int, typer.Option(help="Base seed; episode k uses seed + k.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the metrics to this netCDF file.")] = None,
) -> None:
    """Evaluate reference policies on a scenario and print the metrics table."""
    from experiments.simulate import main

    main(policy=policy, scenario=scenario, tmax=tmax, episodes=episodes, seed=seed, out=out)


@app.command()
def diagnose(
    model: Annotated[str, typer.Option(help="Built-in model to diagnose.")] = "server-states",
    out_dir: Annotated[Path, typer.Option(help="Folder for the DataTree and figures.")] = Path(
        "runs/diagnose"
    ),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="SVI steps.")] = 500,
) -> None:
    """Run free-energy diagnostics on a built-in generative model and save figures."""
    from experiments.diagnose import main

    main(model=model, out_dir=out_dir, seed=seed, steps=steps)


@app.command()
def train(
    agent: Annotated[
        str,
        typer.Option(
            help="Agent variant: aif, aif-no-info-gain, aif-env-reward, aif-single-member."
        ),
    ] = "aif",
    scenario: Annotated[str, typer.Option(help="Scenario preset: paper or large.")] = "paper",
    tmax: Annotated[float, typer.Option(help="Task deadline t_max in seconds.")] = 15.0,
    episodes: Annotated[int, typer.Option(min=1, help="Training episodes per seed.")] = 100,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. '0,1,2' or '0-4'.")] = "0,1,2",
    tasks: Annotated[
        int | None, typer.Option(min=1, help="Tasks per episode (default: the preset's).")
    ] = None,
    candidates: Annotated[int, typer.Option(min=1, help="CEM candidates J.")] = 128,
    elites: Annotated[int, typer.Option(min=1, help="CEM elites K.")] = 16,
    iterations: Annotated[int, typer.Option(min=1, help="CEM iterations I.")] = 3,
    horizon: Annotated[int, typer.Option(min=1, help="Planning horizon (tasks).")] = 2,
    ensemble: Annotated[
        int | None, typer.Option(min=1, help="Ensemble size (default: the variant's).")
    ] = None,
    fit_steps: Annotated[
        int | None, typer.Option(min=1, help="VFE gradient steps per refit (default 150).")
    ] = None,
    obs_noise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Noise std of server readings (0: exact).")
    ] = 0.0,
    workers: Annotated[
        int, typer.Option(min=1, help="Seeds trained at once (a Dask LocalCluster when > 1).")
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler to use instead.")
    ] = None,
    references: Annotated[
        str, typer.Option(help="Reference policies evaluated on the same env seeds ('' for none).")
    ] = "all",
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints/ and results.nc.")] = Path(
        "runs/train"
    ),
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the active-inference agent; resumable from the run folder's checkpoints."""
    from dataclasses import replace

    from aif.cem import CEMConfig
    from experiments.report import print_training_summary
    from experiments.train import TrainConfig, run_training

    try:
        cfg = TrainConfig.for_agent(
            agent,
            scenario=scenario,
            t_max=tmax,
            episodes=episodes,
            seeds=tuple(_parse_seeds(seeds)),
            tasks_per_episode=tasks,
            obs_noise=obs_noise,
            planner=CEMConfig(
                candidates=candidates, elites=elites, iterations=iterations, horizon=horizon
            ),
        )
        if ensemble is not None:
            cfg = replace(cfg, model=replace(cfg.model, ensemble_size=ensemble))
        if fit_steps is not None:
            cfg = replace(cfg, model=replace(cfg.model, fit_steps=fit_steps))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if references == "all":
        from baselines import POLICY_NAMES

        refs = list(POLICY_NAMES)
    else:
        refs = [r for r in references.split(",") if r]
    tree = run_training(
        cfg, out, references=refs, progress=progress, workers=workers, scheduler=scheduler
    )
    print_training_summary(tree)
    typer.echo(f"results: {out / 'results.nc'}")


@app.command()
def plot(
    results: Annotated[list[Path], typer.Argument(help="results.nc files from `aif train`.")],
    out: Annotated[Path, typer.Option(help="Figure file (.png, .pdf, .svg).")] = Path(
        "runs/fig3.png"
    ),
    smooth: Annotated[int, typer.Option(min=1, help="Moving-average width over episodes.")] = 1,
) -> None:
    """Render the paper's Fig. 3 panels (training curves) from result files."""
    from experiments.plot import plot_training

    for path in results:
        if not path.exists():
            raise typer.BadParameter(f"result file {path} does not exist")
    typer.echo(f"figure: {plot_training(results, out, smooth)}")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results.nc from `aif train`.")],
    window: Annotated[int, typer.Option(min=1, help="Final episodes averaged.")] = 10,
) -> None:
    """Print the agent's final metrics beside the reference policies, and its convergence speed."""
    import xarray as xr

    from experiments.report import print_training_summary

    if not results.exists():
        raise typer.BadParameter(f"result file {results} does not exist")
    tree = xr.open_datatree(results, engine="h5netcdf")
    print_training_summary(tree, window)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
