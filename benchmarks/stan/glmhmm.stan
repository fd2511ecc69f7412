// Gaussian GLM-HMM with the states summed out by Stan's built-in hmm_marginal, written as a
// plain Stan user would: the article's priors, no reparametrization, Stan's default init.
// y[n, t] | x[n, t], z = k ~ normal(x[n, t] . weights[k] + biases[k], scales[k]).
data {
  int<lower=1> N;  // sequences
  int<lower=1> T;  // time steps per sequence
  int<lower=1> K;  // hidden states
  int<lower=1> D;  // inputs
  array[N] matrix[T, D] x;
  array[N] vector[T] y;
}
parameters {
  simplex[K] initial_probs;
  array[K] simplex[K] transition_rows;  // transition_rows[i][j] = p(z_{t+1} = j | z_t = i)
  matrix[K, D] weights;
  vector[K] biases;
  vector<lower=0>[K] scales;
}
model {
  matrix[K, K] transition_matrix;
  for (i in 1:K) {
    transition_matrix[i] = transition_rows[i]';
  }
  initial_probs ~ dirichlet(rep_vector(1, K));
  for (i in 1:K) {
    transition_rows[i] ~ dirichlet(rep_vector(1, K));
  }
  to_vector(weights) ~ normal(0, 1);
  biases ~ normal(0, 1);
  scales ~ normal(0, 1);  // half-normal through the lower bound
  for (n in 1:N) {
    matrix[K, T] log_omega;  // log p(y[n, t] | z[n, t] = k)
    for (k in 1:K) {
      vector[T] mu = x[n] * weights[k]' + biases[k];
      for (t in 1:T) {
        log_omega[k, t] = normal_lpdf(y[n][t] | mu[t], scales[k]);
      }
    }
    target += hmm_marginal(log_omega, transition_matrix, initial_probs);
  }
}
