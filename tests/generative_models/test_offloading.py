"""The ensemble world model: shapes, learning by VFE, information gain that shrinks with data."""

import math

import pytest
import torch

from generative_models.offloading import (
    ModelConfig,
    ObservationLayout,
    OffloadingWorldModel,
    OutcomePrediction,
    PreferenceConfig,
    expected_guidance,
    log_preference,
    policy_efe,
)

S = 3
LAYOUT = ObservationLayout(S, slice(0, 3), slice(3, 12), slice(12, 15), slice(15, 17))
OBS_DIM = 17


def _obs(g):
    o = torch.rand(OBS_DIM, generator=g)
    return o


def _outcome(obs, server, shares):
    """A synthetic world: a task completes iff every share fits what remains; latency falls with compute."""
    rem = obs[3:12].reshape(S, 3)[server]
    ok = bool((shares <= rem).all())
    latency = (2.0 + 3.0 * server) / (0.2 + shares[0].item())
    return ok, latency, 0.1 + 0.05 * server


def _filled(n, seed=0, cfg=None):
    g = torch.Generator().manual_seed(seed)
    m = OffloadingWorldModel(LAYOUT, cfg or ModelConfig(ensemble_size=4, hidden=32), seed=seed)
    for i in range(n):
        o = _obs(g)
        srv = int(torch.randint(0, S, (1,), generator=g))
        sh = torch.rand(3, generator=g)
        ok, lat, p = _outcome(o, srv, sh)
        m.add(o, srv, sh, ok, lat, p, 0.0, _obs(g) if i % 10 else None)
    return m, g


def test_layout_validation_names_the_slice():
    with pytest.raises(ValueError, match="remaining slice has 8 entries, expected 9"):
        ObservationLayout(S, slice(0, 3), slice(3, 11), slice(11, 14), slice(14, 16)).validate()
    with pytest.raises(KeyError, match="queue"):
        ObservationLayout.from_mapping({"distance": slice(0, 3)}, S)


def test_prediction_shapes():
    m = OffloadingWorldModel(LAYOUT, ModelConfig(ensemble_size=4, hidden=16), seed=0)
    obs = torch.rand(7, OBS_DIM)
    dyn, dist_, task = LAYOUT.split(obs)
    assert dyn.shape == (7, S, 4) and dist_.shape == (7, S) and task.shape == (7, 2)
    server = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    shares = torch.rand(7, 3)
    pred = m.predict_outcome(m.outcome_features(dyn, dist_, task, server, shares))
    assert pred.p_complete.shape == (4, 7)
    assert ((pred.p_complete > 0) & (pred.p_complete < 1)).all()
    tr = m.predict_transition(m.transition_features(dyn, dist_, task, server, shares))
    assert tr.delta_mean.shape == (4, 7, S, 4)
    efe = policy_efe(m, obs[0], torch.zeros(5, 2, dtype=torch.long), torch.rand(5, 2, 3))
    assert all(v.shape == (5,) for v in efe)
    w = PreferenceConfig().info_gain_weight
    torch.testing.assert_close(
        efe.efe, -efe.pragmatic_value - w * (efe.outcome_info_gain + efe.transition_info_gain)
    )


def test_policy_efe_rejects_bad_shapes():
    m = OffloadingWorldModel(LAYOUT, ModelConfig(ensemble_size=2, hidden=8), seed=0)
    with pytest.raises(ValueError, match=r"expected \(J, H\)"):
        policy_efe(m, torch.rand(OBS_DIM), torch.zeros(5, dtype=torch.long), torch.rand(5, 3))


def test_fit_lowers_vfe_and_learns_the_outcomes():
    m, g = _filled(600, cfg=ModelConfig(ensemble_size=3, hidden=32, fit_steps=300, lr=1e-2))
    trace = m.fit()
    assert len(trace) == 300 and all(math.isfinite(v) for v in trace)
    assert trace[-1] < trace[0]
    hits = 0
    errs = []
    pass_errs = []
    for _ in range(200):
        o = _obs(g)
        srv = int(torch.randint(0, S, (1,), generator=g))
        sh = torch.rand(3, generator=g)
        ok, lat, p = _outcome(o, srv, sh)
        dyn, dist_, task = LAYOUT.split(o)
        pred = m.predict_outcome(m.outcome_features(dyn, dist_, task, torch.tensor(srv), sh))
        hits += (pred.p_complete.mean() > 0.5).item() == ok
        if ok:
            errs.append(abs(pred.log_latency_mean.mean().item() - math.log(lat)))
            pass_errs.append(abs(pred.pass_mean.mean().item() - p))
    assert hits / 200 > 0.85
    assert sum(errs) / len(errs) < 0.3
    # pass@100 is 0.10, 0.15 or 0.20 by server: the planner's head must read it back, not a
    # transform of it.
    assert sum(pass_errs) / len(pass_errs) < 0.03


def test_information_gain_is_low_where_data_are_and_high_off_the_data():
    # absolute shares, so the planner evaluates exactly the allocation the data hold
    cfg = ModelConfig(ensemble_size=5, hidden=32, fit_steps=600, lr=1e-2, relative_shares=False)
    g = torch.Generator().manual_seed(5)
    o = _obs(g)
    servers = torch.zeros(1, 1, dtype=torch.long)
    shares = torch.full((1, 1, 3), 0.05)
    m, _ = _filled(30, seed=1, cfg=cfg)
    for _ in range(300):
        ok, lat, p = _outcome(o, 0, shares[0, 0])
        m.add(o, 0, shares[0, 0], ok, lat, p, 0.0, None)
    m.fit()
    seen = policy_efe(m, o, servers, shares).outcome_info_gain.item()
    unseen = policy_efe(m, o + 4.0, servers, shares).outcome_info_gain.item()
    assert seen < 0.05
    assert unseen > 5 * seen


def test_same_seed_same_model():
    a, _ = _filled(100, seed=3)
    b, _ = _filled(100, seed=3)
    assert a.fit(20) == b.fit(20)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_weights_of_the_efe():
    with pytest.raises(ValueError, match="info_gain_weight"):
        PreferenceConfig(info_gain_weight=-1.0)
    m, _ = _filled(50)
    m.fit(10)
    obs = torch.rand(OBS_DIM)
    c = torch.randint(0, S, (6, 1))
    v = torch.rand(6, 1, 3)
    no_ig = policy_efe(m, obs, c, v, PreferenceConfig(info_gain_weight=0.0))
    torch.testing.assert_close(no_ig.efe, -no_ig.pragmatic_value)
    doubled = policy_efe(m, obs, c, v, PreferenceConfig(guidance_weight=2.0, info_gain_weight=0.0))
    torch.testing.assert_close(doubled.efe, 2 * no_ig.efe)


def test_proportional_preferences_put_completion_first():
    """p~ proportional to rg + floor: a failure costs log(floor); exp(lambda rg) barely notices it."""
    with pytest.raises(ValueError, match="form"):
        PreferenceConfig(form="linear")
    with pytest.raises(ValueError, match="floor"):
        PreferenceConfig(floor=0.0)
    # Two outcomes: a sure completion at 12 s with P = 0.1, and a 2.4 s completion with P = 0.1
    # that happens with probability 0.7 only (zero latency spread, so the plug-in is exact).
    pred = OutcomePrediction(
        p_complete=torch.tensor([1.0, 0.7]),
        log_latency_mean=torch.tensor([math.log(12.0), math.log(2.4)]),
        log_latency_sd=torch.zeros(2),
        pass_mean=torch.tensor([0.1, 0.1]),
        reward_mean=torch.zeros(2),
    )
    rg = expected_guidance(pred)
    torch.testing.assert_close(rg, torch.tensor([1 / 12 + 0.1, 0.7 * (1 / 2.4 + 0.1)]))
    floor = 0.01
    lp = log_preference(pred, floor)
    expected = torch.tensor(
        [
            math.log(1 / 12 + 0.1 + floor),
            0.7 * math.log(1 / 2.4 + 0.1 + floor) + 0.3 * math.log(floor),
        ]
    )
    torch.testing.assert_close(lp, expected)
    # The exponential form prefers the fast gamble, the proportional form the sure completion.
    assert rg[1] > rg[0] and lp[0] > lp[1]


def test_policy_efe_uses_the_preference_form():
    m, _ = _filled(50)
    m.fit(10)
    obs = torch.rand(OBS_DIM)
    c = torch.randint(0, S, (6, 2))
    v = torch.rand(6, 2, 3)
    kw = {"info_gain_weight": 0.0, "discount": 0.5}
    exp_form = policy_efe(m, obs, c, v, PreferenceConfig(**kw))
    prop = policy_efe(m, obs, c, v, PreferenceConfig(form="proportional", floor=0.05, **kw))
    torch.testing.assert_close(exp_form.pragmatic_value, exp_form.expected_guidance)
    torch.testing.assert_close(prop.expected_guidance, exp_form.expected_guidance)
    assert (prop.pragmatic_value < 0).all() and (prop.pragmatic_value >= 1.5 * math.log(0.05)).all()


def test_reading_filter_averages_out_noise_in_a_static_world():
    from generative_models.offloading import ReadingFilter

    g = torch.Generator().manual_seed(2)
    m = OffloadingWorldModel(LAYOUT, ModelConfig(ensemble_size=3, hidden=16, fit_steps=300), seed=0)
    for _ in range(200):  # readings never move: the model learns zero change
        o = _obs(g)
        m.add(o, 0, torch.full((3,), 0.1), True, 3.0, 0.1, 0.0, o.clone())
    m.fit()
    truth = _obs(g)
    noise = 0.1
    noisy = [truth + noise * torch.randn(OBS_DIM, generator=g) for _ in range(30)]
    f = ReadingFilter(m, noise)
    perceived = f.reset(noisy[0])
    for o in noisy[1:]:
        perceived = f.step(perceived, 0, torch.zeros(3), o)
    sl = LAYOUT.remaining
    raw_err = (noisy[-1][sl] - truth[sl]).abs().mean().item()
    filt_err = (perceived[sl] - truth[sl]).abs().mean().item()
    # the model's floor on predicted change (min_sd) bounds how much repeated readings can be pooled
    assert filt_err < 0.7 * raw_err
    assert torch.equal(perceived[LAYOUT.task], noisy[-1][LAYOUT.task])  # only readings are filtered
    with pytest.raises(ValueError, match="noise_sd"):
        ReadingFilter(m, 0.0)
