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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
