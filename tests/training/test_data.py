"""The shipped data maps completely into the API vocabulary; bad files fail loudly."""

from pathlib import Path

import pytest

from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.training.data import DEFAULT_DATA_PATH, DataError, load_dataset
from credit_risk.training.preprocessing import decode_codes, encode_frame


def test_all_rows_map_and_validate() -> None:
    ds = load_dataset()
    assert ds.X.shape == (1000, len(FEATURES))
    assert int(ds.y.sum()) == 300
    for name, cats in CATEGORIES.items():
        assert set(ds.X[name].astype(str)) <= set(cats)
    assert "personal_status_and_sex" not in ds.X.columns
    assert "foreign_worker" not in ds.X.columns


def test_codes_round_trip() -> None:
    ds = load_dataset()
    codes = encode_frame(ds.X)
    back = decode_codes(codes)
    for name in FEATURES:
        if name in CATEGORIES:
            assert list(back[name].astype(str)) == list(ds.X[name].astype(str))
        else:
            assert back[name].tolist() == ds.X[name].astype(float).tolist()


def _write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_DATA_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "variant.csv"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_unknown_category_names_row_and_column(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, "radio/television", "spaceship")
    with pytest.raises(DataError, match=r"row 2, column 'purpose': unknown category 'spaceship'"):
        load_dataset(path)


def test_non_numeric_value_names_row_and_column(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, ",1169,", ",lots,")
    with pytest.raises(DataError, match=r"row 2, column 'credit_amount': 'lots' is not a number"):
        load_dataset(path)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, "credit_amount,", "amount,")
    with pytest.raises(DataError, match=r"missing column.*'credit_amount'"):
        load_dataset(path)


def test_shipped_file_checksum_is_enforced(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, ",1169,", ",1170,")
    load_dataset(path)  # another file loads without a recorded checksum
    with pytest.raises(DataError, match="sha256"):
        load_dataset(path, verify_sha256=True)
