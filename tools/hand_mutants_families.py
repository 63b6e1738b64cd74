"""Hand-picked one-line mutants of the family modules (autoregressive/, latent/, estimators.py, flows/,
diffusion/, vq/, gan/, metrics/distances.py): the slips a contributor plausibly makes in a formula (a
sign, a dropped term, decay and 1 − decay swapped, σ for √β, a wrong normalizer), each run against a
targeted test subset. Part A is the ten places of docs/MUTATION.md's "Family modules" section, each
run against its new formula test alone, and the float64/bf16 fixes against tests/test_models_dtypes.py;
part B samples the rest of each family module.

Usage: OMP_NUM_THREADS=1 python tools/hand_mutants_families.py [NAME_SUBSTRING...]
Prints one line per mutant with the first failing test; exit 1 if a verdict differs from the expected
one (``killed``, or ``survive`` for those argued harmless in docs/MUTATION.md). Each mutant runs in a
scratch copy of src/ and tests/ (the repository is never changed); the runner is the one of
tools/hand_mutants_survivors.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hand_mutants_survivors import main  # noqa: E402  (the shared scratch-copy runner)

S = "src/genmodels/"
PRE, PROC, SAMP, BOUND, DMODEL = (S + "diffusion/" + f for f in ("preconditioning.py", "processes.py", "samplers.py", "bound.py", "model.py"))
LOSSES, LIK = S + "diffusion/losses.py", S + "diffusion/likelihood.py"
LBASE, VAE, DVAE = S + "latent/base.py", S + "latent/vae.py", S + "latent/discrete_vae.py"
EST, QUAL = S + "estimators.py", S + "metrics/distances.py"  # FD, KID, k-NN (split out of quality.py)
TWO, QUANT, VQGAN, GAN = S + "vq/two_stage.py", S + "vq/quantizer.py", S + "vq/vqgan.py", S + "gan/gan.py"
MADE, NADE, FVSBN, ARBASE = (S + "autoregressive/" + f for f in ("made.py", "nade.py", "fvsbn.py", "base.py"))
TRANS, SPLINE, DIST = S + "flows/transforms.py", S + "flows/spline.py", S + "flows/distributions.py"

F_DIFF = "tests/test_formulas_diffusion.py"
F_LAT = "tests/test_formulas_latent.py"
F_VQM = "tests/test_formulas_vq_metrics.py"
F64 = "tests/test_models_dtypes.py::test_every_model_"
T_EST = [F_LAT, "tests/test_estimators.py"]
T_LAT = [F_LAT, "tests/test_latent.py"]
T_DIFF = [F_DIFF, "tests/test_diffusion.py"]
T_VQ = [F_VQM, "tests/test_vq.py"]
T_GAN = ["tests/test_gan.py"]
T_MET = [F_VQM, "tests/test_metrics.py"]
T_AR = ["tests/test_autoregressive.py", "tests/test_models.py::test_exact_likelihood_normalizes_over_all_1024_binary_configurations"]
T_FLOW = ["tests/test_flows.py", "tests/test_flows_glow_speed.py"]

DDIM_UP = "sigma_up = eta * sigma_next * torch.sqrt(torch.clamp(1 - sigma_next**2 / sigma**2, min=0))"
EDM_SKIP = "return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)"
EDM_OUT = "return sigma * self.sigma_data / torch.sqrt(sigma**2 + self.sigma_data**2)"

# (name, file, old text, new text, tests, expected)
MUTANTS: list[tuple[str, str, str, str, list[str], str]] = [
    # --- A. the ten places, each against its new formula test only ------------------------------
    ("1 elbo / last chunk's count", LBASE, "reconstruction = reconstruction / k", "reconstruction = reconstruction / count", [F_LAT], "killed"),
    ("1 elbo / whole chunks", LBASE, "reconstruction = reconstruction / k", "reconstruction = reconstruction / (len(log_w_chunks) * SAMPLE_CHUNK)", [F_LAT], "killed"),
    ("1 iwae log of whole chunks", LBASE, "dim=1) - math.log(k)", "dim=1) - math.log(len(log_w_chunks) * SAMPLE_CHUNK)", [F_LAT], "killed"),
    ("1 elbo chunk means summed", LBASE, "reconstruction += log_px.sum(dim=1)", "reconstruction += log_px.mean(dim=1) * SAMPLE_CHUNK", [F_LAT], "killed"),
    ("1 decoder rows matched by row block", LBASE, "min(start + rows, b * count), device=z.device) // count", "min(start + rows, b * count), device=z.device) // rows", [F_LAT], "killed"),
    ("2 gumbel-softmax τ multiplies", EST, "return F.softmax((logits + g) / tau, dim=-1)", "return F.softmax((logits + g) * tau, dim=-1)", [F_LAT], "killed"),
    ("2 gumbel-softmax τ on the logits only", EST, "return F.softmax((logits + g) / tau, dim=-1)", "return F.softmax(logits / tau + g, dim=-1)", [F_LAT], "killed"),
    ("2 gumbel-softmax τ after the softmax", EST, "return F.softmax((logits + g) / tau, dim=-1)", "return F.softmax(logits + g, dim=-1) ** (1 / tau)", [F_LAT], "killed"),
    ("3 baseline decay swapped", EST, "self.value.mul_(self.decay).add_((1 - self.decay) * mean)", "self.value.mul_(1 - self.decay).add_(self.decay * mean)", [F_LAT], "killed"),
    ("3 baseline not started at the first mean", EST, "            self.value.copy_(mean)\n", "            self.value.mul_(self.decay).add_((1 - self.decay) * mean)\n", [F_LAT], "killed"),
    ("4 L0 std σ1 not √β1", BOUND, "std = math.sqrt(float(process.betas[0]))", "std = float(sigmas[0])", [F_DIFF], "killed"),
    ("4 L0 std β1 not √β1", BOUND, "std = math.sqrt(float(process.betas[0]))", "std = float(process.betas[0])", [F_DIFF], "killed"),
    ("4 L0 bins on [0, 1]", BOUND, "lower = 2 * x.to(mean.dtype) / levels - 1", "lower = x.to(mean.dtype) / levels", [F_DIFF], "killed"),
    ("5 edm c_skip σ_d not σ_d²", PRE, EDM_SKIP, "return self.sigma_data / (sigma**2 + self.sigma_data**2)", [F_DIFF], "killed"),
    ("5 edm c_out without √", PRE, EDM_OUT, "return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2)", [F_DIFF], "killed"),
    ("5 v c_out sign", PRE, "return -sigma / torch.sqrt(1 + sigma**2)", "return sigma / torch.sqrt(1 + sigma**2)", [F_DIFF], "killed"),
    ("5 velocity c_skip", PRE, "return 1 / (1 + sigma)\n", "return 1 / (1 + sigma**2)\n", [F_DIFF], "killed"),
    ("6 edm c_in without σ_data", PROC, "return 1 / torch.sqrt(sigma**2 + self.sigma_data**2)", "return 1 / torch.sqrt(sigma**2 + 1)", [F_DIFF], "killed"),
    ("6 c_in = 1 everywhere", PROC, "return self.scale(self.time(sigma))", "return torch.ones_like(sigma)", [F_DIFF], "killed"),
    ("6 model skips c_in", DMODEL, "out = self.net((c_in * x).reshape(len(x), -1), c_noise, labels)", "out = self.net(x.reshape(len(x), -1), c_noise, labels)", [F_DIFF], "killed"),
    ("7 ve c_noise without ½", PROC, "return 250 * torch.log(0.5 * sigma)", "return 250 * torch.log(sigma)", [F_DIFF], "killed"),
    ("7 edm c_noise without ¼", PROC, "return 1000 * torch.log(sigma) / 4", "return 1000 * torch.log(sigma)", [F_DIFF], "killed"),
    ("7 vp c_noise M not M − 1", PROC, "return t - 1 if self.discrete else 999 * t", "return t - 1 if self.discrete else 1000 * t", [F_DIFF], "killed"),
    ("7 discrete vp c_noise 1-based", PROC, "return t - 1 if self.discrete else 999 * t", "return t if self.discrete else 999 * t", [F_DIFF], "killed"),
    ("7 flow c_noise of σ not t", PROC, "return 1000 * self.time(sigma)", "return 1000 * sigma", [F_DIFF], "killed"),
    ("8 ddim σ_up without √(1 − σ'²/σ²)", SAMP, DDIM_UP, "sigma_up = eta * sigma_next", [F_DIFF], "killed"),
    ("8 ddim σ_up with σ not σ'", SAMP, DDIM_UP, "sigma_up = eta * sigma * torch.sqrt(torch.clamp(1 - sigma_next**2 / sigma**2, min=0))", [F_DIFF], "killed"),
    ("8 ddim mean ignores σ_up", SAMP, "sigma_down = torch.sqrt(sigma_next**2 - sigma_up**2)", "sigma_down = sigma_next", [F_DIFF], "killed"),
    ("9 bits per code in nats", TWO, '"bits_per_code": nll / (codes.shape[1] * math.log(2))', '"bits_per_code": nll / codes.shape[1]', [F_VQM], "killed"),
    ("9 bits per code over log K", TWO, '"bits_per_code": nll.detach() / (codes.shape[1] * math.log(2))', '"bits_per_code": nll.detach() / (codes.shape[1] * math.log(self.autoencoder.num_codes))', [F_VQM], "killed"),
    ("9 code nll a mean over codes", TWO, 'reduction="none").sum(1)', 'reduction="none").mean(1)', [F_VQM], "killed"),
    ("10 covariance over N", QUAL, "return mu, centred.T @ centred / (len(f) - 1)", "return mu, centred.T @ centred / len(f)", [F_VQM], "killed"),
    ("10 covariance not centred", QUAL, "    centred = f - mu\n", "    centred = f\n", [F_VQM], "killed"),
    ("10 fd without the 2", QUAL, "torch.trace(sigma2) - 2.0 * trace_sqrt", "torch.trace(sigma2) - trace_sqrt", [F_VQM], "killed"),
    ("10 fd √ of Σ1Σ2 taken as if symmetric", QUAL, "middle = s @ sigma2 @ s", "middle = sigma1 @ sigma2", [F_VQM], "killed"),
    ("dtype glow LU parameters float32", TRANS, "self.L = nn.Parameter(l.to(dtype))", "self.L = nn.Parameter(l.float())", [F64 + "builds_trains_scores_and_samples_in_float64[glow]"], "killed"),
    ("dtype latent encoder input float32", S + "latent/networks.py", "inputs = self.input_dropout(x.to(dtype) / (self.levels - 1))", "inputs = self.input_dropout(x.to(torch.float32) / (self.levels - 1))", [F64 + "moved_to_float64_works_there[vae]"], "killed"),
    ("dtype diffusion dequantized input float32", DMODEL, "units.scale_to_symmetric((x.to(self.data_mean.dtype) + u) / K)", "units.scale_to_symmetric((x.float() + u) / K)", [F64 + "moved_to_float64_works_there[edm]"], "killed"),
    ("dtype bound feeds float32", BOUND, "reshape(len(ts) * B, *shape).to(network_dtype)", "reshape(len(ts) * B, *shape).float()", ["tests/test_models_dtypes.py::test_ddpm_variational_bound_runs_in_float64"], "killed"),
    ("dtype gan latents float32", GAN, "        z = z.to(next(self.generator.parameters()).dtype)", "        z = z", [F64 + "moved_to_float64_works_there[gan]"], "killed"),
    ("bf16 vq codebook update in bf16", QUANT, ".reshape(-1, self.dim).to(self.codebook.dtype), indices", ".reshape(-1, self.dim), indices", ["tests/test_models_dtypes.py::test_every_model_takes_a_training_step_under_bf16_autocast[vqvae]"], "killed"),
    # --- B. the rest of each family module ---------------------------------------------------------
    # estimators.py
    ("est reparameterize σ = log σ", EST, "return mu + log_sigma.exp() * eps", "return mu + log_sigma * eps", T_EST, "killed"),
    ("est gaussian KL −log σ sign", EST, "(2 * log_sigma).exp() - 1.0) - log_sigma", "(2 * log_sigma).exp() - 1.0) + log_sigma", T_EST, "killed"),
    ("est gumbel noise sign", EST, "return -torch.log((-torch.log(u.clamp_min(eps))).clamp_min(eps))", "return torch.log((-torch.log(u.clamp_min(eps))).clamp_min(eps))", T_EST, "killed"),
    ("est REINFORCE baseline added", EST, "signal = (f - baseline).detach()", "signal = (f + baseline).detach()", T_EST, "killed"),
    ("est VIMCO geometric mean over k", EST, "log_geo = (total - log_w) / (k - 1)", "log_geo = (total - log_w) / k", T_EST, "killed"),
    ("est VIMCO signal sign", EST, "signal = (bound.unsqueeze(-1) - vimco_baselines(log_w)).detach()", "signal = (vimco_baselines(log_w) - bound.unsqueeze(-1)).detach()", T_EST, "killed"),
    ("est log_mean_exp without log k", EST, "return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])", "return torch.logsumexp(log_w, dim=dim)", T_EST, "killed"),
    # latent/
    ("vae warm-up ramp inverted", VAE, "c.beta * min(1.0, step / c.warmup_steps)", "c.beta * max(0.0, 1 - step / c.warmup_steps)", T_LAT, "killed"),
    ("vae free bits per example not batch mean", VAE, "mean_kl = kl_per_dim.mean(dim=0)", "mean_kl = kl_per_dim", T_LAT, "killed"),
    ("discrete-vae KL without V log C", DVAE, ".sum(dim=(1, 2)) + self.variables * math.log(self.classes)", ".sum(dim=(1, 2))", T_LAT, "killed"),
    # diffusion/
    ("loss weight not applied", LOSSES, "return process.loss_weight(sigma) * error, sigma", "return error, sigma", T_DIFF, "killed"),
    ("edm loss weight σ_d not σ_d²", PROC, "return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2", "return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data)", T_DIFF, "killed"),
    ("heun trapezoid without ½", SAMP, "x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)", "x_next = x + (sigma_next - sigma_hat) * (d + d_next)", T_DIFF, "killed"),
    ("heun churn γ uncapped", SAMP, "gamma = min(s_churn / steps, math.sqrt(2) - 1)", "gamma = s_churn / steps", T_DIFF, "killed"),
    ("dpm++ 2m r inverted", SAMP, "r = h_last / h", "r = h / h_last", T_DIFF, "killed"),
    ("heun churn noise without S_noise", SAMP, "torch.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise(x, generator)", "torch.sqrt(sigma_hat**2 - sigma**2) * _noise(x, generator)", T_DIFF, "killed"),
    ("heun churn ignores S_tmax", SAMP, "if s_tmin <= float(sigma) <= s_tmax else 0.0", "if s_tmin <= float(sigma) else 0.0", T_DIFF, "killed"),
    ("karras ρ exponent dropped", PROC, "sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho", "sigmas = inv_rho_max + ramp * (inv_rho_min - inv_rho_max)", T_DIFF, "killed"),
    ("cosine ᾱ not normalized by f(0)", PROC, "return f / math.cos(s / (1 + s) * math.pi / 2) ** 2", "return f", T_DIFF, "killed"),
    ("edm training σ without P_std", PROC, "self.P_mean + self.P_std * math.sqrt(2) * torch.erfinv(2 * u - 1)", "self.P_mean + math.sqrt(2) * torch.erfinv(2 * u - 1)", T_DIFF, "killed"),
    ("L_T prior term log(1 − ᾱ) sign", BOUND, "- 1 - torch.log1p(-abar_T)", "- 1 + torch.log1p(-abar_T)", T_DIFF, "killed"),
    ("L_T prior term without ᾱ_T x_0²", BOUND, "prior = 0.5 * (abar_T * x0**2", "prior = 0.5 * (x0**2", T_DIFF, "killed"),
    ("L_{t−1} weight without ½", BOUND, "weight = 0.5 * (sigmas[t - 1] ** -2 - sigmas[t] ** -2)", "weight = (sigmas[t - 1] ** -2 - sigmas[t] ** -2)", T_DIFF, "killed"),
    ("ode prior without 2π", LIK, "dims * (math.log(sigma) + 0.5 * math.log(2 * math.pi))", "dims * math.log(sigma)", T_DIFF, "killed"),
    ("ode divergence sign", LIK, "return (x - denoised).detach(), (dims - trace).detach()", "return (x - denoised).detach(), (trace - dims).detach()", T_DIFF, "killed"),
    # vq/
    ("vq commitment without β", QUANT, "commitment = self.beta * (z_e - e.detach()).pow(2).sum((1, 2))", "commitment = (z_e - e.detach()).pow(2).sum((1, 2))", T_VQ, "killed"),
    ("vq straight-through dropped", QUANT, "z_q = z_e + (e - z_e).detach()", "z_q = e", T_VQ, "killed"),
    ("vq EMA decay swapped", QUANT, "self.ema_count.mul_(self.decay).add_(n, alpha=1 - self.decay)", "self.ema_count.mul_(1 - self.decay).add_(n, alpha=self.decay)", T_VQ, "killed"),
    ("vq perplexity exp of +entropy", QUANT, "return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())", "return torch.exp((p * torch.log(p.clamp_min(1e-12))).sum())", T_VQ, "killed"),
    ("vqgan adaptive weight inverted", VQGAN, "(g_rec.norm() / (g_gan.norm() + delta))", "(g_gan.norm() / (g_rec.norm() + delta))", T_VQ, "killed"),
    ("vqgan hinge margin sign", VQGAN, "hinge = F.relu(1 - d_real) + F.relu(1 + d_fake)", "hinge = F.relu(1 + d_real) + F.relu(1 - d_fake)", T_VQ, "killed"),
    # gan/
    ("gan hinge D loss signs", GAN, "per = F.relu(1 - d_real) + F.relu(1 + d_fake)", "per = F.relu(1 + d_real) + F.relu(1 - d_fake)", T_GAN, "killed"),
    ("gan non-saturating G loss saturating", GAN, "per = -score if self.config.loss == \"hinge\" else F.softplus(-score)", "per = -score if self.config.loss == \"hinge\" else -F.softplus(score)", T_GAN, "killed"),
    ("gan non-saturating D real sign", GAN, "per = F.softplus(-d_real) + F.softplus(d_fake)", "per = F.softplus(d_real) + F.softplus(d_fake)", T_GAN, "killed"),
    # metrics/distances.py (beyond FD)
    ("kid kernel degree 2", QUAL, "return (x @ y.T / x.shape[1] + 1.0) ** 3", "return (x @ y.T / x.shape[1] + 1.0) ** 2", T_MET, "killed"),
    ("kid mmd biased (diagonal kept)", QUAL, "(kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))", "kxx.sum() / (m * (m - 1))", T_MET, "killed"),
    ("knn radius k-th not (k+1)-th", QUAL, "out.append(d.kthvalue(k + 1, dim=1).values)", "out.append(d.kthvalue(k, dim=1).values)", T_MET, "killed"),
    ("density over M not kM", QUAL, "density = _balls_containing(fake, real, radii).sum().double() / (k * len(fake))", "density = _balls_containing(fake, real, radii).sum().double() / len(fake)", T_MET, "killed"),
    ("coverage strict <", QUAL, "coverage = (nearest_fake <= radii).double().mean()", "coverage = (nearest_fake < radii).double().mean()", T_MET, "killed"),
    # autoregressive/
    ("fvsbn mask sees x_i itself", FVSBN, 'self.register_buffer("mask", torch.ones(dims, dims).tril(diagonal=-1))', 'self.register_buffer("mask", torch.ones(dims, dims).tril(diagonal=0))', T_AR, "killed"),
    ("nade a_i includes x_i", NADE, "a = torch.cumsum(contributions, dim=1) - contributions +", "a = torch.cumsum(contributions, dim=1) +", T_AR, "killed"),
    ("made ensemble without log M", MADE, "return torch.logsumexp(per_mask, dim=0) - math.log(self.num_orderings)", "return torch.logsumexp(per_mask, dim=0)", T_AR, "killed"),
    ("autoregressive sampling temperature multiplies", ARBASE, "log_p = self.head.level_log_probs(params.float()) / temperature", "log_p = self.head.level_log_probs(params.float()) * temperature", T_AR, "killed"),
    # flows/
    ("affine coupling ladj sign", TRANS, "return self._join(x_a, x_b * torch.exp(log_s) + t), _sum_per_example(log_s)", "return self._join(x_a, x_b * torch.exp(log_s) + t), -_sum_per_example(log_s)", T_FLOW, "killed"),
    ("actnorm ladj without spatial", TRANS, "return y, (spatial * self.log_scale.sum()).expand(x.shape[0])", "return y, (self.log_scale.sum()).expand(x.shape[0])", T_FLOW, "killed"),
    ("actnorm init scale not 1/std", TRANS, "self.log_scale.copy_(-torch.log(std + self.eps))", "self.log_scale.copy_(torch.log(std + self.eps))", T_FLOW, "killed"),
    ("LU ladj without spatial", TRANS, "return self._mix(self.weight(), x), (spatial * self.log_s.sum()).expand(x.shape[0])", "return self._mix(self.weight(), x), (self.log_s.sum()).expand(x.shape[0])", T_FLOW, "killed"),
    ("LU sign of s dropped", TRANS, "torch.diag(self.sign_s * torch.exp(self.log_s))", "torch.diag(torch.exp(self.log_s))", T_FLOW, "killed"),
    ("MAF ladj sign", TRANS, "return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)", "return (x - mu) * torch.exp(-alpha), alpha.sum(dim=1)", T_FLOW, "killed"),
    ("spline logabsdet ×1 denominator", SPLINE, "logabsdet = torch.log(numerator) - 2 * torch.log(denominator)  # eq. 5", "logabsdet = torch.log(numerator) - torch.log(denominator)  # eq. 5", T_FLOW, "killed"),
    ("normal base without 2π", DIST, "return -0.5 * (z**2).sum(dim=1) - 0.5 * self.features * math.log(2 * math.pi)", "return -0.5 * (z**2).sum(dim=1)", T_FLOW, "killed"),
    ("logistic prior one softplus", DIST, "return -(F.softplus(z) + F.softplus(-z)).sum(dim=1)", "return -(F.softplus(z)).sum(dim=1)", T_FLOW, "killed"),
]


if __name__ == "__main__":
    sys.exit(main(MUTANTS))
