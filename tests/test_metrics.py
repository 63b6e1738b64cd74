"""Sample-quality metrics and the feature networks: closed forms, unbiasedness, hand-computed cases."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genmodels.core import Batch, create_model
from genmodels.data.fashion_mnist import DEFAULT_DIR, fashion_mnist_available
from genmodels.errors import UserError
from genmodels.metrics.features import (
    FeatureNetwork,
    _accuracy,
    feature_network_name,
    load_feature_network,
    main as retrain_main,
    save_feature_network,
    shipped_info,
    train_feature_network,
    weights_sha256,
)
from genmodels.metrics.inception import inception_fid
from genmodels.metrics.distances import (
    density_coverage,
    frechet_distance_features,
    kernel_inception_style_distance,
    knn_radii,
    mmd2_unbiased,
    polynomial_kernel,
    sqrtm_psd,
)
from genmodels.metrics.quality import (
    LABELS,
    FeatureReference,
    FrechetValidation,
    SampleQualityRecord,
    evaluate_sample_quality,
    frechet_distance,
    gaussian_statistics,
    memorization,
    precision_recall,
    quality_figures,
    sample_quality,
)

needs_fashion = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason=f"Fashion-MNIST files absent from {DEFAULT_DIR}: "
    "sudo apt-get update && sudo apt-get install dataset-fashion-mnist",
)

F64 = torch.float64


def random_spd(d: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    a = torch.randn(d, d, generator=generator, dtype=F64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=F64))


@pytest.fixture(scope="module")
def digits_reference(digits):
    return FeatureReference(digits, "test")


# --- Fréchet distance -----------------------------------------------------------------------------
def test_sqrtm_psd_squares_back_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    a = random_spd(6, g)
    s = sqrtm_psd(a)
    torch.testing.assert_close(s @ s, a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s.T)
    assert torch.linalg.eigvalsh(s).min() > 0


def test_fd_matches_closed_form_for_non_commuting_covariances():
    g = torch.Generator().manual_seed(1)
    d = 5
    s1, s2 = random_spd(d, g), random_spd(d, g, scale=3.0)
    assert not torch.allclose(s1 @ s2, s2 @ s1)  # the case a naive sqrt(Σ1)·sqrt(Σ2) gets wrong
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    # Tr((Σ1Σ2)^½) by an independent route: Σ1Σ2 is diagonalizable with positive real eigenvalues.
    eig = torch.linalg.eigvals(s1 @ s2)
    assert eig.imag.abs().max() < 1e-10 and eig.real.min() > 0
    expected = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * eig.real.sqrt().sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    # symmetric in its arguments, and 0 between a Gaussian and itself
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(float(expected), rel=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)


def test_fd_one_dimensional_closed_form():
    # W2² between N(m1, a²) and N(m2, b²) is (m1 − m2)² + (a − b)².
    v = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[25.0]]))
    assert v == pytest.approx(9.0 + 9.0, rel=1e-12)


def test_fd_of_samples_converges_to_the_gaussians_fd():
    g = torch.Generator().manual_seed(2)
    d, n = 3, 200_000
    s1, s2 = random_spd(d, g), random_spd(d, g, scale=2.0)
    mu1, mu2 = torch.zeros(d, dtype=F64), torch.full((d,), 0.5, dtype=F64)
    x = mu1 + torch.randn(n, d, generator=g, dtype=F64) @ torch.linalg.cholesky(s1).T
    y = mu2 + torch.randn(n, d, generator=g, dtype=F64) @ torch.linalg.cholesky(s2).T
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=0.02)
    m, c = gaussian_statistics(x)
    torch.testing.assert_close(c, s1, rtol=0.05, atol=0.02)


def test_fd_of_a_set_with_itself_is_zero_and_grows_with_noise(digits, digits_reference):
    x = digits.test.x
    assert frechet_distance_features(digits_reference.features, digits_reference.features) == pytest.approx(0, abs=1e-8)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(x.shape, generator=g)
    fds = []
    for sigma in (0.0, 1.0, 2.0, 4.0, 8.0):  # Gaussian noise in levels, rounded and clipped to 0..16
        noisy = (x + sigma * eps).round().clamp(0, 16).to(torch.int64)
        fds.append(sample_quality(noisy, digits, reference=digits_reference, metrics=("fd",))[0].value)
    assert fds[0] == pytest.approx(0, abs=1e-8)
    assert all(a < b for a, b in zip(fds, fds[1:])), fds


# --- KID ------------------------------------------------------------------------------------------
def test_mmd2_unbiased_matches_the_definition_by_loops():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert float(mmd2_unbiased(x, y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert polynomial_kernel(x, y).shape == (4, 5)


def test_mmd2_estimator_is_unbiased_on_one_distribution():
    # Many tiny pairs from one distribution: the unbiased estimator averages to 0; the biased
    # V-statistic (diagonals kept) would average to a clearly positive value.
    g = torch.Generator().manual_seed(4)
    values = torch.stack([mmd2_unbiased(torch.randn(8, 2, generator=g, dtype=F64),
                                        torch.randn(8, 2, generator=g, dtype=F64)) for _ in range(2000)])
    stderr = values.std() / math.sqrt(len(values))
    assert abs(float(values.mean())) < 3 * float(stderr)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(2000, 8, generator=g, dtype=F64), torch.randn(3000, 8, generator=g, dtype=F64)
    value, stderr, info = kernel_inception_style_distance(x, y, subsets=10, seed=0)
    assert info == {"subsets": 10, "subset_size": 200, "reference_subset_size": 300}
    assert stderr is not None and abs(value) < 3 * stderr
    shifted, se2, _ = kernel_inception_style_distance(x + 0.5, y, subsets=10, seed=0)
    assert shifted > 5 * se2 and shifted > 0


def test_kid_standard_error_matches_the_spread_over_independent_draws():
    g = torch.Generator().manual_seed(7)
    values, stderrs = [], []
    for _ in range(40):
        x, y = torch.randn(200, 4, generator=g, dtype=F64), torch.randn(200, 4, generator=g, dtype=F64) + 0.3
        v, se, _ = kernel_inception_style_distance(x, y, subsets=10, seed=0)
        values.append(v)
        stderrs.append(se)
    spread = float(torch.tensor(values).std())
    assert 0.7 < sum(stderrs) / len(stderrs) / spread < 1.4


# --- precision and recall -------------------------------------------------------------------------
def test_knn_radius_excludes_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=F64)
    torch.testing.assert_close(knn_radii(x, 1), torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=F64))
    torch.testing.assert_close(knn_radii(x, 2), torch.tensor([3.0, 2.0, 3.0, 6.0], dtype=F64))


def test_precision_recall_hand_computed():
    # real on a line at 0, 1, 3, 7: k=1 radii 1, 1, 2, 4 → balls [−1,1], [0,2], [1,5], [3,11].
    real = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # fake 1.5 (in), 5.0 (in, ball of 3 reaches 5 and ball of 7 reaches 3), 12 (out), −2 (out)
    fake = torch.tensor([[1.5], [5.0], [12.0], [-2.0]])
    # fake k=1 radii: 1.5 → 3.5 (to 5.0 and to −2), 5.0 → 3.5, 12 → 7, −2 → 3.5.
    # Balls [−2,5], [1.5,8.5], [5,19], [−5.5,1.5] cover all of 0, 1, 3, 7.
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == pytest.approx(2 / 4)
    assert recall == pytest.approx(4 / 4)
    # shrink the fake set's reach: k=1 radii of {1.5, 2.5, 20, 21} are 1, 1, 1, 1 → balls cover 1 and 3 only
    precision, recall = precision_recall(real, torch.tensor([[1.5], [2.5], [20.0], [21.0]]), k=1)
    assert precision == pytest.approx(2 / 4) and recall == pytest.approx(2 / 4)


def test_precision_recall_identical_and_disjoint_sets():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(300, 4, generator=g, dtype=F64)
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)
    assert density_coverage(x, x + 100.0, k=5) == (0.0, 0.0)
    assert density_coverage(x, x.clone(), k=5)[1] == 1.0


def test_density_coverage_hand_computed_and_robust_to_a_real_outlier():
    real = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # k=1 real balls [−1,1], [0,2], [1,5], [3,11]; samples 1.5 and 5.0 lie in two balls each.
    assert density_coverage(real, torch.tensor([[1.5], [5.0], [12.0], [-2.0]]), k=1) == (1.0, 0.75)
    # k=2 radii 3, 2, 3, 6: balls [−3,3], [−1,3], [0,6], [1,13]; 2.0 lies in all four, 12.0 in one.
    assert density_coverage(real, torch.tensor([[2.0], [12.0]]), k=2) == (5 / 4, 1.0)
    # One far real outlier: its huge ball gives every sample near it precision 1, density ≈ 1/k.
    g = torch.Generator().manual_seed(8)
    cluster = torch.randn(200, 2, generator=g, dtype=F64)
    real = torch.cat([cluster, torch.tensor([[50.0, 0.0]], dtype=F64)])
    junk = torch.tensor([[50.0, 1.0]], dtype=F64) + 0.01 * torch.randn(201, 2, generator=g, dtype=F64)
    assert precision_recall(real, junk, k=3)[0] == 1.0
    assert density_coverage(real, junk, k=3)[0] < 0.34


def test_precision_and_recall_records_are_not_swapped(digits, digits_reference):
    # Real zeros only: realistic (high precision) but covering one class of ten (low recall).
    zeros = digits.train.x[digits.train.y == 0]
    precision, recall = sample_quality(zeros, digits, reference="train", metrics=("precision", "recall"))
    assert precision.metric == "precision" and precision.value > 0.8
    assert recall.metric == "recall" and recall.value < 0.35


# --- memorization ---------------------------------------------------------------------------------
def test_memorization_flags_copied_training_examples(digits, digits_reference):
    copies = digits.train.x[:100]
    fresh = digits.validation.x[:100]
    samples = torch.cat([copies, fresh])
    (record,) = sample_quality(samples, digits, reference=digits_reference, metrics=("memorization",))
    d = record.details
    assert d["exact_copies"] == 100 and d["exact_copy_indices"] == list(range(100))
    assert set(range(100)) <= set(d["flagged_indices"])
    assert d["nearest_train_indices"][:100] == list(range(100))
    assert 0.5 <= record.value < 0.5 + 0.05  # copies, and few held-out images (quantile 0.01)
    assert record.reference == "train" and record.reference_examples == len(digits.train)
    # held-out images alone flag about the quantile, not more
    (held_out,) = sample_quality(digits.validation.x, digits, reference=digits_reference, metrics=("memorization",))
    assert held_out.value < 0.05 and held_out.details["exact_copies"] == 0


def test_memorization_function_threshold():
    train = torch.tensor([[0.0], [10.0]])
    test = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])  # nearest-train distances 1..5
    value, details = memorization(torch.tensor([[0.0], [9.5], [5.0]]), train, test, quantile=0.25)
    assert details["threshold"] == pytest.approx(2.0)  # torch.quantile linear interpolation
    assert value == pytest.approx(2 / 3) and details["flagged_indices"] == [0, 1]


# --- on real data ---------------------------------------------------------------------------------
def test_real_data_scores_well_and_noise_badly(digits):
    real = sample_quality(digits.test.x, digits, reference="train")
    noise = sample_quality(torch.randint(0, 17, (360, 1, 8, 8), generator=torch.Generator().manual_seed(0)),
                           digits, reference="train")
    by = lambda records: {r.metric: r for r in records}  # noqa: E731
    real, noise = by(real), by(noise)
    assert noise["fd"].value > 20 * real["fd"].value
    assert noise["kid"].value > real["kid"].value + 5 * noise["kid"].stderr
    assert real["precision"].value > 0.8 and real["recall"].value > 0.8
    assert noise["precision"].value < 0.1 and noise["recall"].value < 0.1
    assert real["memorization"].value < 0.05
    for r in real.values():
        assert r.samples == 360 and r.dataset == "digits"
        assert r.features == "genmodels-digits-cnn-v1" and len(r.features_sha256) == 64
    assert real["fd"].reference == "train" and real["fd"].reference_examples == 1257
    assert real["precision"].reference_examples == 360  # subsampled to the sample count


def test_records_are_json_and_never_called_fid(digits, digits_reference):
    records = sample_quality(digits.validation.x, digits, reference=digits_reference)
    assert [r.metric for r in records] == ["fd", "kid", "precision", "recall", "density", "coverage", "memorization"]
    for r in records:
        back = SampleQualityRecord.from_json(json.loads(json.dumps(r.to_json())))
        assert back == r
        assert "FID" not in r.label and "genmodels features" in r.label
    assert records[0].label == LABELS["fd"] == "FD (genmodels features)"


def test_bad_input_gives_clear_errors(digits, digits_reference):
    with pytest.raises(UserError, match="unknown sample-quality metric"):
        sample_quality(digits.test.x, digits, reference=digits_reference, metrics=("fid",))
    with pytest.raises(UserError, match="levels 0..16"):
        sample_quality(digits.test.x + 1, digits, reference=digits_reference)
    with pytest.raises(UserError, match="no feature network for data set 'checkerboard'"):
        sample_quality(torch.zeros(10, 2), "checkerboard")


def test_binarized_data_use_the_parent_network(digits):
    from genmodels.data import load_dataset

    binary = load_dataset("binary-digits")
    assert feature_network_name("binary-digits") == feature_network_name("digits")
    real = sample_quality(binary.test.x, binary, reference="train", metrics=("fd",))[0]
    noise = torch.randint(0, 2, binary.test.x.shape, generator=torch.Generator().manual_seed(0))
    bad = sample_quality(noise, binary, reference="train", metrics=("fd",))[0]
    assert bad.value > 10 * real.value and real.dataset == "binary-digits"


def test_model_samples_and_fd_validation_monitor(digits):
    model = create_model("independent", digits.spec)
    uniform = FrechetValidation(digits, samples=200)
    before = uniform(model)
    assert before.value == uniform(model).value  # the same draw every call (common random numbers)
    model.initialize(Batch.of({"x": digits.train.x[i : i + 500]}) for i in range(0, len(digits.train), 500))
    after = uniform(model)
    assert after.value < before.value  # fitted marginals beat uniform noise
    assert after.reference == "validation" and after.samples == 200 and after.metric == "fd"
    records, x = evaluate_sample_quality(model, digits, samples=150, batch_size=64, metrics=("fd", "kid"))
    assert x.shape == (150, 1, 8, 8) and x.dtype == torch.int64
    assert [r.samples for r in records] == [150, 150] and records[0].options["sampling_seed"] == 1234


# --- feature networks -----------------------------------------------------------------------------
def test_digits_feature_network_accuracy_and_hash(digits):
    net = load_feature_network("digits")
    info = shipped_info("digits")
    assert net.sha256 == info["sha256"] and net.name == "genmodels-digits-cnn-v1"
    accuracy = _accuracy(net.network, digits.test.x, digits.test.y, 17)
    assert accuracy >= 0.97 and accuracy == pytest.approx(info["accuracy"]["test"])
    assert net(digits.test.x[:5], 17).shape == (5, 128)


@needs_fashion
def test_fashion_mnist_feature_network_accuracy():
    from genmodels.data import load_dataset

    data = load_dataset("fashion-mnist")
    net = load_feature_network("fashion-mnist")
    accuracy = _accuracy(net.network, data.test.x, data.test.y, 256)
    assert accuracy >= 0.90 and accuracy == pytest.approx(shipped_info("fashion-mnist")["accuracy"]["test"])


@needs_fashion
def test_fashion_mnist_training_is_deterministic_on_a_short_run():
    # The full recipe takes minutes; two 3-step runs of it must give identical weights.
    a, info = train_feature_network("fashion-mnist", seed=0, max_steps=3, evaluate=False)
    b, _ = train_feature_network("fashion-mnist", seed=0, max_steps=3, evaluate=False)
    assert info["steps"] == 3 and weights_sha256(a) == weights_sha256(b)


def test_digits_feature_network_retrains_bit_for_bit(tmp_path, capsys):
    # The command users run: python -m genmodels.metrics retrain digits --out PATH (exit 0 = identical).
    status = retrain_main(["retrain", "digits", "--out", str(tmp_path / "d.safetensors")])
    info = json.loads((tmp_path / "d.json").read_text())
    shipped = shipped_info("digits")
    same_build = (shipped["torch"], shipped["cpu_capability"]) == (info["torch"], info["cpu_capability"])
    if same_build:
        assert info["sha256"] == shipped["sha256"], "retraining did not reproduce the shipped weights"
        assert status == 0 and "identical to the shipped weights" in capsys.readouterr().out
    assert info["recipe"] == shipped["recipe"] and info["accuracy"]["test"] >= 0.97
    # the written file loads and checks its hash
    assert load_feature_network("digits", tmp_path / "d.safetensors").sha256 == info["sha256"]
    # and a short run twice gives identical weights on any build
    a, _ = train_feature_network("digits", seed=1, epochs=1, max_steps=5, evaluate=False)
    b, _ = train_feature_network("digits", seed=1, epochs=1, max_steps=5, evaluate=False)
    assert weights_sha256(a) == weights_sha256(b)
    if not same_build:
        pytest.skip(f"shipped weights were made with torch {shipped['torch']} on {shipped['cpu_capability']}; "
                    f"this is torch {info['torch']} on {info['cpu_capability']}: only determinism was checked")


def test_training_leaves_global_state_alone():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    train_feature_network("digits", seed=0, epochs=1, max_steps=2, evaluate=False)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.get_rng_state(), rng)


def test_corrupt_weights_are_refused(tmp_path):
    net = FeatureNetwork((1, 8, 8), (4,), 8)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    info = {"name": "x", "sha256": "0" * 64, "recipe": {}}
    save_feature_network(state, info, tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="corrupt"):
        load_feature_network("digits", tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="not found"):
        load_feature_network("digits", tmp_path / "missing.safetensors")


def test_optional_inception_fid_explains_what_is_missing(tmp_path, digits):
    with pytest.raises(UserError, match="torchmetrics|Inception weights not found"):
        inception_fid(digits.test.x, digits.train.x, 17, weights_path=tmp_path / "none.pth")


class _ClassPrototypes(torch.nn.Module):
    """A conditional stub: sample(n, y) returns the first training image of each requested class."""

    conditional = True

    def __init__(self, digits):
        super().__init__()
        self.register_buffer("prototypes", torch.stack([digits.train.x[digits.train.y == c][0] for c in range(10)]))
        self.seen: list[torch.Tensor] = []

    @property
    def device(self):
        return self.prototypes.device

    def sample_with_info(self, n, *, y=None, generator=None):
        assert y is not None and len(y) == n and generator is not None
        self.seen.append(y)
        return self.prototypes[y], {"nfe": 1}


def test_conditional_models_get_labels_from_the_reference_split(digits, digits_reference):
    model = _ClassPrototypes(digits).train()
    records, x = evaluate_sample_quality(model, digits, samples=100, batch_size=30, reference=digits_reference,
                                         metrics=("memorization",))
    y = torch.cat(model.seen)
    assert len(y) == 100 and set(y.tolist()) <= set(digits_reference.dataset.test.y.tolist())
    assert len(set(y.tolist())) == 10  # the test split's class mix, all ten classes
    assert model.training  # the mode is restored
    assert records[0].details["exact_copies"] == 100  # prototypes are training images
    assert records[0].options["sampling_info"] == {"nfe": 1}


def test_quality_figures_flattens_records_with_their_standard_errors():
    def record(metric, value, stderr):
        return SampleQualityRecord(metric, LABELS[metric], value, stderr, 10, "test", 20, "d", "net", "0" * 64)

    figures = quality_figures([record("fd", 12.5, None), record("kid", 0.25, 0.03), record("recall", 0.5, None)])
    assert figures == {"fd": 12.5, "kid": 0.25, "kid_stderr": 0.03, "recall": 0.5}
