"""Fit a GLM-HMM to a user's long-format CSV and write a results folder (``bayes-glmhmm fit``)."""

import os

import numpy as np

from bayes_glmhmm._io import csv_text, markdown_table, save_figures_atomic, write_json_atomic, write_text_atomic
from bayes_glmhmm.params import Priors, validate_num_states
from bayes_glmhmm.tabular import TabularData, read_long_csv

__all__ = ["run_fit", "state_probability_rows", "conditional_predictive_mean"]


def conditional_predictive_mean(
    samples: dict, states: np.ndarray, inputs: np.ndarray, chunk_size: int = 50
) -> np.ndarray:
    """E[y_t | all observed data] = mean over draws s of x_t . weights_s[z_t^s] + biases_s[z_t^s].

    ``z^s`` is the FFBS path of draw s, so this is the posterior predictive mean of each target
    given everything observed, the natural imputation of a missing target. Computed in chunks
    of draws so memory stays at chunk_size x N x T.

    Args:
        samples: (chain, draw, ...) parameter draws.
        states: (chain, draw, N, T) FFBS paths, -1 at padding.
        inputs: (N, T, D).
        chunk_size: draws per chunk.

    Returns:
        (N, T) means, NaN at padding.
    """
    weights = samples["weights"].reshape((-1,) + samples["weights"].shape[2:])
    biases = samples["biases"].reshape((-1,) + samples["biases"].shape[2:])
    flat_states = states.reshape((-1,) + states.shape[2:]).astype(np.int64)
    total = np.zeros(inputs.shape[:2])
    for start in range(0, flat_states.shape[0], chunk_size):
        z = np.clip(flat_states[start : start + chunk_size], 0, None)  # (S, N, T)
        draw = np.arange(z.shape[0])[:, None, None]
        chosen_weights = weights[start : start + chunk_size][draw, z]  # (S, N, T, D)
        total += np.sum(
            np.einsum("ntd,sntd->snt", inputs, chosen_weights) + biases[start : start + chunk_size][draw, z], axis=0
        )
    mean = total / flat_states.shape[0]
    return np.where(flat_states[0] >= 0, mean, np.nan)


def state_probability_rows(table: TabularData, probabilities: np.ndarray, predictive_mean: np.ndarray) -> list[list]:
    """One output row per data row (file order, padding excluded).

    Each row holds the data row number, sequence, step, whether the target was observed, the
    posterior probability of every state, the most probable state and the posterior predictive
    mean of the target.
    """
    rows = []
    for n, t in zip(*np.nonzero(table.row_index >= 0), strict=True):
        probs = probabilities[n, t]
        rows.append(
            [
                int(table.row_index[n, t]) + 1,
                table.sequence_ids[n],
                int(t),
                bool(table.mask[n, t]),
                *probs.tolist(),
                int(np.argmax(probs)),
                float(predictive_mean[n, t]),
            ]
        )
    rows.sort(key=lambda row: row[0])
    return rows


def run_fit(
    data_path,
    num_states: int,
    target: str,
    inputs: list[str],
    sequence: str | None = None,
    out: str = "fit_results",
    priors: Priors | None = None,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    standardize="auto",
    progress_bar: bool = True,
    sequence_devices: int = 1,
    time_parallel: bool = False,
) -> dict:
    """Fit NUTS to a long-format CSV and write the results folder.

    Files (each written atomically, ``summary.json`` last): ``posterior.nc`` (InferenceData),
    ``parameters.csv`` / ``parameters.md`` (posterior summary in the data's units),
    ``state_probabilities.csv`` (per data row), ``parameters.png``, ``trace.png``,
    ``lp_by_chain.png``, ``states_sequence0.png`` and ``summary.json``.

    Args:
        data_path: the CSV (one row per time step; rows of a sequence in time order).
        num_states: K.
        target: target column.
        inputs: input columns.
        sequence: sequence column, or None for one sequence.
        out: output folder.
        priors: priors (the article's by default).
        num_chains: chains.
        num_warmup: warmup per chain.
        num_samples: draws per chain.
        seed: seed.
        standardize: see :func:`bayes_glmhmm.fit_nuts`.
        progress_bar: show progress.
        sequence_devices: devices sharing each chain's sequences; see :func:`bayes_glmhmm.fit_nuts`.
        time_parallel: parallel-in-time likelihood; see :func:`bayes_glmhmm.fit_nuts`.

    Returns:
        The summary written to ``summary.json``.
    """
    import jax
    import matplotlib

    matplotlib.use("Agg")

    from bayes_glmhmm import plots
    from bayes_glmhmm.convert import write_netcdf_atomic
    from bayes_glmhmm.fit import fit_nuts
    from bayes_glmhmm.summaries import parameter_table

    num_states = validate_num_states(num_states)
    table = read_long_csv(data_path, target=target, inputs=inputs, sequence=sequence)
    longest = int(table.lengths.max())
    if num_states > longest:
        raise ValueError(f"--states {num_states} is larger than the longest sequence ({longest} steps) can support")
    posterior = fit_nuts(
        table.inputs,
        np.where(table.mask, table.emissions, np.nan),
        num_states,
        mask=table.mask,
        lengths=table.lengths,
        priors=priors,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        progress_bar=progress_bar,
        standardize=standardize,
        sequence_devices=sequence_devices,
        time_parallel=time_parallel,
    )
    os.makedirs(out, exist_ok=True)
    idata = posterior.to_arviz(key=jax.random.PRNGKey(seed + 1))
    idata.posterior.attrs["input_names"] = ",".join(table.input_names)
    idata.posterior.attrs["target_name"] = table.target_name
    idata.posterior.attrs["sequence_ids"] = ",".join(map(str, table.sequence_ids))
    write_netcdf_atomic(idata, os.path.join(out, "posterior.nc"))

    probabilities = idata.posterior_states["state_probabilities"].values
    predictive_mean = conditional_predictive_mean(
        posterior.samples, idata.posterior_states["states"].values, table.inputs
    )
    header = [
        "row",
        "sequence",
        "step",
        "observed",
        *[f"p_state_{k}" for k in range(num_states)],
        "most_probable_state",
        "predictive_mean",
    ]
    write_text_atomic(
        os.path.join(out, "state_probabilities.csv"),
        csv_text(header, state_probability_rows(table, probabilities, predictive_mean)),
    )

    rows = parameter_table(posterior.samples, point_estimate=posterior.em.params if posterior.em else None)
    names = {"weights": lambda index: f"weight[{index[0]}, {table.input_names[index[1]]}]"}
    table_rows = []
    for row in rows:
        label = names.get(row["parameter"], lambda index, name=row["parameter"]: f"{name}{list(index)}")(row["index"])
        table_rows.append(
            [
                label,
                row["posterior_mean"],
                row["posterior_sd"],
                row["lower"],
                row["upper"],
                row.get("point_estimate", float("nan")),
            ]
        )
    parameter_header = ["parameter", "posterior_mean", "posterior_sd", "lower_94", "upper_94", "em_map"]
    write_text_atomic(os.path.join(out, "parameters.csv"), csv_text(parameter_header, table_rows))
    markdown = markdown_table(parameter_header, [[row[0]] + [f"{v:.4g}" for v in row[1:]] for row in table_rows])
    write_text_atomic(os.path.join(out, "parameters.md"), "\n".join(markdown) + "\n")

    first = 0
    length = int(table.lengths[first])
    figures = {
        "parameters.png": plots.plot_parameter_posteriors(
            posterior.samples, em_params=posterior.em.params if posterior.em else None
        ),
        "trace.png": plots.plot_trace(posterior.samples, var_names=["weights", "biases", "scales"]),
        "lp_by_chain.png": plots.plot_lp_by_chain(
            posterior.sample_stats["lp"], stuck_chains=posterior.stuck_chains, threshold=posterior.stuck_threshold
        ),
        "states_sequence0.png": plots.plot_states(
            np.where(table.mask[first, :length], table.emissions[first, :length], np.nan),
            None,
            probabilities[first, :length],
            sequence_label=f"sequence {table.sequence_ids[first]!s}",
        ),
    }
    save_figures_atomic(figures, out)

    diagnostics = posterior.diagnostics()
    summary = {
        "command": "bayes-glmhmm fit",
        "data": {
            "path": os.fspath(data_path),
            "target": target,
            "inputs": list(inputs),
            "sequence": sequence,
            "num_sequences": len(table.sequence_ids),
            "num_rows": int(table.lengths.sum()),
            "num_missing_targets": int(table.lengths.sum() - table.mask.sum()),
            "num_states": num_states,
        },
        "nuts": {
            "wall_seconds": diagnostics["wall_seconds"]["total"],
            "max_rhat": diagnostics["max_rhat"],
            "min_ess_bulk": diagnostics["min_ess_bulk"],
            "min_ess_tail": diagnostics["min_ess_tail"],
            "divergences": diagnostics["divergences"],
            "stuck_chains": diagnostics["stuck_chains"],
            "settings": posterior.settings,
        },
        "priors": posterior.priors._asdict(),
        "parameters_in": "the data's original units",
        "files": sorted(["posterior.nc", "state_probabilities.csv", "parameters.csv", "parameters.md", *figures]),
    }
    write_json_atomic(os.path.join(out, "summary.json"), summary)
    return summary
