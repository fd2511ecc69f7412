import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

from bayes_glmhmm import GLMHMMParams, Priors, article_params, log_likelihood, simulate
from bayes_glmhmm.model import glmhmm_model, log_prior


@pytest.fixture(scope="module")
def data():
    params = article_params()
    inputs = jax.random.uniform(jax.random.PRNGKey(0), (3, 20, 1), minval=1.0, maxval=10.0)
    _, emissions = simulate(jax.random.PRNGKey(1), params, inputs)
    return params, inputs, emissions


def test_numpyro_log_density_is_prior_plus_marginal_likelihood(data):
    """The model's joint density at theta equals log p(theta) + sum_n log p(y_n | theta).

    This checks the centred coordinates too: the model samples centred_biases, yet its density
    expressed through biases must be exactly the article's prior times the likelihood.
    """
    params, inputs, emissions = data
    priors = Priors(weight_scale=2.0, bias_scale=3.0, noise_scale=1.5, transition_concentration=1.3)
    mask = jnp.ones(emissions.shape, bool)
    input_mean = jnp.array([4.2])
    constrained = {
        "initial_probs": jnp.array([0.2, 0.3, 0.5]),
        "transition_matrix": jnp.asarray(params.transition_matrix, jnp.float32),
        "weights": jnp.asarray(params.weights, jnp.float32),
        "centred_biases": jnp.asarray(params.biases + params.weights @ input_mean, jnp.float32),
        "scales": jnp.asarray(params.scales, jnp.float32),
    }
    kwargs = dict(inputs=inputs, emissions=emissions, mask=mask, num_states=3, priors=priors, input_mean=input_mean)
    model_density, _ = log_density(glmhmm_model, (), kwargs, constrained)
    theta = GLMHMMParams(
        constrained["initial_probs"],
        constrained["transition_matrix"],
        constrained["weights"],
        jnp.asarray(params.biases, jnp.float32),
        constrained["scales"],
    )
    expected = log_prior(theta, priors) + jnp.sum(log_likelihood(theta, inputs, emissions))
    # float32 sums of ~60 terms of size ~1-10: relative agreement to 1e-5.
    np.testing.assert_allclose(model_density, expected, rtol=1e-5)


def test_log_likelihood_is_jittable_and_matches_eager(data):
    params, inputs, emissions = data
    eager = log_likelihood(params, inputs, emissions)
    jitted = jax.jit(log_likelihood)(jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params), inputs, emissions)
    assert eager.shape == (3,)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)


def test_log_likelihood_accepts_one_sequence(data):
    params, inputs, emissions = data
    single = log_likelihood(params, np.asarray(inputs[1]), np.asarray(emissions[1]))
    np.testing.assert_allclose(single, log_likelihood(params, inputs, emissions)[1:2], rtol=1e-6)


def _float32(params):
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)


def test_log_likelihood_gradient_is_the_analytic_adjoint_by_default(data):
    """jax.grad of the public log_likelihood takes the forward-backward adjoint (a custom_vjp) unless
    adjoint=False, and both gradients agree (float32 sums of ~60 terms: rtol 1e-4, atol 1e-3)."""
    params, inputs, emissions = data
    params = _float32(params)
    mask = np.ones(emissions.shape, bool)
    mask[1, 4] = False

    def total(adjoint):
        return lambda p: jnp.sum(log_likelihood(p, inputs, emissions, mask, adjoint=adjoint))

    assert "custom_vjp_call" in str(jax.make_jaxpr(total(True))(params))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(total(False))(params))
    fast, plain = jax.grad(total(True))(params), jax.grad(total(False))(params)
    for name in params._fields:
        if getattr(params, name) is not None:
            np.testing.assert_allclose(getattr(fast, name), getattr(plain, name), rtol=1e-4, atol=1e-3, err_msg=name)
    np.testing.assert_array_equal(
        log_likelihood(params, inputs, emissions, mask), log_likelihood(params, inputs, emissions, mask, adjoint=False)
    )


def test_log_likelihood_second_derivatives_with_and_without_adjoint(data):
    """jax.hessian (forward over reverse) through the adjoint equals autodiff's and central
    differences of the gradient (float32, step 1e-2: rtol 2e-2); forward mode alone needs
    adjoint=False, and the default refuses it with JAX's custom_vjp error."""
    params, inputs, emissions = data
    params = _float32(params)

    def in_weights(weights, adjoint):
        return jnp.sum(log_likelihood(params._replace(weights=weights), inputs, emissions, adjoint=adjoint))

    plain = np.asarray(jax.hessian(lambda w: in_weights(w, False))(params.weights)).reshape(3, 3)
    through_adjoint = np.asarray(jax.hessian(lambda w: in_weights(w, True))(params.weights)).reshape(3, 3)
    np.testing.assert_allclose(through_adjoint, plain, rtol=1e-4, atol=1e-2)
    step = 1e-2
    gradient = jax.grad(lambda w: in_weights(w, True))
    columns = [
        (gradient(params.weights.at[k, 0].add(step)) - gradient(params.weights.at[k, 0].add(-step))).ravel()
        / (2 * step)
        for k in range(3)
    ]
    np.testing.assert_allclose(plain, np.stack(columns, axis=1), rtol=2e-2, atol=1.0)
    forward = jax.jacfwd(lambda w: in_weights(w, False))(params.weights)
    np.testing.assert_allclose(forward, jax.grad(lambda w: in_weights(w, True))(params.weights), rtol=1e-4, atol=1e-3)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(lambda w: in_weights(w, True))(params.weights)


def test_log_likelihood_rejects_nan_without_mask(data):
    params, inputs, emissions = data
    bad = np.asarray(emissions).copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="emissions"):
        log_likelihood(params, inputs, bad)
    masked = np.ones(bad.shape, bool)
    masked[0, 3] = False
    assert np.all(np.isfinite(log_likelihood(params, inputs, bad, mask=masked)))


def test_analytic_adjoint_gradient_matches_autodiff(data):
    """The NUTS model's gradient with the forward-backward adjoint equals autodiff through the scan.

    Checked on the unconstrained potential energy NUTS actually differentiates, with a masked step;
    float32 gradients of size ~100 agree to ~1e-3 absolute / 1e-4 relative.
    """
    from numpyro.infer.util import potential_energy

    _, inputs, emissions = data
    mask = jnp.ones(emissions.shape, bool).at[0, 4].set(False).at[2, -3:].set(False)
    kwargs = dict(
        inputs=inputs, emissions=emissions, mask=mask, num_states=3, priors=Priors(), input_mean=jnp.array([5.0])
    )
    key_names = ["centred_biases", "initial_probs", "scales", "transition_matrix", "weights"]
    keys = jax.random.split(jax.random.PRNGKey(3), len(key_names))
    shapes = {
        "centred_biases": (3,),
        "initial_probs": (2,),
        "scales": (3,),
        "transition_matrix": (3, 2),
        "weights": (3, 1),
    }
    point = {name: 0.5 * jax.random.normal(k, shapes[name]) for k, name in zip(keys, key_names, strict=True)}

    def energy(unconstrained, adjoint):
        return potential_energy(glmhmm_model, (), {**kwargs, "adjoint": adjoint}, unconstrained)

    value_adjoint, grad_adjoint = jax.value_and_grad(energy)(point, True)
    value_autodiff, grad_autodiff = jax.value_and_grad(energy)(point, False)
    np.testing.assert_allclose(value_adjoint, value_autodiff, rtol=1e-6)
    for name in key_names:
        np.testing.assert_allclose(grad_adjoint[name], grad_autodiff[name], rtol=1e-4, atol=1e-3, err_msg=name)


def test_unconstrain_sites_matches_numpyro_unconstrain_fn(data):
    """Our direct inverse bijections equal NumPyro's unconstrain_fn (which runs the model), so the
    starting points NUTS gets are the ones NumPyro would compute."""
    from numpyro.infer.util import unconstrain_fn

    from bayes_glmhmm.model import unconstrain_sites

    params, inputs, emissions = data
    constrained = {
        "initial_probs": jnp.array([0.2, 0.3, 0.5]),
        "transition_matrix": jnp.asarray(params.transition_matrix, jnp.float32),
        "weights": jnp.asarray(params.weights, jnp.float32),
        "centred_biases": jnp.array([1.0, -2.0, 0.5]),
        "scales": jnp.asarray(params.scales, jnp.float32),
    }
    kwargs = dict(
        inputs=inputs,
        emissions=emissions,
        mask=jnp.ones(emissions.shape, bool),
        num_states=3,
        priors=Priors(),
        input_mean=jnp.array([5.0]),
    )
    expected = unconstrain_fn(glmhmm_model, (), kwargs, constrained)
    ours = unconstrain_sites(constrained)
    assert set(ours) == set(expected)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)


def _family_params(name):
    """Hand-picked parameters of a 2-state, 2-input model of each non-Gaussian family."""
    from bayes_glmhmm import BernoulliGLMHMMParams, CategoricalGLMHMMParams, PoissonGLMHMMParams

    initial, transitions = jnp.array([0.3, 0.7]), jnp.array([[0.9, 0.1], [0.2, 0.8]])
    if name == "categorical":
        weights = jnp.array([[[1.0, -0.5], [0.3, 0.2]], [[-1.0, 0.4], [0.0, 0.8]]])
        return CategoricalGLMHMMParams(initial, transitions, weights, jnp.array([[0.2, -0.3], [0.5, 0.1]]))
    params_type = {"bernoulli": BernoulliGLMHMMParams, "poisson": PoissonGLMHMMParams}[name]
    return params_type(initial, transitions, jnp.array([[0.8, -0.3], [-0.4, 0.5]]), jnp.array([0.3, 1.1]))


@pytest.mark.parametrize("family_name", ["bernoulli", "categorical", "poisson"])
def test_every_family_model_density_is_prior_plus_marginal_likelihood(family_name):
    """As for the Gaussian: the model (centred coordinates, the family's sites) has density
    log p(theta) + sum_n log p(y_n | theta), with the prior written independently here."""
    from jax.scipy.stats import dirichlet, norm

    from bayes_glmhmm import family_of

    params = _family_params(family_name)
    family = family_of(params)
    inputs = jax.random.normal(jax.random.PRNGKey(3), (3, 15, 2))
    _, emissions = simulate(jax.random.PRNGKey(4), params, inputs)
    priors = Priors(weight_scale=2.0, bias_scale=0.7, transition_concentration=1.5, initial_concentration=2.0)
    input_mean = jnp.array([0.3, -0.2])
    constrained = {
        "initial_probs": params.initial_probs,
        "transition_matrix": params.transition_matrix,
        "weights": params.weights,
        "centred_biases": params.biases + params.weights @ input_mean,
    }
    kwargs = dict(
        inputs=inputs,
        emissions=emissions,
        mask=jnp.ones(emissions.shape, bool),
        num_states=2,
        priors=priors,
        input_mean=input_mean,
        family=family,
    )
    model_density, _ = log_density(glmhmm_model, (), kwargs, constrained)
    prior = (
        dirichlet.logpdf(params.initial_probs, jnp.full(2, 2.0))
        + sum(dirichlet.logpdf(row, jnp.full(2, 1.5)) for row in params.transition_matrix)
        + jnp.sum(norm.logpdf(params.weights, 0.0, 2.0))
        + jnp.sum(norm.logpdf(params.biases, 0.0, 0.7))
    )
    expected = prior + jnp.sum(log_likelihood(params, inputs, emissions))
    np.testing.assert_allclose(log_prior(params, priors), prior, rtol=1e-5)
    np.testing.assert_allclose(model_density, expected, rtol=1e-5)


def test_sample_prior_draws_have_the_prior_moments():
    """Prior draws of a categorical model: weights and biases ~ Normal(0, scale), rows on the simplex.

    4000 draws of 8 weights each: the sample sd is within 3% of 2.0 (its SE is 2.0 / sqrt(2 * 32000) < 0.4%).
    """
    from bayes_glmhmm import get_family
    from bayes_glmhmm.model import sample_prior

    family = get_family("categorical", num_classes=3)
    priors = Priors(weight_scale=2.0, bias_scale=0.5)
    draws = jax.vmap(lambda key: sample_prior(key, family, 2, 2, priors))(jax.random.split(jax.random.PRNGKey(0), 4000))
    assert draws.weights.shape == (4000, 2, 2, 2) and draws.biases.shape == (4000, 2, 2)
    np.testing.assert_allclose(np.std(draws.weights), 2.0, rtol=0.03)
    np.testing.assert_allclose(np.std(draws.biases), 0.5, rtol=0.03)
    np.testing.assert_allclose(np.sum(draws.transition_matrix, axis=-1), 1.0, rtol=1e-5)
