"""Widgets shared by the Train, Map and Errors pages: run pickers and the first-launch quick demo.

Small Streamlit pieces only; reading is in runs_view / loaders, launching in launch.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from cropcore.training.protocol import TABLE2_MODE
from dashboard import launch, loaders, runs_view, sidebar

#: Session key (shared by Map and Errors) of the run started by the quick-demo button.
QUICK_RUN_KEY = "quickdemo_launch"
POLL_SECONDS = 1.0


def finished_runs() -> list[runs_view.RunInfo]:
    """Runs that are done and have a predictions table, newest first."""
    return [run for run in runs_view.list_runs(loaders.runs_root()) if run.state == "done" and run.has_predictions]


def pick_run(runs: list[runs_view.RunInfo], key: str, label: str = "Run") -> runs_view.RunInfo:
    """A selectbox over runs (by label); returns the chosen one."""
    labels = {run.label: run for run in runs}
    chosen = st.selectbox(label, list(labels), key=key)
    return labels.get(chosen, runs[0])


def quick_demo_request(root: Path, level: str) -> launch.TrainRequest:
    """The first-launch run: a Random Forest on the active data, Table 2 split (tested on FRH04)."""
    return launch.TrainRequest(
        model=launch.FIRST_LAUNCH_MODEL, level=level, mode=TABLE2_MODE, root=str(root),
        out=str(loaders.runs_root()), epochs=1, batch_size=1024, learning_rate=1e-3, weight_decay=0.0,
    )


def quick_demo_panel(prefix: str) -> None:
    """Shown when no finished run exists: one button trains a quick model, then the page reloads.

    Stops the page (st.stop) after drawing the panel.
    """
    root, level = sidebar.require_root()
    st.info("No trained model yet. Train a quick demo model (a Random Forest on the data chosen in the "
            "sidebar, trained on FRH01–03 and tested on FRH04, usually under a minute) to see its results here.")
    started = st.session_state.get(QUICK_RUN_KEY)
    if started is None:
        if st.button("Train a quick demo model", type="primary", key=f"{prefix}_quickdemo"):
            st.session_state[QUICK_RUN_KEY] = launch.launch(quick_demo_request(root, level)).pid
            st.rerun()
        st.stop()
    _quick_demo_progress(int(started))
    st.stop()


@st.fragment(run_every=POLL_SECONDS)
def _quick_demo_progress(pid: int) -> None:
    """Progress of the quick-demo run; reruns the whole page once it has finished."""
    launch.reap_children()
    run = next((run for run in runs_view.list_runs(loaders.runs_root()) if run.pid == pid), None)
    if run is None:
        st.progress(0.0, text="Starting the training process…")
        return
    if run.state in ("running", runs_view.STARTING):
        fraction = (run.epoch or 0) / run.epochs if run.epochs else 0.0
        st.progress(min(fraction, 1.0), text=f"Training {run.model}… epoch {run.epoch or 0}/{run.epochs or '?'}"
                                             f" · ETA {runs_view.format_eta(run.eta_seconds)}")
        return
    st.session_state.pop(QUICK_RUN_KEY, None)
    if run.state == "done":
        st.progress(1.0, text="Done")
        time.sleep(0.2)
        st.rerun(scope="app")
    st.error(f"The quick demo run {run.state}: {run.error or 'no error message'}")


def source_data(source: loaders.PredictionSource, root: Path, level: str) -> tuple[Path, str]:
    """Data root and level that predictions refer to: the run's own (when inside the data folder), else the sidebar's.

    For a checkpoint, loads it (weights only) and stops the page with a message when it is not usable.
    """
    if source.kind == loaders.RUN_SOURCE:
        config = runs_view.read_config(Path(source.path))
        try:
            run_root = loaders.inside_data_folder(config["root"]) if config.get("root") else None
        except ValueError:
            run_root = None
        return (run_root if run_root is not None and run_root.is_dir() else root), str(config.get("level") or level)
    try:
        _, info = loaders.checkpoint_model(source.path, source.stamp, source.official_model)
    except (ValueError, FileNotFoundError) as error:
        st.error(f"Not a usable checkpoint: {error}")
        st.stop()
    return root, str(info.get("level") or level)


def read_run_predictions(run: runs_view.RunInfo) -> tuple[loaders.PredictionSource, pd.DataFrame] | None:
    """A finished run's prediction source and table, or None with the reason shown on the page."""
    stamp = loaders.file_stamp(run.path / "predictions.parquet")
    try:
        predictions = loaders.run_predictions(str(run.path), stamp)
    except ValueError as error:
        st.error(f"Cannot read this run's predictions: {error}")
        return None
    return loaders.PredictionSource(loaders.RUN_SOURCE, str(run.path), stamp), predictions
