"""The plan of one reproduction: which learners run, at which settings, as which cells.

Methods are resolved through the learner registry; a default method not registered is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from experiments.reproduce.cells import Cell, Setting
from experiments.reproduce.profiles import FIGURES, Profile


@dataclass(frozen=True)
class Plan:
    """The cells of one ``aif reproduce`` call.

    Attributes
    ----------
    profile : Profile
    figures : tuple of int
        Figures asked for (3, 4, 5).
    methods : tuple of str
        Learners that run (registered names).
    skipped : tuple of str
        Default methods left out because they are not registered here.
    """

    profile: Profile
    figures: tuple[int, ...]
    methods: tuple[str, ...]
    skipped: tuple[str, ...] = field(default=())

    @property
    def training_setting(self) -> Setting:
        """The setting of training (Fig. 3 references and the summary table)."""
        return Setting(float(self.profile.t_max), int(self.profile.tasks))

    def tmax_settings(self) -> list[Setting]:
        """Fig. 4 settings: every t_max point at the training load (with the training t_max)."""
        p = self.profile
        points = sorted({float(t) for t in p.t_max_points} | {float(p.t_max)})
        return [Setting(t, int(p.tasks)) for t in points]

    def load_settings(self) -> list[Setting]:
        """Fig. 5 settings: every load point at the training t_max (with the training load)."""
        p = self.profile
        points = sorted({int(n) for n in p.load_points} | {int(p.tasks)})
        return [Setting(float(p.t_max), n) for n in points]

    def settings(self) -> list[Setting]:
        """Every setting held-out episodes are played at, each once."""
        out = [self.training_setting]
        if 4 in self.figures:
            out += self.tmax_settings()
        if 5 in self.figures:
            out += self.load_settings()
        return list(dict.fromkeys(out))

    def cells(self) -> list[Cell]:
        """Training cells first, then evaluation cells, reference cells and bound cells."""
        p = self.profile
        cells = [Cell("train", m, s, p.t_max, p.tasks) for m in self.methods for s in p.seeds]
        for kind, names in (("eval", self.methods), ("reference", p.references)):
            cells += [
                Cell(kind, m, s, st.t_max, st.tasks)
                for m in names
                for s in p.seeds
                for st in self.settings()
            ]
        if p.bound:
            st = self.training_setting
            cells += [Cell("bound", "bound", s, st.t_max, st.tasks) for s in p.seeds]
        return cells


def make_plan(
    profile: Profile, figures: Iterable[int] = FIGURES, methods: Sequence[str] | None = None
) -> Plan:
    """Resolve the methods of a reproduction through the learner registry.

    Parameters
    ----------
    profile : Profile
    figures : iterable of int
        Subset of :data:`FIGURES`.
    methods : sequence of str, optional
        Learners asked for by name; every name must be registered. Default: the profile's
        methods that are registered (the others are listed in ``Plan.skipped``).
    """
    from learners import learner_names, learner_spec

    figs = tuple(sorted(set(figures)))
    bad = [f for f in figs if f not in FIGURES]
    if bad or not figs:
        raise ValueError(f"figures {list(figures)} must be taken from {list(FIGURES)}")
    known = learner_names()
    if methods is None:
        chosen = tuple(m for m in profile.methods if m in known)
        skipped = tuple(m for m in profile.methods if m not in known)
    else:
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(f"methods {unknown} are not registered learners; known: {known}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods {list(methods)} repeat a name")
        chosen, skipped = tuple(methods), ()
    if not chosen:
        raise ValueError(
            f"none of the methods {list(profile.methods)} is a registered learner; known: {known}"
        )
    for m in chosen:  # a family without a budget fails here, before any work
        profile.budget(learner_spec(m).family)
    return Plan(profile, figs, chosen, skipped)
