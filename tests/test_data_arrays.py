import numpy as np
import pytest
import scipy.io

from lowshot.data import load_arrays, load_benchmark_arrays
from lowshot.errors import DataError


def test_amazon_svmlight_keeps_plus_minus_one_as_class_names(data_root):
    a = load_benchmark_arrays("amazon-reviews", "kitchen", "train", root=data_root)
    assert a.X.shape == (2000, 5000) and a.classes == ["-1", "1"]
    assert np.bincount(a.labels).tolist() == [1000, 1000]
    t = load_benchmark_arrays("amazon-reviews", "books", "test", root=data_root)
    assert t.X.shape == (4465, 5000)


def test_mnist_usps_v73_mat(data_root):
    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root)
    u = load_benchmark_arrays("mnist-usps", "usps", root=data_root)
    assert m.X.shape == (2000, 256) and u.X.shape == (1800, 256)
    assert m.classes == [str(i) for i in range(1, 11)]
    assert m.X.min() >= 0 and m.X.max() <= 1


def test_v5_mat_npz_npy_csv(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 4)).astype(np.float32), np.repeat([3, 7], 10)
    scipy.io.savemat(tmp_path / "d.mat", {"X": X, "Y": y.reshape(-1, 1)})
    a = load_arrays(tmp_path / "d.mat")
    assert a.X.shape == (20, 4) and a.classes == ["3", "7"] and np.allclose(a.X, X)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert load_arrays(tmp_path / "d.npz").n_features == 4
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    assert load_arrays(tmp_path / "d.npy").X.shape == (20, 4)
    rows = ["f1,f2,f3,f4,label"] + [
        ",".join(map(str, r)) + f",{c}" for r, c in zip(X, ["a", "b"] * 10, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    c = load_arrays(tmp_path / "d.csv", label_column="label")
    assert c.classes == ["a", "b"] and c.X.shape == (20, 4)


def test_bad_arrays_name_the_problem(tmp_path):
    X = np.ones((4, 3))
    X[1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(4))
    with pytest.raises(DataError, match="NaN or inf"):
        load_arrays(tmp_path / "nan.npz")
    np.savez(tmp_path / "keys.npz", A=X)
    with pytest.raises(DataError, match="expected arrays 'X' and 'y'"):
        load_arrays(tmp_path / "keys.npz")
    scipy.io.savemat(tmp_path / "m.mat", {"feats": np.ones((3, 2))})
    with pytest.raises(DataError, match="no variable 'X'.*feats"):
        load_arrays(tmp_path / "m.mat")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match="unknown array format"):
        load_arrays(tmp_path / "x.parquet")


def test_array_sets_relabel_into_the_training_order_like_every_labelled_set():
    import numpy as np

    from lowshot.data.arrays import ArraySet
    from lowshot.errors import DataError

    s = ArraySet(np.eye(3), np.array([0, 1, 1]), ["b", "c"], "t")
    r = s.relabel(["a", "b", "c"])
    assert r.classes == ["a", "b", "c"] and r.labels.tolist() == [1, 2, 2]
    with pytest.raises(DataError, match="'c'"):
        s.relabel(["a", "b"])
