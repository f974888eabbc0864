"""Typed storage: outputs stored by the serializer their type calls for, or the step's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import (
    ByType,
    Flow,
    InvalidStepOptionError,
    ParquetSerializer,
    PickleSerializer,
    Status,
)
from flowkit.store import RunStore

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
pytest.importorskip("pyarrow")


def _outputs(tmp_path: Path, flow: str) -> dict[str, Path]:
    """Each stored output file of the flow's runs, as ``<step><suffix>`` (objects are named by
    their content; the journal says which step's output each one is)."""
    found: dict[str, Path] = {}
    for journal in tmp_path.glob(f"{flow}/*/journal.jsonl"):
        store = RunStore(tmp_path, flow, journal.parent.name)
        for name, rec in store.load().steps.items():
            path = store.file_of(rec)
            if path is not None and path.is_file():
                found[name + path.suffix] = path
    return found


def _frame_flow(name: str, version: str, seen: list[Any], **flow_options: Any) -> Flow:
    flow = Flow(name, **flow_options)

    @flow.step()
    def frame() -> Any:
        return pd.DataFrame({"x": [1, 2, 3], "label": ["a", "b", "c"], "y": [0.5, 1.5, 2.5]})

    @flow.step(code_version=version)  # a new version re-runs it on the restored frame
    def total(frame: Any) -> float:
        seen.append(frame)
        return float(frame["y"].sum())

    return flow


def test_a_dataframe_is_stored_as_parquet_and_restored_equal(tmp_path: Path) -> None:
    seen: list[Any] = []
    first = _frame_flow("frames", "1", seen).run(state_dir=tmp_path)
    assert first.ok
    assert "frame.parquet" in _outputs(tmp_path, "frames")
    again = _frame_flow("frames", "2", seen).run(state_dir=tmp_path)
    assert again["frame"].status is Status.CACHED
    assert again["total"].status is Status.SUCCEEDED
    pd.testing.assert_frame_equal(seen[1], seen[0])


def test_a_numpy_array_is_stored_as_npy_and_restored_equal(tmp_path: Path) -> None:
    def build(version: str, seen: list[Any]) -> Flow:
        flow = Flow("arrays")

        @flow.step()
        def weights() -> Any:
            return np.arange(12, dtype=np.float32).reshape(3, 4)

        @flow.step(code_version=version)
        def norm(weights: Any) -> float:
            seen.append(weights)
            return float(np.linalg.norm(weights))

        return flow

    seen: list[Any] = []
    build("1", seen).run(state_dir=tmp_path)
    assert "weights.npy" in _outputs(tmp_path, "arrays")
    build("2", seen).run(state_dir=tmp_path)
    assert seen[1].dtype == np.float32
    np.testing.assert_array_equal(seen[1], seen[0])


def test_a_step_returning_a_tuple_next_to_dataframes_is_pickled(tmp_path: Path) -> None:
    flow = Flow("mixed", serializer=ByType([(pd.DataFrame, ParquetSerializer())]))

    @flow.step()
    def split() -> tuple[Any, Any]:
        return pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2]})

    @flow.step()
    def frame() -> Any:
        return pd.DataFrame({"a": [3]})

    result = flow.run(state_dir=tmp_path)
    assert result.ok
    assert {"split.pkl", "frame.parquet"} <= set(_outputs(tmp_path, "mixed"))


def test_a_serializer_that_cannot_store_the_value_names_itself_and_the_fix(
    tmp_path: Path,
) -> None:
    flow = Flow("only_parquet", serializer=ParquetSerializer())

    @flow.step()
    def pair() -> tuple[int, int]:
        return (1, 2)

    result = flow.run(state_dir=tmp_path)
    err = result["pair"].error
    assert result["pair"].status is Status.FAILED and err is not None
    assert "returned a tuple that cannot be stored: ParquetSerializer failed" in err.message
    assert "@step(serializer=...)" in err.message
    assert "picklable" not in err.message


def test_a_step_chooses_its_own_serializer(tmp_path: Path) -> None:
    flow = Flow("own")

    @flow.step(serializer=PickleSerializer())
    def frame() -> Any:
        return pd.DataFrame({"a": [1, 2]})

    flow.run(state_dir=tmp_path)
    assert "frame.pkl" in _outputs(tmp_path, "own")


def test_a_dataframe_parquet_cannot_hold_falls_back_to_pickle(tmp_path: Path) -> None:
    seen: list[Any] = []

    def build(version: str) -> Flow:
        flow = Flow("odd")

        @flow.step()
        def frame() -> Any:
            return pd.DataFrame({"mixed": [1, "two", 3.0]})  # Parquet needs one type per column

        @flow.step(code_version=version)
        def use(frame: Any) -> int:
            seen.append(frame)
            return len(frame)

        return flow

    assert build("1").run(state_dir=tmp_path).ok
    assert "frame.pkl" in _outputs(tmp_path, "odd")
    assert build("2").run(state_dir=tmp_path).ok
    pd.testing.assert_frame_equal(seen[1], seen[0])


def test_a_stored_file_is_read_by_its_suffix_when_the_serializer_changed(tmp_path: Path) -> None:
    seen: list[Any] = []
    _frame_flow("switch", "1", seen).run(state_dir=tmp_path)
    assert "frame.parquet" in _outputs(tmp_path, "switch")
    again = _frame_flow("switch", "2", seen, serializer=PickleSerializer()).run(state_dir=tmp_path)
    assert again["frame"].status is Status.CACHED
    pd.testing.assert_frame_equal(seen[1], seen[0])


def test_a_serializer_option_without_dumps_and_loads_is_refused() -> None:
    flow = Flow("bad")
    with pytest.raises(InvalidStepOptionError, match="serializer="):

        @flow.step(serializer="parquet")
        def frame() -> int:
            return 1


def test_a_polars_frame_is_stored_as_parquet_and_restored_as_a_polars_frame(
    tmp_path: Path,
) -> None:
    import polars as pl

    seen: list[Any] = []

    def build(version: str) -> Flow:
        flow = Flow("polars")

        @flow.step()
        def frame() -> Any:
            return pl.DataFrame({"x": [1, 2, 3], "label": ["a", "b", "c"]})

        @flow.step()
        def pandas_frame() -> Any:
            return pd.DataFrame({"x": [1, 2, 3]})

        @flow.step(code_version=version)
        def use(frame: Any, pandas_frame: Any) -> int:
            seen.append((frame, pandas_frame))
            return int(frame["x"].sum())

        return flow

    assert build("1").run(state_dir=tmp_path).ok
    stored = _outputs(tmp_path, "polars")
    assert "frame.parquet" in stored and stored["frame.parquet"].name.endswith(".pl.parquet")
    assert "pandas_frame.parquet" in stored
    assert not stored["pandas_frame.parquet"].name.endswith(".pl.parquet")
    again = build("2").run(state_dir=tmp_path)
    assert again["frame"].status is Status.CACHED and again["use"].output == 6
    frame, pandas_frame = seen[1]
    assert isinstance(frame, pl.DataFrame) and frame.equals(seen[0][0])
    assert isinstance(pandas_frame, pd.DataFrame)
