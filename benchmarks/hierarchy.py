"""Does the hierarchy pay? Simulated animals with 1..10 sessions each, scored on held-out sessions.

Every replication draws a population GLM-HMM of choices (Bernoulli, K = 2: an engaged state that
follows the stimulus and a disengaged one that mostly does not; inputs: a signed stimulus
contrast and a cue) and ``--animals`` animals around it (weights[s] = mu + tau * Normal(0, 1),
biases likewise). Animal a is trained on ``1 + a % 10`` sessions of ``--trials`` trials and
scored on 2 further sessions; one more animal, never fitted, is scored on 2 sessions too. Three
fits of the same training sessions:

* ``hierarchical``: ``fit_nuts(..., subjects=animal)``, the partially pooled posterior;
* ``pooled``: ``fit_nuts`` without subjects, one GLM-HMM for all animals (the field's first stage);
* ``two_stage``: the field's practice (Ashwood et al. 2022): MAP EM on all animals pooled, then MAP
  EM on each animal alone started from the pooled fit (a point estimate per animal).

Each animal's score is the log predictive density of its held-out sessions per trial, in nats:
the posterior predictive for the Bayesian fits (the animal's own draws for the hierarchical fit,
the population predictive of a new animal for the unseen one), the likelihood at the estimate
for the two-stage fit (the pooled estimate for the unseen animal). Also: the error of each
animal's posterior-mean (or estimated) weights against its true weights, after matching states.

    python benchmarks/hierarchy.py [--replications 3] [--animals 10] [--trials 150] [--quick]

Writes results/benchmarks/hierarchy.csv (one row per animal and replication) and hierarchy.md.

``--pst`` scores the same three fits on real data: the probabilistic selection task data HDDM
ships (:func:`bayes_glmhmm.datasets.pst_design`; 28 human participants, one run each, split into
one sequence per stimulus pair: AB, CD, EF). The last ``--unseen`` participants are never fitted;
every other participant is fitted on two of its pairs and scored on the third (participant i
holds out pair i mod 3), a known subject's new sequence. Inputs: reward gap, previous choice,
win-stay-lose-switch; K = 2. Writes results/benchmarks/hierarchy_pst.csv and hierarchy_pst.md.

``--scale-fit`` fits the full posterior at that size (13 animals, 84 sessions of 600 trials, K = 2,
2 chains x (``--warmup`` + ``--samples``), ``--parametrization``) and writes its wall time, gradients and verdict to
results/benchmarks/hierarchy_scale_fit_<parametrization>.csv.

``--scale`` instead times one gradient of the log posterior (what NUTS pays per leapfrog step) at
the field's sizes: 13 and 40 animals, 50,000 and 180,000 trials in sessions of 600, K = 3,
4 inputs, with and without the hierarchy, the first call (compile included) and warm calls
(median of 20) apart, on one device. Writes results/benchmarks/hierarchy_scale.csv.
"""

import argparse
import os
import sys
import time

import numpyro

numpyro.set_host_device_count(2)

import jax  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bayes_glmhmm._io import csv_text, markdown_table, write_text_atomic  # noqa: E402
from bayes_glmhmm.em import fit_em  # noqa: E402
from bayes_glmhmm.fit import fit_nuts  # noqa: E402
from bayes_glmhmm.hierarchy import draw_subjects  # noqa: E402
from bayes_glmhmm.model import log_likelihood  # noqa: E402
from bayes_glmhmm.params import BernoulliGLMHMMParams, Priors  # noqa: E402
from bayes_glmhmm.relabel import match_params  # noqa: E402
from bayes_glmhmm.simulate import simulate_subjects  # noqa: E402

RESULTS = os.path.join(ROOT, "results", "benchmarks")
CONTRASTS = np.array([-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0])
POPULATION = BernoulliGLMHMMParams(
    initial_probs=np.array([0.8, 0.2]),
    transition_matrix=np.array([[0.97, 0.03], [0.06, 0.94]]),
    weights=np.array([[4.0, 0.6], [0.6, -0.3]]),  # engaged: follows the stimulus; disengaged: hardly
    biases=np.array([0.0, 0.8]),
)
WEIGHT_SPREAD = np.array([[1.2, 0.4], [0.4, 0.3]])
BIAS_SPREAD = np.array([0.5, 1.0])
HELD_OUT_SESSIONS = 2


def _inputs(generator, num_sessions: int, num_trials: int) -> np.ndarray:
    stimulus = generator.choice(CONTRASTS, size=(num_sessions, num_trials))
    cue = generator.choice([-1.0, 1.0], size=(num_sessions, num_trials))
    return np.stack([stimulus, cue], axis=-1)


def simulate_animals(seed: int, num_animals: int, num_trials: int, train_sessions=None):
    """Training and held-out sessions of ``num_animals`` animals, plus an unseen one (the last).

    ``train_sessions``: sessions per animal (default ``1 + a % 10`` for animal a).
    """
    generator = np.random.default_rng(seed)
    key_animals, key_train, key_test = jax.random.split(jax.random.PRNGKey(seed), 3)
    weights, biases = draw_subjects(
        key_animals, num_animals + 1, POPULATION.weights, POPULATION.biases, WEIGHT_SPREAD, BIAS_SPREAD
    )
    animals = POPULATION._replace(weights=np.asarray(weights), biases=np.asarray(biases))
    if train_sessions is None:
        train_sessions = np.array([1 + a % 10 for a in range(num_animals)])
    train_animal = np.repeat(np.arange(num_animals), train_sessions)
    test_animal = np.repeat(np.arange(num_animals + 1), HELD_OUT_SESSIONS)
    train_inputs = _inputs(generator, train_animal.size, num_trials)
    test_inputs = _inputs(generator, test_animal.size, num_trials)
    _, train_choices = simulate_subjects(key_train, animals, train_inputs, train_animal)
    _, test_choices = simulate_subjects(key_test, animals, test_inputs, test_animal)
    return dict(
        animals=animals,
        train=(train_inputs, np.asarray(train_choices), train_animal),
        test=(test_inputs, np.asarray(test_choices), test_animal),
        train_sessions=train_sessions,
    )


def _names(index) -> np.ndarray:
    return np.array([f"animal_{a:02d}" for a in index])


def _animal_truth(animals, animal: int):
    return animals._replace(weights=animals.weights[animal], biases=animals.biases[animal])


def _weight_error(estimate_weights, estimate_biases, truth, template) -> float:
    """RMS error of one animal's weights and biases against the truth, after matching the states."""
    estimate = template._replace(weights=np.asarray(estimate_weights), biases=np.asarray(estimate_biases))
    matched = estimate.permute(match_params(estimate, truth))
    difference = np.concatenate([(matched.weights - truth.weights).ravel(), (matched.biases - truth.biases).ravel()])
    return float(np.sqrt(np.mean(difference**2)))


def _nuts_settings(args, seed: int = 0, **extra) -> dict:
    """The sampler settings every fit of this benchmark shares (Bernoulli, 2 chains, never standardized)."""
    return dict(
        family="bernoulli",
        num_chains=2,
        num_warmup=args.warmup,
        num_samples=args.samples,
        seed=seed,
        progress_bar=False,
        standardize=False,
        **extra,
    )


def fit_all(data, args, seed: int):
    """The three fits of one replication; their wall seconds."""
    inputs, choices, animal = data["train"]
    settings = _nuts_settings(args, seed)
    wall = {}
    start = time.perf_counter()
    hierarchical = fit_nuts(
        inputs, choices, 2, subjects=_names(animal), subject_parametrization=args.parametrization, **settings
    )
    wall["hierarchical"] = time.perf_counter() - start
    start = time.perf_counter()
    pooled = fit_nuts(inputs, choices, 2, **settings)
    wall["pooled"] = time.perf_counter() - start
    start = time.perf_counter()
    em_settings = dict(family="bernoulli", priors=Priors(), standardize=False)  # MAP under the same priors
    pooled_em = fit_em(inputs, choices, 2, num_restarts=10, seed=seed, **em_settings)
    per_animal = {}
    for a in np.unique(animal):
        rows = animal == a
        per_animal[int(a)] = fit_em(inputs[rows], choices[rows], 2, init_params=pooled_em.params, **em_settings).params
    wall["two_stage"] = time.perf_counter() - start
    return hierarchical, pooled, pooled_em.params, per_animal, wall


def score(data, hierarchical, pooled, pooled_em, per_animal, num_animals: int) -> list[dict]:
    """One row per animal: held-out nats per trial of each fit and the weight errors."""
    inputs, choices, animal = data["test"]
    trials_per_animal = HELD_OUT_SESSIONS * inputs.shape[1]
    hierarchical_density = hierarchical.log_predictive_density(inputs, choices, subjects=_names(animal))
    pooled_density = pooled.log_predictive_density(inputs, choices)
    rows = []
    hierarchical_weights = hierarchical.samples["subject_weights"].mean(axis=(0, 1))
    hierarchical_biases = hierarchical.samples["subject_biases"].mean(axis=(0, 1))
    pooled_mean = pooled.posterior_mean()
    for a in range(num_animals + 1):
        sessions = animal == a
        seen = a < num_animals
        estimate = per_animal[a] if seen else pooled_em
        two_stage = float(np.sum(log_likelihood(estimate, inputs[sessions], choices[sessions])))
        truth = _animal_truth(data["animals"], a)
        row = dict(
            animal=a,
            train_sessions=int(data["train_sessions"][a]) if seen else 0,
            hierarchical=float(np.sum(hierarchical_density[sessions])) / trials_per_animal,
            pooled=float(np.sum(pooled_density[sessions])) / trials_per_animal,
            two_stage=two_stage / trials_per_animal,
            weight_error_hierarchical=_weight_error(hierarchical_weights[a], hierarchical_biases[a], truth, pooled_mean)
            if seen
            else float("nan"),
            weight_error_pooled=_weight_error(pooled_mean.weights, pooled_mean.biases, truth, pooled_mean),
            weight_error_two_stage=_weight_error(estimate.weights, estimate.biases, truth, pooled_mean),
        )
        rows.append(row)
    return rows


COLUMNS = [
    "replication",
    "animal",
    "train_sessions",
    "hierarchical",
    "pooled",
    "two_stage",
    "weight_error_hierarchical",
    "weight_error_pooled",
    "weight_error_two_stage",
]


def _summary(rows: list[dict], fits: list[dict], args, title: str | None = None) -> str:
    table = []
    groups = [
        ("1-3 sessions", lambda r: 1 <= r["train_sessions"] <= 3),
        ("4-10 sessions", lambda r: r["train_sessions"] >= 4),
    ]
    groups += [
        ("all fitted animals", lambda r: r["train_sessions"] >= 1),
        ("unseen animal", lambda r: r["train_sessions"] == 0),
    ]
    for label, keep in groups:
        chosen = [r for r in rows if keep(r)]
        if not chosen:
            continue

        def mean(name, chosen=chosen):
            values = [r[name] for r in chosen if np.isfinite(r[name])]
            return float(np.mean(values)) if values else float("nan")

        def wins(name, chosen=chosen):
            return sum(r["hierarchical"] > r[name] for r in chosen)

        table.append(
            [
                label,
                len(chosen),
                f"{mean('hierarchical'):.4f}",
                f"{mean('pooled'):.4f}",
                f"{mean('two_stage'):.4f}",
                f"{wins('pooled')}/{len(chosen)}",
                f"{wins('two_stage')}/{len(chosen)}",
                f"{mean('weight_error_hierarchical'):.3f}",
                f"{mean('weight_error_pooled'):.3f}",
                f"{mean('weight_error_two_stage'):.3f}",
            ]
        )
    header = [
        "animals",
        "n",
        "hierarchical nats/trial",
        "pooled",
        "two-stage",
        "hier. beats pooled",
        "hier. beats two-stage",
        "weight RMSE hier.",
        "pooled",
        "two-stage",
    ]
    if title is not None:
        setting = (
            f"{title}: every fitted participant trained on 2 pair sequences and scored on the third; "
            f"{args.unseen} participants never fitted (their 3 sequences scored); "
        )
        groups_note = "(`1-3 sessions` = every fitted participant: 2 training sequences each)"
    else:
        title = "simulated animals"
        setting = (
            f"{args.replications} replication(s), {args.animals} fitted animals with 1..10 training sessions of "
            f"{args.trials} trials each and {HELD_OUT_SESSIONS} held-out sessions, plus one unseen animal; "
        )
        groups_note = ""
    lines = [
        f"# Hierarchical vs pooled vs two-stage on held-out sessions ({title})",
        "",
        setting + f"NUTS 2 chains x ({args.warmup} + {args.samples}), {args.parametrization} hierarchy. "
        "Scores: mean held-out log predictive density "
        "per trial (higher is better); weight RMSE: posterior mean (or estimate) against the truth. " + groups_note,
        "",
        *markdown_table(header, table),
        "",
        "| replication | hierarchical s | pooled s | two-stage s | hierarchical max R-hat | min bulk ESS "
        "| divergences |",
        "|---|---|---|---|---|---|---|",
    ]
    for fit in fits:
        lines.append(
            f"| {fit['replication']} | {fit['hierarchical']:.1f} | {fit['pooled']:.1f} | {fit['two_stage']:.1f} | "
            f"{fit['max_rhat']:.3f} | {fit['min_ess_bulk']:.0f} | {fit['divergences']} |"
        )
    return "\n".join(lines) + "\n"


def _gradient_seconds(num_animals: int, num_trials: int, hierarchical: bool, seed: int = 0) -> tuple[float, float]:
    """(first call incl. compile, median warm call) seconds of the potential's value and gradient."""
    import jax.numpy as jnp
    from numpyro.infer.util import potential_energy

    from bayes_glmhmm.emissions import get_family
    from bayes_glmhmm.fit import _subject_initial_values
    from bayes_glmhmm.hierarchy import validate_subjects
    from bayes_glmhmm.model import centred_sites, glmhmm_model, unconstrain_sites

    generator = np.random.default_rng(seed)
    num_sessions, session_length, num_states, input_dim = num_trials // 600, 600, 3, 4
    inputs = generator.normal(size=(num_sessions, session_length, input_dim)).astype(np.float32)
    choices = generator.integers(0, 2, size=(num_sessions, session_length)).astype(np.float32)
    animal = np.arange(num_sessions) % num_animals
    family = get_family("bernoulli")
    start = family.params_type(
        initial_probs=np.full(num_states, 1 / num_states),
        transition_matrix=np.full((num_states, num_states), 1 / num_states),
        weights=generator.normal(size=(num_states, input_dim)),
        biases=generator.normal(size=num_states),
    )
    input_mean = inputs.reshape(-1, input_dim).mean(axis=0)
    z = unconstrain_sites(centred_sites(start, input_mean), family)
    kwargs = dict(
        inputs=jnp.asarray(inputs),
        emissions=jnp.asarray(choices),
        mask=jnp.ones(choices.shape, bool),
        num_states=num_states,
        priors=Priors(),
        input_mean=jnp.asarray(input_mean),
        family=family,
    )
    if hierarchical:
        subjects = validate_subjects(animal, num_sessions)
        batched = {name: np.asarray(value)[None] for name, value in z.items()}
        extra = _subject_initial_values(seed, batched, input_mean, subjects, "noncentred", Priors(), 0.1, False)
        z |= {name: jnp.asarray(value[0]) for name, value in extra.items()}
        kwargs |= dict(subject_index=jnp.asarray(subjects.index), num_subjects=subjects.num_subjects)

    @jax.jit
    def value_and_gradient(z):
        return jax.value_and_grad(lambda point: potential_energy(glmhmm_model, (), kwargs, point))(z)

    start_time = time.perf_counter()
    jax.block_until_ready(value_and_gradient(z))
    first = time.perf_counter() - start_time
    times = []
    for _ in range(20):
        start_time = time.perf_counter()
        jax.block_until_ready(value_and_gradient(z))
        times.append(time.perf_counter() - start_time)
    return first, float(np.median(times))


def scale_fit(args) -> int:
    """The full posterior at the field's size: 13 animals, 84 sessions of 600 trials (50,400), 2 chains."""
    sessions = np.array([7] * 6 + [6] * 7)  # 84 sessions
    data = simulate_animals(7, 13, 600, train_sessions=sessions)
    inputs, choices, animal = data["train"]
    start = time.perf_counter()
    posterior = fit_nuts(
        inputs,
        choices,
        2,
        subjects=_names(animal),
        subject_parametrization=args.parametrization,
        **_nuts_settings(args),
    )
    wall = time.perf_counter() - start
    diagnostics = posterior.diagnostics()
    gradients = int(np.sum(posterior.settings["warmup_gradients"]) + np.sum(posterior.sample_stats["n_steps"]))
    header = ["animals", "sessions", "trials", "parametrization", "chains", "warmup", "samples", "wall_s", "nuts_s"]
    header += ["gradients"]
    header += ["max_rhat", "min_ess_bulk", "divergences", "load_average_1min"]
    row = [13, int(sessions.sum()), int(choices.size), args.parametrization, 2, args.warmup, args.samples, wall]
    row += [posterior.wall_seconds["nuts"], gradients, diagnostics["max_rhat"], diagnostics["min_ess_bulk"]]
    row += [diagnostics["divergences"], os.getloadavg()[0]]
    os.makedirs(args.out, exist_ok=True)
    write_text_atomic(
        os.path.join(args.out, f"hierarchy_scale_fit_{args.parametrization}.csv"), csv_text(header, [row])
    )
    print(dict(zip(header, row, strict=True)))
    return 0


def scale(args) -> int:
    """Time per gradient at the field's sizes (see the module docstring)."""
    rows = []
    for num_animals, num_trials in ((13, 50_000), (13, 180_000), (40, 50_000), (40, 180_000)):
        for hierarchical in (False, True):
            first, warm = _gradient_seconds(num_animals, num_trials, hierarchical)
            rows.append([num_animals, num_trials, "hierarchical" if hierarchical else "pooled", first, warm * 1e3])
            print(rows[-1], flush=True)
    header = ["animals", "trials", "model", "first_call_s", "warm_gradient_ms"]
    os.makedirs(args.out, exist_ok=True)
    write_text_atomic(os.path.join(args.out, "hierarchy_scale.csv"), csv_text(header, rows))
    print("\n".join(markdown_table(header, [[f"{v:.4g}" if isinstance(v, float) else v for v in row] for row in rows])))
    return 0


def pst_data(num_unseen: int):
    """Training and held-out sequences of the PST data, as :func:`simulate_animals` gives them (no truth)."""
    from bayes_glmhmm.datasets import pst_design

    design = pst_design(inputs=("reward_gap", "previous_choice", "win_stay_lose_switch"), sequences="subject_pair")
    names = list(dict.fromkeys(design.subject_ids.tolist()))
    position = np.array([names.index(subject) for subject in design.subject_ids])
    pair = np.array(["AB", "CD", "EF"]).searchsorted(design.pair_ids)
    unseen = position >= len(names) - num_unseen
    held_out = unseen | (pair == position % 3)
    train, test = ~held_out, held_out
    emissions = design.choices.astype(float)
    return dict(
        train=(design.inputs[train], emissions[train], position[train], design.lengths[train]),
        test=(design.inputs[test], np.where(design.mask[test], emissions[test], np.nan), position[test]),
        test_mask=design.mask[test],
        num_fitted=len(names) - num_unseen,
    )


def pst(args) -> int:
    """Hierarchical, pooled and two-stage fits of the PST data, scored on held-out sequences."""
    data = pst_data(args.unseen)
    inputs, choices, subject, lengths = data["train"]
    settings = _nuts_settings(args, lengths=lengths)
    wall = {}
    start = time.perf_counter()
    hierarchical = fit_nuts(inputs, choices, 2, subjects=_names(subject), **settings)
    wall["hierarchical"] = time.perf_counter() - start
    start = time.perf_counter()
    pooled = fit_nuts(inputs, choices, 2, **settings)
    wall["pooled"] = time.perf_counter() - start
    start = time.perf_counter()
    mask = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
    em_settings = dict(family="bernoulli", priors=Priors(), standardize=False)
    pooled_em = fit_em(inputs, choices, 2, mask=mask, num_restarts=10, seed=0, **em_settings).params
    per_subject = {}
    for s in np.unique(subject):
        rows = subject == s
        per_subject[int(s)] = fit_em(
            inputs[rows], choices[rows], 2, mask=mask[rows], init_params=pooled_em, **em_settings
        ).params
    wall["two_stage"] = time.perf_counter() - start
    test_inputs, test_choices, test_subject = data["test"]
    test_mask = data["test_mask"]
    hierarchical_density = hierarchical.log_predictive_density(
        test_inputs, test_choices, test_mask, subjects=_names(test_subject)
    )
    pooled_density = pooled.log_predictive_density(test_inputs, test_choices, test_mask)
    rows = []
    for s in np.unique(test_subject):
        sequences = test_subject == s
        trials = int(test_mask[sequences].sum())
        estimate = per_subject.get(int(s), pooled_em)
        two_stage = np.sum(
            log_likelihood(estimate, test_inputs[sequences], test_choices[sequences], test_mask[sequences])
        )
        rows.append(
            dict(
                animal=int(s),
                train_sessions=2 if s < data["num_fitted"] else 0,
                hierarchical=float(np.sum(hierarchical_density[sequences])) / trials,
                pooled=float(np.sum(pooled_density[sequences])) / trials,
                two_stage=float(two_stage) / trials,
                weight_error_hierarchical=float("nan"),
                weight_error_pooled=float("nan"),
                weight_error_two_stage=float("nan"),
            )
        )
    diagnostics = hierarchical.diagnostics()
    fits = [
        dict(
            replication=0,
            **wall,
            max_rhat=diagnostics["max_rhat"],
            min_ess_bulk=diagnostics["min_ess_bulk"],
            divergences=diagnostics["divergences"],
        )
    ]
    rows = [dict(replication=0, **row) for row in rows]
    os.makedirs(args.out, exist_ok=True)
    write_text_atomic(
        os.path.join(args.out, "hierarchy_pst.csv"), csv_text(COLUMNS, [[r[c] for c in COLUMNS] for r in rows])
    )
    summary = _summary(rows, fits, args, title="PST data (28 human participants, HDDM, BSD-3)")
    write_text_atomic(os.path.join(args.out, "hierarchy_pst.md"), summary)
    print(summary)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument("--animals", type=int, default=10)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--parametrization", default="noncentred", choices=["noncentred", "centred"])
    parser.add_argument("--quick", action="store_true", help="1 replication, 4 animals, 60 trials, 150 + 150 draws")
    parser.add_argument("--scale", action="store_true", help="time per gradient at 13-40 animals, 50k-180k trials")
    parser.add_argument("--scale-fit", action="store_true", help="the full posterior of 13 animals, 50,400 trials")
    parser.add_argument("--pst", action="store_true", help="real data: HDDM's PST participants, held-out pairs")
    parser.add_argument("--unseen", type=int, default=4, help="--pst: participants never fitted")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    if args.scale:
        return scale(args)
    if args.scale_fit:
        return scale_fit(args)
    if args.pst:
        return pst(args)
    if args.quick:
        args.replications, args.animals, args.trials, args.warmup, args.samples = 1, 4, 60, 150, 150
    rows, fits = [], []
    for replication in range(args.replications):
        data = simulate_animals(100 + replication, args.animals, args.trials)
        hierarchical, pooled, pooled_em, per_animal, wall = fit_all(data, args, replication)
        diagnostics = hierarchical.diagnostics()
        fits.append(
            dict(
                replication=replication,
                **wall,
                max_rhat=diagnostics["max_rhat"],
                min_ess_bulk=diagnostics["min_ess_bulk"],
                divergences=diagnostics["divergences"],
            )
        )
        for row in score(data, hierarchical, pooled, pooled_em, per_animal, args.animals):
            rows.append(dict(replication=replication, **row))
        print(f"replication {replication}: {wall}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_centred" if args.parametrization == "centred" else "")
    write_text_atomic(
        os.path.join(args.out, f"hierarchy{suffix}.csv"), csv_text(COLUMNS, [[r[c] for c in COLUMNS] for r in rows])
    )
    summary = _summary(rows, fits, args)
    write_text_atomic(os.path.join(args.out, f"hierarchy{suffix}.md"), summary)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
