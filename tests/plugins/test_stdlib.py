"""stdlib: the dataset contract; the split by file, tests and site-packages left out."""

import sysconfig
from pathlib import Path

from tel_core.registry.interfaces import DataContext
from tel_core.testing import check_dataset
from tel_plugins.datasets.stdlib import StdlibDataset, StdlibOptions


def test_conforms(registry):
    check_dataset("stdlib", registry=registry)


def test_split_by_file_is_deterministic_and_disjoint():
    ds = StdlibDataset(StdlibOptions(), DataContext(val_fraction=0.1, seed=0))
    val = [p for p in ds.files if ds._split(p) == "val"]
    train = [p for p in ds.files if ds._split(p) == "train"]
    assert val and train and not set(val) & set(train)
    again = StdlibDataset(StdlibOptions(), DataContext(val_fraction=0.1, seed=99))
    assert [p for p in again.files if again._split(p) == "val"] == val
    assert 0.03 < len(val) / len(ds.files) < 0.2


def test_test_suites_and_site_packages_are_excluded():
    ds = StdlibDataset(StdlibOptions(), DataContext(val_fraction=0.1, seed=0))
    root = Path(sysconfig.get_paths()["stdlib"])
    relative = [p.relative_to(root).parts for p in ds.files]
    assert ("os.py",) in relative
    assert not any(
        "site-packages" in parts
        or "test" in parts
        or "tests" in parts
        or parts[-1].startswith("test_")
        for parts in relative
    )


def test_documents_in_sorted_file_order(tmp_path):
    (tmp_path / "b.py").write_text("b = 2\n")
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "test_x.py").write_text("excluded\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "c.py").write_text("excluded\n")
    ds = StdlibDataset(StdlibOptions(root=str(tmp_path)), DataContext(val_fraction=1e-9, seed=0))
    assert list(ds.documents("train")) == ["a = 1\n", "b = 2\n"]
